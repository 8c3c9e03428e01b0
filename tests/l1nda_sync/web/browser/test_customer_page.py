"""The customer page end to end in headless Chromium: the real app (uvicorn), the simulator's Nmbrs consent page,
PostgreSQL and an SMTP sink (`web_stack`, tests/l1nda_sync/web/conftest.py).

Every flow starts where a customer starts: the invitation mail that `l1nda-sync invite` sent. Each page is saved
as var/screenshots/<test>-<step>.png; README.md shows a set of them (docs/screenshots/).
"""

from __future__ import annotations

import io
import json
import logging
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from selenium.webdriver.common.by import By

from l1nda_sync.cli import main
from l1nda_sync.registry.db import fetch_all
from tests.l1nda_sync.web.browser.conftest import Browser
from tests.l1nda_sync.web.conftest import PASSWORDS, WebStack

CUSTOMER = "CUST-DEGRAAF"
LOGIN = "salaris@bakkerij-degraaf.example"  # Bakkerij De Graaf's own login: may consent, reaches one company
COMPANY = 60101
COMPANY_NAME = "Bakkerij De Graaf B.V."
CONTACT = "salaris@bakkerij-degraaf.example"


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str, stdin: str = "") -> Any:
    """`l1nda-sync --json ARGV` in-process against the stack's registry; its JSON answer."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    capsys.readouterr()
    code = main(["--json", *argv])
    out, err = capsys.readouterr()
    assert code == 0, f"l1nda-sync {' '.join(argv)} exited {code}: {err}"
    return json.loads(out) if out.strip() else None


def query(stack: WebStack, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    return fetch_all(stack.database_url, sql, *params)


def soap_customer(stack: WebStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> int:
    """The customer as L1NDA knows it today: its own SOAP token (checked live) serving its link. Returns the
    token's id."""
    added = cli(monkeypatch, capsys, "tokens", "add", "--label", "Bakkerij De Graaf", "--level", "debtor",
                "--username", LOGIN, "--contact", CONTACT, "--language", "en", stdin=stack.token_of(LOGIN) + "\n")
    token_id = int(added["token"]["id"])
    cli(monkeypatch, capsys, "links", "request", "--customer", CUSTOMER, "--company", str(COMPANY))
    cli(monkeypatch, capsys, "sync", "run")  # what the DAG runs: the token reaches the company, the link activates
    assert query(stack, "SELECT state, token_id FROM links WHERE customer_ref = %s", CUSTOMER) == [
        ("active", token_id)]
    return token_id


def server_logs(caplog: pytest.LogCaptureFixture) -> str:
    """Everything logged in this process but the test's own browser driving (selenium logs what it types)."""
    return "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
                     if not r.name.startswith("selenium"))


def error_code(browser: Browser) -> str:
    return str(browser.element("error").get_attribute("data-error"))


def page_language(browser: Browser) -> str:
    return str(browser.css("html").get_attribute("lang"))


def consent_at_nmbrs(browser: Browser, stack: WebStack, *, allow: bool, shot: str | None = None) -> None:
    """On the simulator's consent page: sign in as the customer's login, then Allow or Deny."""
    browser.wait_for(lambda d: urlsplit(d.current_url).path == "/connect/authorize", "Nmbrs' consent page")
    assert urlsplit(browser.url).netloc == urlsplit(stack.sim.root_url).netloc
    browser.element("username").send_keys(LOGIN)
    browser.element("password").send_keys(PASSWORDS[LOGIN])
    if shot:
        browser.shot(shot)
    browser.css(f"button[value={'allow' if allow else 'deny'}]").click()


# -- REST consent ------------------------------------------------------------------------------------------------

