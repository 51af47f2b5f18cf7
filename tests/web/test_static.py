"""X Chat Web's files as shipped: present as package data, no build step, no HTML sinks."""

from __future__ import annotations

import re
from importlib import resources

WEB = resources.files("xchat") / "web"
# Ways to turn a string into markup or code; peer text must only ever be text.
SINKS = re.compile(
    r"\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
    r"createContextualFragment|DOMParser|setTimeout\(\s*['\"`]"
)


def _text(name: str) -> str:
    return (WEB / name).read_text(encoding="utf-8")


def test_index_loads_only_local_modules_and_no_inline_script() -> None:
    html = _text("index.html")
    assert re.search(r'<script type="module" src="app.js"></script>', html)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script"
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert "http://" not in html
    assert "https://" not in html
    for linked in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert (WEB / linked).is_file(), linked


def test_every_module_import_is_a_shipped_flat_file() -> None:
    names = {p.name for p in WEB.iterdir()}
    scripts = sorted(n for n in names if n.endswith(".js"))
    assert "app.js" in scripts
    for name in scripts:
        source = _text(name)
        for target in re.findall(r"""from\s+['"]([^'"]+)['"]""", source):
            assert target.startswith("./"), (name, target)
            assert "/" not in target[2:], (name, target)
            assert target[2:] in names, (name, target)
        assert not SINKS.search(source), (name, SINKS.search(source))
        # no third-party or remote code: the only URLs are the SVG namespace and an example
        remote = re.findall(r"https?://[^'\"` ]+", source)
        assert set(remote) <= {"http://www.w3.org/2000/svg", "http://127.0.0.1:7440/#token=…"}


def test_only_file_types_the_node_serves() -> None:
    for path in WEB.iterdir():
        assert path.name.rsplit(".", 1)[-1] in {"html", "js", "css", "svg", "png"}, path.name


IMPORT = re.compile(r"""import\s*\{([^}]*)\}\s*from\s*['"]\./([^'"]+)['"]""")
EXPORT = re.compile(r"^export\s+(?:async\s+)?(?:function|const|let|class)\s+(\w+)", re.M)
#: The most lines one module may have (issue 10: chat.js had 1,094 and was split).
MAX_LINES = 500


def _modules() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in WEB.iterdir() if p.name.endswith(".js")}


def test_every_imported_name_is_exported_by_its_module() -> None:
    modules = _modules()
    exported = {name: set(EXPORT.findall(source)) for name, source in modules.items()}
    for name, source in modules.items():
        for names, target in IMPORT.findall(source):
            for imported in (n.strip() for n in names.split(",")):
                if imported:
                    assert imported in exported[target], f"{name} imports {imported} from {target}"


def test_modules_import_each_other_in_one_direction_and_stay_small() -> None:
    modules = _modules()
    graph = {name: {t for _, t in IMPORT.findall(source)} for name, source in modules.items()}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, "import circle: " + " -> ".join((*path, name))
        if name in done:
            return
        for target in graph[name]:
            visit(target, (*path, name))
        done.add(name)

    for name in sorted(graph):
        visit(name, ())
    for name, source in modules.items():
        lines = source.count("\n")
        assert lines <= MAX_LINES, f"{name} has {lines} lines (at most {MAX_LINES})"
    assert "chat.js" not in modules, "chat.js was split into list, conversation, composer, ..."
