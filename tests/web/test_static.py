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