def test_rest_invitation_mail_to_consent_to_active_links(browser: Browser, web_stack: WebStack,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    soap = soap_customer(web_stack, monkeypatch, capsys)
    url = web_stack.invite(CUSTOMER, CONTACT, "rest")  # the link as the mail in the SMTP sink carries it
    assert url.startswith(f"{web_stack.base_url}/invite/")
    (mail,) = web_stack.mails(CONTACT)
    assert mail["To"] == CONTACT

    browser.open(url)
    invite = browser.element("invite")
    assert invite.get_attribute("data-purpose") == "rest"
    assert page_language(browser) == "en"
    scopes = [li.text for li in browser.element("scopes").find_elements(By.TAG_NAME, "li")]
    assert any("read the names and numbers of your debtors and companies" in s for s in scopes), scopes
    browser.shot("invitation")
    browser.element("connect").click()

    consent_at_nmbrs(browser, web_stack, allow=True, shot="nmbrs-consent")

    result = browser.element("result")
    assert result.get_attribute("data-purpose") == "rest"
    browser.shot("result")
    assert urlsplit(browser.url).netloc == urlsplit(web_stack.base_url).netloc, "back on L1NDA's page"
    companies = [li.text for li in browser.element("companies").find_elements(By.TAG_NAME, "li")]
    assert any(COMPANY_NAME in c for c in companies), companies
    links = browser.element("links").find_elements(By.TAG_NAME, "li")
    assert [li.get_attribute("data-state") for li in links] == ["active"]
    assert COMPANY_NAME in links[0].text

    connections = query(web_stack, """SELECT t.id, t.state, c.customer_ref FROM tokens t
                                       JOIN rest_connections c ON c.token_id = t.id""")
    assert len(connections) == 1, connections
    connection_id, state, customer = connections[0]
    assert (state, customer) == ("active", CUSTOMER)
    assert query(web_stack, "SELECT state, token_id, reason FROM links WHERE customer_ref = %s", CUSTOMER) == [
        ("active", connection_id, "moved_to_rest")], f"the link moves from SOAP token {soap} to the connection"
    assert query(web_stack, "SELECT state FROM invitations") == [("used",)]

    callback = browser.url  # Nmbrs' answer, with its code and state
    browser.open(url)  # the mail's link once more: it did its job
    assert error_code(browser) == "used"
    assert page_language(browser) == "en"
    browser.shot("used")
    browser.open(callback)  # the answer again (a reload, a second tab): its code is spent
    browser.shot("callback-again")
    assert error_code(browser) == "code_reused"
    assert len(query(web_stack, "SELECT 1 FROM rest_connections")) == 1, "nothing more was stored"

    logs = server_logs(caplog)
    assert "uvicorn.access" in logs, "the server's log is captured"
    assert url.rsplit("/", 1)[1] not in logs, "the invitation value is never logged"
    code = parse_qs(urlsplit(callback).query)["code"][0]
    assert code not in logs, "nor Nmbrs' code"


def test_denied_consent_is_a_clear_page_in_the_contacts_language_and_stores_nothing(
        browser: Browser, web_stack: WebStack, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    soap = soap_customer(web_stack, monkeypatch, capsys)
    url = web_stack.invite(CUSTOMER, CONTACT, "rest", language="nl")
    browser.open(url)
    assert page_language(browser) == "nl"
    assert browser.element("connect").text == "Verbinden met Nmbrs"
    browser.shot("invitation-nl")
    browser.element("connect").click()
    consent_at_nmbrs(browser, web_stack, allow=False)

    assert error_code(browser) == "denied"
    assert page_language(browser) == "nl"
    assert browser.css("main#error h1").text == "De koppeling is niet gemaakt"
    browser.shot("denied-nl")
    assert query(web_stack, "SELECT count(*) FROM tokens WHERE kind = 'rest_connection'") == [(0,)]
    assert query(web_stack, "SELECT state, token_id FROM links WHERE customer_ref = %s", CUSTOMER) == [
        ("active", soap)], "the link stays on the SOAP token"
    (state,) = query(web_stack, "SELECT state FROM invitations")[0]
    assert state != "used", "a denied consent leaves the link usable for another try"
    browser.driver.back()  # to Nmbrs' page: the customer tries again from the mail's link instead
    browser.open(url)
    assert browser.element("connect").text == "Verbinden met Nmbrs", "the link still works"


# -- SOAP token hand-over ----------------------------------------------------------------------------------------

def revoked_token(stack: WebStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[
        int, str]:
    """The customer's SOAP token reset in Nmbrs (the stored one stops working): its id and the new token."""
    token_id = soap_customer(stack, monkeypatch, capsys)
    new_token = stack.sim.admin.reset_token(LOGIN)
    assert new_token != stack.token_of(LOGIN)
    return token_id, new_token


def test_token_hand_over_from_the_mail_stores_the_token_and_shows_its_reach(
        browser: Browser, web_stack: WebStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token_id, new_token = revoked_token(web_stack, monkeypatch, capsys)
    (old_fingerprint,) = query(web_stack, "SELECT fingerprint FROM tokens WHERE id = %s", token_id)[0]
    url = web_stack.invite(CUSTOMER, CONTACT, "token", token_id=token_id)

    browser.open(url)
    assert browser.element("invite").get_attribute("data-purpose") == "token"
    form = browser.element("token-form")
    assert form.get_attribute("method") == "post"
    browser.element("username").send_keys(LOGIN)
    browser.element("token").send_keys(new_token)
    assert browser.element("token").get_attribute("type") == "password"
    browser.shot("form")
    browser.element("submit").click()

    result = browser.element("result")
    assert result.get_attribute("data-purpose") == "token"
    browser.shot("result")
    companies = [li.text for li in browser.element("companies").find_elements(By.TAG_NAME, "li")]
    assert any(COMPANY_NAME in c for c in companies), companies
    links = browser.element("links").find_elements(By.TAG_NAME, "li")
    assert [li.get_attribute("data-state") for li in links] == ["active"]

    assert new_token not in browser.source, "the token is never shown back"
    assert new_token not in browser.url
    logs = server_logs(caplog)
    assert "uvicorn.access" in logs, "the server's log is captured"
    assert new_token not in logs, "nor logged, by the page, uvicorn or the check"
    for message in web_stack.mails():
        assert new_token not in message.as_string(), f"nor mailed: {message['Subject']}"
    (fingerprint, state) = query(web_stack, "SELECT fingerprint, state FROM tokens WHERE id = %s", token_id)[0]
    assert fingerprint != old_fingerprint, "the stored token was replaced"
    assert state == "active"
    assert query(web_stack, "SELECT state FROM invitations") == [("used",)]


@pytest.mark.parametrize("language", ["en", "nl"])
def test_a_token_nmbrs_refuses_is_a_clear_page_and_replaces_nothing(
        browser: Browser, web_stack: WebStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture, language: str) -> None:
    caplog.set_level(logging.DEBUG)
    token_id, new_token = revoked_token(web_stack, monkeypatch, capsys)
    (before,) = query(web_stack, "SELECT fingerprint FROM tokens WHERE id = %s", token_id)[0]
    url = web_stack.invite(CUSTOMER, CONTACT, "token", language=language, token_id=token_id)
    browser.open(url)
    wrong = new_token[:-6] + ("abcdef" if not new_token.endswith("abcdef") else "fedcba")
    browser.element("username").send_keys(LOGIN)
    browser.element("token").send_keys(wrong)
    browser.element("submit").click()

    assert error_code(browser) == "token_refused"
    assert page_language(browser) == language
    title = {"en": "Nmbrs did not accept this token", "nl": "Nmbrs accepteerde dit token niet"}[language]
    assert browser.css("main#error h1").text == title
    browser.shot(f"token-refused-{language}")
    assert wrong not in browser.source
    assert wrong not in server_logs(caplog)
    assert query(web_stack, "SELECT fingerprint FROM tokens WHERE id = %s", token_id) == [(before,)]
    (state,) = query(web_stack, "SELECT state FROM invitations")[0]
    assert state != "used", "the customer may go back and paste the right token"


# -- the other error pages ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("language", ["en", "nl"])
def test_an_expired_invitation(browser: Browser, web_stack: WebStack, language: str) -> None:
    url = web_stack.invite(CUSTOMER, CONTACT, "rest", language=language)
    web_stack.clock.advance(days=15)  # past the 14 days of invitation_ttl
    browser.open(url)
    assert error_code(browser) == "expired"
    assert page_language(browser) == language
    title = {"en": "This link has expired", "nl": "Deze link is verlopen"}[language]
    assert browser.css("main#error h1").text == title
    browser.shot(f"expired-{language}")
    assert not browser.driver.find_elements(By.ID, "connect")


def test_an_unknown_invitation(browser: Browser, web_stack: WebStack) -> None:
    real = web_stack.invite(CUSTOMER, CONTACT, "rest", language="nl")
    value = real.rsplit("/", 1)[1]
    forged = value[:-1] + ("A" if value[-1] != "A" else "B")  # one character off: no such invitation
    browser.open(f"{web_stack.base_url}/invite/{forged}")
    assert error_code(browser) == "unknown"
    assert page_language(browser) == "en", "an unknown link has no contact, so no language of its own"
    assert browser.css("main#error h1").text == "This link is not known"
    browser.shot("unknown")
    assert value not in browser.source
    assert forged not in browser.source


def test_a_form_without_its_cookie_is_refused(browser: Browser, web_stack: WebStack,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    token_id, new_token = revoked_token(web_stack, monkeypatch, capsys)
    (before,) = query(web_stack, "SELECT fingerprint FROM tokens WHERE id = %s", token_id)[0]
    url = web_stack.invite(CUSTOMER, CONTACT, "token", token_id=token_id)
    browser.open(url)
    browser.element("username").send_keys(LOGIN)
    browser.element("token").send_keys(new_token)
    browser.driver.execute_cdp_cmd("Network.clearBrowserCookies", {})  # another browser, or the cookie expired
    browser.element("submit").click()
    assert error_code(browser) == "csrf"
    browser.shot("csrf")
    assert query(web_stack, "SELECT fingerprint FROM tokens WHERE id = %s", token_id) == [(before,)]
    assert new_token not in browser.source
