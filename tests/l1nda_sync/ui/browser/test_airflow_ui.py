"""The token health page inside `make airflow`'s real Airflow UI, in headless Chromium (`demo_airflow`, conftest.py).

An operator logs in on Airflow's own login page, opens "L1NDA token health" from Airflow's nav, sees the demo's
credentials and a suspended link's reason, clicks "Recheck now" and gets the new DAG run; Airflow's API then
shows that run as the operator's, with the credential in its conf, and it succeeds. Pages are saved as
var/screenshots/<test>-<step>.png; README.md shows four of them (docs/screenshots/airflow-ui-*.png,
`make screenshots`).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions

from l1nda_dev.demo.stack import TOKENS, UI_PASSWORD, UI_USER, scenario_tokens
from tests.l1nda_sync.ui.browser.conftest import DAG_ID, HORECA, SUSPENDED_COMPANY, DemoAirflow
from tests.l1nda_sync.web.browser.conftest import Browser

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # the first test also starts the stack (2-4 min)

NAV = "L1NDA token health"  # the plugin's external view, as Airflow's nav shows it
FRAME_ANCESTORS = "frame-ancestors 'self'"


def _csp(response: httpx.Response) -> str:
    return str(response.headers.get("content-security-policy", ""))


def test_the_page_needs_airflows_login_and_only_airflow_may_frame_it(demo_airflow: DemoAirflow) -> None:
    anonymous = httpx.get(f"{demo_airflow.url}/l1nda/", timeout=30, follow_redirects=False)
    assert anonymous.status_code == 401, anonymous.text[:300]
    assert FRAME_ANCESTORS in _csp(anonymous)
    assert "Horeca office" not in anonymous.text
    logged_in = httpx.get(f"{demo_airflow.url}/l1nda/", headers={"Authorization": f"Bearer {demo_airflow.jwt()}"},
                          timeout=30)
    assert logged_in.status_code == 200, logged_in.text[:300]
    assert FRAME_ANCESTORS in _csp(logged_in)
    # Airflow's plugin manager on the running API server lists the plugin with its nav entry.
    plugins = demo_airflow.api("GET", "/api/v2/plugins")
    assert plugins.status_code == 200, plugins.text[:300]
    ours = [p for p in plugins.json()["plugins"] if p["name"] == "l1nda_token_health"]
    assert len(ours) == 1, plugins.json()
    assert [(v["name"], v["href"], v.get("url_route"), v.get("destination")) for v in ours[0]["external_views"]] == [
        (NAV, "/l1nda/", "l1nda", "nav")]


def _log_in(browser: Browser, demo: DemoAirflow) -> None:
    browser.open(f"{demo.url}/")
    browser.wait_for(lambda d: urlsplit(d.current_url).path.endswith("/auth/login"), "Airflow's login page")
    browser.css("input[name='username']").send_keys(UI_USER)
    browser.css("input[name='password']").send_keys(UI_PASSWORD)
    browser.css("button[type='submit']").click()
    browser.wait_for(lambda d: not urlsplit(d.current_url).path.endswith("/auth/login"), "the login to go through")


def _into_the_plugin_frame(browser: Browser) -> str:
    """Switch into the iframe in which Airflow shows the plugin's page; returns the iframe's sandbox attribute."""
    frame = browser.css(f"iframe[src*='/l1nda/'][title='{NAV}']")
    sandbox = str(frame.get_attribute("sandbox") or "")
    browser.wait_for(expected_conditions.frame_to_be_available_and_switch_to_it(frame), "the plugin's iframe")
    browser.wait_for(lambda d: d.find_elements(By.CSS_SELECTOR, "header nav"), "the page inside the iframe")
    return sandbox


def _click_in_frame(browser: Browser, selector: str, then: str) -> None:
    """Click a link inside the iframe and wait for the page it leads to (its element `then`)."""
    browser.css(selector).click()
    browser.css(then)


def test_operator_opens_token_health_from_airflows_nav_and_rechecks_a_credential(
        demo_airflow: DemoAirflow, browser: Browser) -> None:
    demo = demo_airflow
    horeca = demo.token_id(HORECA)
    [(link_id,)] = demo.query("SELECT id FROM links WHERE company_id = %s", SUSPENDED_COMPANY)

    _log_in(browser, demo)
    nav = browser.css(f"[data-testid='nav-sidebar'] a[aria-label='{NAV}']")  # Airflow's nav, not a typed URL
    nav.click()
    _into_the_plugin_frame(browser)
    for part in ("credentials-by-state", "open-problems", "migration-countdown", "last-runs"):
        browser.element(part)
    browser.shot("overview")

    _click_in_frame(browser, "header nav a[href$='/credentials']", "#credentials")
    for token in TOKENS:  # the demo's customers, each in its own row
        row = browser.css(f"#credentials tr[data-token-id='{demo.token_id(token.label)}']")
        assert token.label in row.text, row.text
    leaked = [user for user, secret in scenario_tokens().items() if secret in browser.source]
    assert leaked == [], f"the page shows the whole token of {leaked}"
    browser.shot("credentials")

    _click_in_frame(browser, f"#credentials tr[data-token-id='{horeca}'] td.customer a",
                    f"#links tr[data-link-id='{link_id}']")
    row = browser.css(f"#links tr[data-link-id='{link_id}']")
    assert "suspended" in row.text, row.text
    reason = row.find_element(By.CSS_SELECTOR, "td.reason").text
    assert "tag" in reason.lower(), reason  # tag_or_filter: the debtor lost the tag the token filters on
    browser.shot("credential-suspended")

    before = {r["dag_run_id"] for r in demo.dag_runs()}
    browser.css("#recheck-now").click()
    flash = browser.element("flash")
    run_link = browser.css("#flash a#flash-run")
    run_path = urlsplit(str(run_link.get_attribute("href"))).path
    prefix = f"/dags/{DAG_ID}/runs/"
    assert run_path.startswith(prefix), run_path
    run_id = unquote(run_path.removeprefix(prefix))
    assert run_id in flash.text, flash.text
    assert run_id not in before
    browser.shot("recheck-flash")

    # Airflow's own API: the run exists, is the operator's, carries this credential, and succeeds.
    listed = {r["dag_run_id"]: r for r in demo.dag_runs()}
    assert run_id in listed, sorted(listed)
    run = listed[run_id]
    assert run["conf"].get("token_ids") == [horeca], run["conf"]
    assert not run["conf"].get("dry_run"), run["conf"]
    assert (run["run_type"], run["triggered_by"], run["triggering_user_name"]) == ("manual", "rest_api", UI_USER)
    finished = demo.finished_run(run_id)
    assert finished["state"] == "success", f"{run_id} {finished['state']}:\n{demo.log_tail('scheduler')}"



def test_dry_run_from_the_page_and_the_flash_link_to_the_run(demo_airflow: DemoAirflow, browser: Browser) -> None:
    demo = demo_airflow
    horeca = demo.token_id(HORECA)
    _log_in(browser, demo)
    browser.css(f"[data-testid='nav-sidebar'] a[aria-label='{NAV}']").click()
    sandbox = _into_the_plugin_frame(browser)
    _click_in_frame(browser, "header nav a[href$='/credentials']", "#credentials")
    _click_in_frame(browser, f"#credentials tr[data-token-id='{horeca}'] td.customer a", "#dry-run")
    browser.css("#dry-run").click()
    browser.element("flash")
    run_link = browser.css("#flash a#flash-run")
    run_path = urlsplit(str(run_link.get_attribute("href"))).path
    run_id = unquote(run_path.removeprefix(f"/dags/{DAG_ID}/runs/"))
    run = demo.finished_run(run_id)
    assert run["conf"].get("token_ids") == [horeca], run["conf"]
    assert run["conf"].get("dry_run") is True, run["conf"]
    assert (run["triggering_user_name"], run["state"]) == (UI_USER, "success"), run

    # The link should open Airflow's page of the run in the whole window (target=_top).
    run_link.click()
    browser.driver.switch_to.default_content()
    try:
        browser.wait_for(lambda d: urlsplit(d.current_url).path == run_path, f"Airflow's page of {run_id}", timeout=10)
    except AssertionError:
        if "allow-top-navigation" in sandbox:
            raise
        # Known (reported): Airflow frames plugin pages with sandbox="allow-scripts allow-same-origin allow-forms
        # allow-downloads", without allow-top-navigation, so Chromium blocks the link's target=_top navigation.
        pytest.xfail(f"the flash's link (target=_top) to {run_path} cannot leave Airflow's iframe "
                     f"(sandbox={sandbox!r})")
