"""The package layering of ARCHITECTURE.md ("Layers and packages"), checked on the source.

Every module of src/xchat is parsed (not imported) and every ``import`` / ``from ...
import`` in it is checked, wherever it stands: at the top, inside a function, under
``if TYPE_CHECKING:``. Arrows point down only: the relay never imports the node, the core
never does I/O, and the cryptographic libraries are imported only in ``xchat.crypto``.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

SRC: Final = Path(__file__).resolve().parent.parent / "src" / "xchat"

#: Ground floor: importable from anywhere, importing nothing from xchat. ``xchat`` is the
#: package itself (``__version__``).
GROUND: Final = {"xchat", "xchat.errors", "xchat.aio"}

#: Which xchat packages (or single modules) each package may import, besides itself and
#: the ground floor. A name allows its submodules; a dotted module allows only itself.
MAY_IMPORT: Final[dict[str, set[str]]] = {
    "xchat.errors": set(),
    "xchat.aio": set(),
    "xchat.crypto": set(),
    "xchat.wire": set(),
    # the domain vocabulary (states, transition tables, plain data) shared by the core's
    # rules and the store that keeps them: below both, since the store never imports core
    "xchat.model": {"xchat.wire"},
    "xchat.core": {"xchat.crypto", "xchat.wire", "xchat.model"},
    "xchat.store": {"xchat.wire", "xchat.model"},
    # verify only: the relay checks signatures, it never holds keys or encrypts
    "xchat.relay": {"xchat.wire", "xchat.store", "xchat.crypto.keys"},
    # the identity's folder on disk: keystore, contacts, the running node's address
    "xchat.home": {"xchat.core", "xchat.crypto", "xchat.wire"},
    "xchat.node": {
        "xchat.model",
        "xchat.core",
        "xchat.crypto",
        "xchat.wire",
        "xchat.store",
        "xchat.relay",
        "xchat.home",
    },
    # a thin client of the node's API; `init` needs the core and the home, `relay` the
    # relay; the node itself only in `up` (see CLI_NODE_ONLY_IN)
    "xchat.cli": {"xchat.model", "xchat.core", "xchat.home", "xchat.relay", "xchat.node"},
    "xchat.__main__": {"xchat.cli"},
}

#: The functions of xchat.cli in which xchat.node may be imported (`xchat up`).
CLI_NODE_ONLY_IN: Final = {"_cmd_up"}

#: Cryptographic libraries: imported in xchat.crypto and nowhere else.
CRYPTO_LIBRARIES: Final = {"vodozemac", "coincurve", "cryptography", "argon2", "mnemonic"}

#: Libraries beyond the standard library that a package may import; a package not
#: named here may use any library but the cryptographic ones.
THIRD_PARTY: Final[dict[str, set[str]]] = {
    "xchat.errors": set(),
    "xchat.aio": set(),
    # ARCHITECTURE.md names vodozemac, coincurve, cryptography (argon2 is the KDF it
    # describes). Beyond its wording: mnemonic (the BIP-39 word list of phrase.py) and
    # orjson (the keystore file's JSON in keystore.py).
    "xchat.crypto": CRYPTO_LIBRARIES | {"orjson"},
    "xchat.wire": {"orjson"},  # the fast JSON codec
    "xchat.core": {"orjson"},
    "xchat.model": set(),
}

#: The core is sans-I/O: no sockets, files, processes, clocks or global randomness.
CORE_FORBIDDEN: Final = {
    "asyncio",
    "os",
    "pathlib",
    "random",
    "secrets",
    "selectors",
    "shutil",
    "socket",
    "sqlite3",
    "subprocess",
    "threading",
    "time",
}


@dataclass(frozen=True)
class Import:
    module: str  # absolute dotted name
    line: int
    function: str | None  # the outermost enclosing function, if any


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = SRC) -> list[Import]:
    """Every import in the file, relative ones made absolute; ``from a import b`` gives
    ``a.b`` too (b may be a module)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = function
            if function is None and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                inner = child.name
            if isinstance(child, ast.Import):
                found.extend(Import(a.name, child.lineno, inner) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    source = ".".join(base + ([child.module] if child.module else []))
                else:
                    source = child.module or ""
                found.append(Import(source, child.lineno, inner))
                found.extend(Import(f"{source}.{a.name}", child.lineno, inner) for a in child.names)
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), None)
    return found


def layer_of(module: str) -> str:
    """The table entry a module belongs to: its package under xchat, or itself."""
    if module in GROUND or module == "xchat.__main__":
        return module
    parts = module.split(".")
    return ".".join(parts[:2])


def allowed(target: str, permitted: set[str]) -> bool:
    return any(target == p or target.startswith(p + ".") for p in permitted)


def violations() -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        source = module_name(path)
        layer = layer_of(source)
        assert layer in MAY_IMPORT or source == "xchat", f"{source}: not in the layer table"
        where = f"{path.relative_to(SRC.parent.parent)}"
        for imp in imports_of(path):
            top = imp.module.split(".")[0]
            at = f"{where}:{imp.line}: {source} imports {imp.module}"
            if top == "xchat":
                target = imp.module
                if layer_of(target) == layer or target in GROUND:
                    if source in GROUND and source != target and target != "xchat":
                        found.append(f"{at} (the ground floor imports nothing from xchat)")
                    continue
                if source in GROUND:
                    found.append(f"{at} (the ground floor imports nothing from xchat)")
                    continue
                if _names_an_object(target):
                    continue  # `from xchat.x import name`: the module itself is checked
                if not allowed(target, MAY_IMPORT[layer]):
                    found.append(f"{at} (may import {sorted(MAY_IMPORT[layer])})")
                elif (
                    layer == "xchat.cli"
                    and allowed(target, {"xchat.node"})
                    and imp.function not in CLI_NODE_ONLY_IN
                ):
                    found.append(f"{at} (the CLI uses the node only in `xchat up`)")
            elif top in sys.stdlib_module_names or top == "__future__":
                if layer == "xchat.core" and top in CORE_FORBIDDEN:
                    found.append(f"{at} (the core is sans-I/O)")
            else:
                if top in CRYPTO_LIBRARIES and layer != "xchat.crypto":
                    found.append(f"{at} (cryptographic libraries only in xchat.crypto)")
                elif layer in THIRD_PARTY and top not in THIRD_PARTY[layer]:
                    found.append(f"{at} (may use {sorted(THIRD_PARTY[layer])} beyond stdlib)")
    return found


def _names_an_object(target: str) -> bool:
    """True when ``target`` is ``module.name`` for a name that is not a module itself
    (what ``from module import name`` adds besides the module)."""
    path = SRC.parent.joinpath(*target.split("."))
    if path.with_suffix(".py").exists() or (path / "__init__.py").exists():
        return False
    parent = SRC.parent.joinpath(*target.split(".")[:-1])
    return parent.with_suffix(".py").exists() or (parent / "__init__.py").exists()


def test_every_import_follows_the_layer_table() -> None:
    assert violations() == []


def test_the_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The parser finds imports in functions, under TYPE_CHECKING and relative ones."""
    package = tmp_path / "xchat" / "relay"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    code = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from xchat.node.service import Node\n"
        "def f():\n    import xchat.node.pool\n"
        "from ..node import api\n"
    )
    (package / "x.py").write_text(code)
    found = imports_of(package / "x.py", tmp_path / "xchat")
    modules = {(i.module, i.function) for i in found}
    assert ("xchat.node.service", None) in modules
    assert ("xchat.node.pool", "f") in modules
    assert ("xchat.node", None) in modules
    assert ("xchat.node.api", None) in modules
