"""The theme in Chromium: the system's choice unless the user picked one (html[data-theme])."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest

CSS = (resources.files("xchat") / "web" / "style.css").read_text(encoding="utf-8")
LIGHT_BG, DARK_BG = "rgb(255, 255, 255)", "rgb(27, 28, 31)"


@pytest.mark.parametrize(
    ("system", "picked", "expected"),
    [
        ("light", None, LIGHT_BG),
        ("dark", None, DARK_BG),
        ("dark", "light", LIGHT_BG),
        ("light", "dark", DARK_BG),
    ],
)
def test_theme_follows_the_system_unless_picked(
    browser: Any, system: str, picked: str | None, expected: str
) -> None:
    context = browser.new_context(color_scheme=system)
    try:
        page = context.new_page()
        theme = f' data-theme="{picked}"' if picked else ""
        page.set_content(
            f"<html{theme}><head><style>{CSS}</style></head>"
            '<body><div id="probe" style="background: var(--bg)">x</div></body></html>'
        )
        colour = page.evaluate(
            "() => getComputedStyle(document.getElementById('probe')).backgroundColor"
        )
        scheme = page.evaluate("() => getComputedStyle(document.documentElement).colorScheme")
        assert colour == expected
        assert scheme == ("dark" if expected == DARK_BG else "light")
    finally:
        context.close()
