"""The browser tests' own rules: skipped with the fix when Chromium is missing, failed in CI; screenshots land
under var/screenshots/ named after the test and the step."""

from __future__ import annotations

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
