"""The simulated Nmbrs consent page in a real browser: the tooling's own proof, independent of L1NDA's page.

The authorize URL is the one L1NDA's OAuth code builds (`oauth.start_authorization`, PKCE S256); the customer
signs in on /connect/authorize and clicks Allow or Deny; Chromium follows the redirect to a callback server run
here. The code it carries is then traded for a grant, so the page really consented.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from selenium.webdriver.common.by import By

import nmbrs_sim
from l1nda_sync.masking import Secret
from l1nda_sync.nmbrs.rest import oauth
from l1nda_sync.nmbrs.rest.config import RestApp
from nmbrs_sim.testing import RunningSim, running_simulator
from tests.l1nda_sync.web.browser.conftest import Browser

DEMO = Path(nmbrs_sim.__file__).parent / "scenarios" / "demo.yaml"
APP_ID = "PartnerApp_L1NDA_demo"
CUSTOMER = "payroll@modehuis-vandijk.example"  # a debtor login with a password: may consent
PASSWORD = "vandijk-demo-pw"
SCOPES = ("offline_access", "company.info.read")


class CallbackServer:
    """The redirect URI's server: records each request's path and query, answers a small page."""

    def __init__(self) -> None:
        self.received: queue.Queue[str] = queue.Queue()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if urlsplit(self.path).path != "/nmbrs/callback":  # the browser's /favicon.ico
                    self.send_error(404)
                    return
                received.put(self.path)
                body = b"<!DOCTYPE html><title>callback</title><h1 id='callback'>Callback received</h1>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/nmbrs/callback"
        self.thread = threading.Thread(target=self.server.serve_forever, name="callback", daemon=True)

    def next_query(self, timeout: float = 20.0) -> dict[str, str]:
        path = self.received.get(timeout=timeout)
        return {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}


@pytest.fixture(scope="module")
def callback_server() -> Iterator[CallbackServer]:
    server = CallbackServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


@pytest.fixture
def callback(callback_server: CallbackServer) -> CallbackServer:
    """The module's callback server with nothing received yet."""
    while not callback_server.received.empty():
        callback_server.received.get_nowait()
    return callback_server


@pytest.fixture(scope="module")
def sim(callback_server: CallbackServer) -> Iterator[RunningSim]:
    """The demo world, with the callback server registered as a redirect URI of L1NDA's app."""
    scenario = yaml.safe_load(DEMO.read_text())
    client = next(c for c in scenario["rest"]["clients"] if c["client_id"] == APP_ID)
    client["redirect_uris"] = [callback_server.url, *client["redirect_uris"]][:5]
    with running_simulator(scenario) as running:
        yield running


@pytest.fixture
def app(sim: RunningSim, callback: CallbackServer) -> RestApp:
    client = next(c for c in yaml.safe_load(DEMO.read_text())["rest"]["clients"] if c["client_id"] == APP_ID)
    return RestApp(sim.root_url, sim.root_url, APP_ID, Secret(client["client_secret"]),
                   Secret(client["subscription_keys"][0]), None, callback.url, SCOPES)


def _sign_in(browser: Browser, request: oauth.AuthorizationRequest, password: str) -> None:
    browser.open(request.url)
    heading = browser.css("h2").text
    assert "L1NDA (demo) wants to connect" in heading
    scopes = [li.text for li in browser.element("scopes").find_elements(By.TAG_NAME, "li")]
    assert [s.split(":")[0] for s in scopes] == list(SCOPES), scopes
    browser.element("username").send_keys(CUSTOMER)
    browser.element("password").send_keys(password)


def test_allow_redirects_with_a_code_that_trades_for_a_grant(browser: Browser, app: RestApp,
                                                               callback: CallbackServer) -> None:
    request = oauth.start_authorization(app)
    _sign_in(browser, request, PASSWORD)
    browser.shot("consent")
    browser.css("button[value=allow]").click()
    query = callback.next_query()
    assert browser.element("callback").text == "Callback received"
    assert browser.url.startswith(callback.url + "?")
    assert set(query) == {"code", "scope", "state"}, set(query)
    assert query["state"] == request.state.reveal()
    assert tuple(query["scope"].split()) == SCOPES
    parsed = oauth.parse_callback(browser.url)
    assert parsed.code is not None
    assert parsed.code.reveal() == query["code"]
    grant = oauth.exchange_code(app, query["code"], request.code_verifier.reveal(), now=datetime.now(UTC))
    assert grant.refresh_token is not None, "offline_access was granted: a refresh token comes with it"
    assert set(grant.scopes) >= set(SCOPES)


def test_deny_redirects_with_access_denied_and_no_code(browser: Browser, app: RestApp,
                                                       callback: CallbackServer) -> None:
    request = oauth.start_authorization(app)
    _sign_in(browser, request, PASSWORD)
    browser.css("button[value=deny]").click()
    query = callback.next_query()
    browser.element("callback")
    assert "code" not in query
    assert query["error"] == "access_denied"
    assert query["state"] == request.state.reveal()


def test_a_wrong_password_stays_on_the_page_and_sends_nothing_back(browser: Browser, app: RestApp,
                                                                    callback: CallbackServer) -> None:
    request = oauth.start_authorization(app)
    _sign_in(browser, request, "not-the-password")
    browser.css("button[value=allow]").click()
    alert = browser.css("p.error[role=alert]")
    assert alert.text == "Invalid username or password."
    browser.shot("wrong-password")
    assert urlsplit(browser.url).path == "/connect/authorize"
    assert browser.element("username").get_attribute("value") == CUSTOMER
    assert callback.received.empty(), "a refused login must not reach the callback"
