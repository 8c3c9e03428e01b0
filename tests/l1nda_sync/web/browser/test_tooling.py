"""The browser tests' own rules: skipped with the fix when Chromium is missing, failed in CI; screenshots land
under var/screenshots/ named after the test and the step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.l1nda_sync.web.browser import conftest
from tests.l1nda_sync.web.browser.conftest import MISSING, SCREENSHOTS, Browser, require_chromium


@pytest.mark.parametrize("ci", ["", "0", "false"])
def test_missing_chromium_skips_with_the_fix_outside_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_chromium((tmp_path / "chromium", conftest.CHROMEDRIVER))
    assert str(skipped.value).startswith("Chromium not installed: run `make browser`")
    assert str(tmp_path / "chromium") in str(skipped.value)


@pytest.mark.parametrize("ci", ["true", "1"])
def test_missing_chromium_fails_in_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception) as failed:
        require_chromium((tmp_path / "chromedriver",))
    assert MISSING in str(failed.value)
    assert "CI must run the browser tests" in str(failed.value)


def test_present_parts_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    tool = tmp_path / "chromium"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    require_chromium((tool,))


def test_screenshots_are_named_after_the_test_and_the_step(browser: Browser) -> None:
    browser.open("data:text/html,<!DOCTYPE html><h1 id='x'>screenshot</h1>")
    assert browser.element("x").text == "screenshot"
    path = browser.shot("step one")
    assert path == SCREENSHOTS / "test_screenshots_are_named_after_the_test_and_the_step-step-one.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path.unlink()


def test_the_readme_shows_the_screenshots_that_make_screenshots_copies() -> None:
    """README's images exist as PNGs, are exactly what `make screenshots` copies, and each comes from a test step
    of the browser tests (so a renamed test or step cannot leave the README on a stale picture)."""
    root = conftest.REPO_ROOT
    shown = set(re.findall(r"\(docs/screenshots/([a-z0-9-]+)\.png\)", (root / "README.md").read_text()))
    assert len(shown) >= 8
    for name in shown:
        assert (root / "docs" / "screenshots" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    makefile = (root / "Makefile").read_text().replace("\\\n", " ")
    shots = re.search(r"^SHOTS := (.*)$", makefile, re.M)
    assert shots is not None
    pairs = dict(reversed(pair.split(":")) for pair in shots.group(1).split())
    assert set(pairs) == shown
    browser_dirs = (Path(conftest.__file__).parent, root / "tests" / "l1nda_sync" / "ui" / "browser")
    sources = "".join(p.read_text() for d in browser_dirs for p in sorted(d.glob("test_*.py")))
    # each step a test saves, as a pattern: shot("used") -> used, shot(f"expired-{language}") -> expired-[a-z]+
    steps = [re.sub(r"\\\{\w+\\\}", "[a-z]+", re.escape(step))
             for step in re.findall(r'\.shot\(f?"([^"]+)"\)', sources)]
    for source in pairs.values():
        test = next((t for t in re.findall(r"^def (test_\w+)", sources, re.M) if source.startswith(f"{t}-")), None)
        assert test is not None, f"{source}: no browser test of that name"
        step = source[len(test) + 1:]
        # a parametrized test's file name holds its parameter before the step (test-en-expired-en)
        assert any(re.fullmatch(f"(?:[a-z]+-)?{pattern}", step) for pattern in steps), f"{source}: no such step"
