"""Accessibility checks for the browser tests: axe-core (the copy the selenium-axe-python package ships) run in
the page, reflow at 320 CSS pixels, and what the keyboard reaches.

axe is injected through WebDriver's execute_script, which the pages' Content-Security-Policy does not govern;
every check first proves axe ran, so a page where it could not load fails instead of passing empty."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from selenium.webdriver.remote.webdriver import WebDriver
from selenium_axe_python import Axe

WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]
"""WCAG 2.0, 2.1 and 2.2 at levels A and AA. Running by tag also runs the rules axe leaves off by default for
these levels (target-size, WCAG 2.2's 2.5.8)."""

NARROW = 320
"""CSS pixels: WCAG 1.4.10 reflow (a 1280 px window at 400 %, or 640 px at 200 %)."""


@dataclass(frozen=True)
class Finding:
    page: str
    rule: str
    impact: str
    help: str
    nodes: tuple[str, ...]

    def __str__(self) -> str:
        lines = [f"{self.page}: {self.rule} ({self.impact}) {self.help}"]
        lines += [f"    {node}" for node in self.nodes]
        return "\n".join(lines)


def axe_findings(driver: WebDriver, page: str) -> list[Finding]:
    """Every WCAG A/AA violation axe finds on the page the driver shows, whatever its impact."""
    Axe(driver).inject()
    for _ in range(3):
        results = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "if (typeof axe === 'undefined') { done({error: 'axe did not load'}); return; }"
            "axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}, resultTypes: ['violations']})"
            "  .then(r => done({version: r.testEngine.version, violations: r.violations,"
            "    ran: [...r.passes, ...r.violations, ...r.incomplete, ...r.inapplicable].map(x => x.id)}),"
            "  e => done({error: String(e)}));",
            WCAG_TAGS,
        )
        # Chromium still laying the page out (after a navigation or a viewport change) can swap a node under
        # axe's feet ("Node ... does not belong to the document"): that run checked nothing, so run it again.
        if "does not belong to the document" not in results.get("error", ""):
            break
    assert "error" not in results, f"{page}: {results['error']}"
    # A run that checked nothing is no run; WCAG 2.2's target size is off unless asked for by its tag.
    assert "color-contrast" in results["ran"] and "target-size" in results["ran"], (
        f"{page}: axe {results['version']} ran only {results['ran']}"
    )
    return [
        Finding(
            page=page,
            rule=v["id"],
            impact=v.get("impact") or "",
            help=v["help"],
            nodes=tuple(
                f"{' '.join(json.dumps(t) for t in n['target'])} {n['html'][:160]}: {_summary(n)}" for n in v["nodes"]
            ),
        )
        for v in results["violations"]
    ]


def _summary(node: dict) -> str:
    """axe's "Fix any of the following" text on one line."""
    lines = (node.get("failureSummary") or "").splitlines()
    return " / ".join(line.strip() for line in lines[1:] if line.strip())


@contextmanager
def narrow(driver: WebDriver) -> Iterator[None]:
    """The page as a window NARROW pixels wide shows it, for the duration of the block."""
    _viewport(driver, 800)
    try:
        yield
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _viewport(driver: WebDriver, height: int) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": NARROW, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def reflow_problem(driver: WebDriver, page: str, screenshot: Path) -> str | None:
    """In a ``narrow`` view: what scrolls sideways, or None; keeps a screenshot of the whole page."""
    widths = driver.execute_script(
        "const d = document.documentElement;"
        "const wide = [...document.querySelectorAll('body *')]"
        "  .filter(e => e.getBoundingClientRect().right > d.clientWidth + 1 && e.offsetParent !== null)"
        "  .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className && typeof e.className"
        "        === 'string' ? '.' + e.className.trim().split(/\\s+/).join('.') : ''));"
        "return {scroll: d.scrollWidth, viewport: d.clientWidth, height: d.scrollHeight, wide: wide.slice(0, 8)};"
    )
    _viewport(driver, min(int(widths["height"]), 6000))
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(screenshot))
    _viewport(driver, 800)
    if widths["scroll"] > widths["viewport"]:
        return (
            f"{page}: {widths['scroll']} px wide in a {widths['viewport']} px viewport"
            f" (too wide: {', '.join(widths['wide']) or 'the page itself'})"
        )
    return None


def focus_description(driver: WebDriver) -> dict:
    """The element that has focus: how to name it in a message, and whether focus is drawn on it."""
    return driver.execute_script(
        "const e = document.activeElement; const s = getComputedStyle(e);"
        "return {tag: e.tagName.toLowerCase(), id: e.id, name: e.getAttribute('name'),"
        "        text: (e.innerText || e.value || '').trim().slice(0, 40),"
        "        outlined: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2};"
    )
