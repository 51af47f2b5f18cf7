"""Every Nostr kind number is defined once, in xchat.wire.kinds: a scan of src/ for kind
literals in code (comparisons, ``kind=`` arguments, ``"kinds": [...]`` filters, and
``KIND_*`` constants) outside that module.

Not scanned: SQL text (the stores' ``kind = 1059`` partial indexes and queries; a released
migration step is never edited) and docstrings."""

from __future__ import annotations

import ast
from pathlib import Path

from xchat.wire import kinds

SRC = Path(__file__).resolve().parents[2] / "src" / "xchat"


def _is_int(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int


def _names_kind(node: ast.AST) -> bool:
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
    return name in ("kind", "kinds")


#: Literals left in files another part of issue 10 owns: (path under src/xchat, the
#: values). NIP-01's kind classes in the event store (0 metadata and 3 follows are
#: replaceable); xchat.wire.kinds defines KIND_METADATA and KIND_FOLLOWS for them.
KNOWN = {("store/events.py", (0, 3))}


def _ints(nodes: list[ast.AST]) -> tuple[int, ...]:
    return tuple(n.value for n in nodes if isinstance(n, ast.Constant) and type(n.value) is int)


def literal_values(tree: ast.AST) -> list[tuple[int, ...]]:
    """The kind numbers written as literals, one tuple per place, in line order."""
    return [values for _, values in sorted(kind_literals(tree))]


def kind_literals(tree: ast.AST) -> list[tuple[int, tuple[int, ...]]]:
    """(line, values) wherever a kind number is written as a literal."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and _names_kind(node.left):
            values = _ints([v for c in node.comparators for v in (c, *getattr(c, "elts", []))])
            if values:
                found.append((node.lineno, values))
        elif isinstance(node, ast.keyword) and node.arg == "kind" and _is_int(node.value):
            found.append((node.value.lineno, _ints([node.value])))
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                values = _ints(getattr(value, "elts", []))
                if isinstance(key, ast.Constant) and key.value == "kinds" and values:
                    found.append((key.lineno, values))
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if any(n.startswith("KIND_") for n in names) and node.value and _is_int(node.value):
                found.append((node.lineno, _ints([node.value])))
    return found


def test_the_scan_finds_each_form_of_literal() -> None:
    code = (
        "if event.kind == 1059: pass\n"
        "if kind in (13, 14): pass\n"
        "sign(kind=22242)\n"
        'f = {"kinds": [10050]}\n'
        "KIND_X = 7\n"
        "ok = event.kind == KIND_GIFT_WRAP and sign(kind=KIND_AUTH)\n"
    )
    assert literal_values(ast.parse(code)) == [(1059,), (13, 14), (22242,), (10050,), (7,)]


def test_no_kind_number_is_written_outside_wire_kinds() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == Path(kinds.__file__).resolve():
            continue
        where = str(path.relative_to(SRC))
        for line, values in kind_literals(ast.parse(path.read_text(), str(path))):
            if (where, values) not in KNOWN:
                offenders.append(f"{where}:{line} {values}")
    assert offenders == []


def test_every_kind_is_defined_once() -> None:
    values = [getattr(kinds, name) for name in kinds.__all__]
    assert len(set(values)) == len(values)
    assert all(name.startswith("KIND_") for name in kinds.__all__)
