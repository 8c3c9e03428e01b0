"""Headless Chromium for the browser tests: Debian's `chromium` and `chromium-driver`, driven by selenium.

Nothing is downloaded: selenium gets the driver's path and the browser's binary explicitly, so its driver manager
never runs. Without them the tests are skipped with the fix in the reason ("Chromium not installed: run `make
browser`"), except in CI (the environment variable CI set), where a missing browser fails them: CI installs it
first (.ci/run), and a browser test that silently skips there would prove nothing.

One browser serves the whole session; each test starts on a blank page with no cookies. `browser.shot(step)`
saves `var/screenshots/<test>-<step>.png`; a failing test's last page is saved as `<test>-failed.png`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = REPO_ROOT / "var" / "screenshots"
MISSING = "Chromium not installed: run `make browser`"
WAIT_S = 20.0  # a page load or a redirect chain; a real hang fails here instead of on pytest's timeout
# Known to work here: the background-networking flags keep Chromium from calling home (refused on a closed network).
CHROME_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    "--window-size=1100,900", "--lang=en-US",
)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_chromium(parts: tuple[Path, ...] = (CHROMIUM, CHROMEDRIVER)) -> None:
    """Skip the test when the browser or its driver is missing; fail it instead in CI."""
    missing = [str(p) for p in parts if not os.access(p, os.X_OK)]
    if not missing:
        return
    if in_ci():
        pytest.fail(f"{MISSING} ({', '.join(missing)} missing; CI must run the browser tests)", pytrace=False)
    pytest.skip(f"{MISSING} ({', '.join(missing)} missing)")


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One headless Chromium for the session (a new, empty profile)."""
    require_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


@dataclass
class Browser:
    """The session's Chromium, seen from one test: waits, finds and screenshots named after the test."""

    driver: WebDriver
    test: str

    def open(self, url: str) -> None:
        self.driver.get(url)

    def shot(self, step: str) -> Path:
        """Save the page as var/screenshots/<test>-<step>.png (the whole page, not just the window)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{_file_name(self.test)}-{_file_name(step)}.png"
        height = int(self.driver.execute_script("return document.documentElement.scrollHeight") or 900)
        self.driver.set_window_size(1100, max(900, min(height + 40, 4000)))
        try:
            if not self.driver.save_screenshot(str(path)):
                raise AssertionError(f"Chromium saved no screenshot to {path}")
        finally:
            self.driver.set_window_size(1100, 900)
        return path

    def wait_for(self, condition: Callable[[WebDriver], Any], what: str, timeout: float = WAIT_S) -> Any:
        """Wait until `condition(driver)` is truthy; a time-out names `what` and the page it was on."""
        try:
            return WebDriverWait(self.driver, timeout).until(condition)
        except TimeoutException:
            raise AssertionError(f"waited {timeout:.0f} s for {what}; on {self.driver.current_url}: "
                                 f"{self.text()[:500]!r}") from None

    def element(self, element_id: str) -> WebElement:
        """The element with this id, once the page has it."""
        found: WebElement = self.wait_for(lambda d: d.find_elements(By.ID, element_id) and
                                          d.find_element(By.ID, element_id), f"#{element_id}")
        return found

    def css(self, selector: str) -> WebElement:
        found: WebElement = self.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, selector) and
                                          d.find_element(By.CSS_SELECTOR, selector), selector)
        return found

    def text(self) -> str:
        return str(self.driver.find_element(By.TAG_NAME, "body").text) if self.driver.find_elements(
            By.TAG_NAME, "body") else ""

    @property
    def url(self) -> str:
        return str(self.driver.current_url)

    @property
    def source(self) -> str:
        return str(self.driver.page_source)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def browser(chromium: WebDriver, request: pytest.FixtureRequest) -> Iterator[Browser]:
    """The session's Chromium on a blank page, without the cookies an earlier test left."""
    chromium.execute_cdp_cmd("Network.clearBrowserCookies", {})
    chromium.get("about:blank")
    view = Browser(chromium, request.node.name)
    (SCREENSHOTS / f"{_file_name(view.test)}-failed.png").unlink(missing_ok=True)  # an earlier run's failure
    yield view
    if request.node.stash.get(_FAILED, False):
        try:
            view.shot("failed")
        except Exception as exc:
            print(f"no failure screenshot: {exc}")
