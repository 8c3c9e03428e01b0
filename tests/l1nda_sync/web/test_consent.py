"""REST consent through the customer page, over real HTTP: the invitation mail, the page, Nmbrs' consent page on
the simulator, the callback, the result; and every way it can fail, each a clear page with nothing written."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from l1nda_sync.registry.errors import ConfigError
from l1nda_sync.web.app import redirect
from tests.l1nda_sync.web.conftest import WebStack
from tests.l1nda_sync.web.helpers import (
    browser,
    cli,
    consent,
    consent_at_nmbrs,
    counts,
    csrf_of,
    error_code,
    items,
    register_soap_token,
    rows,
    start_consent,
)

DEGRAAF = "salaris@bakkerij-degraaf.example"
CONTACT = "jan@bakkerij-degraaf.example"


def test_a_customer_consents_and_the_page_lists_the_companies_and_the_link_that_activates(
        web_stack: WebStack) -> None:
    # De Graaf's SOAP token is known (its reach names the company), its link requested: consenting moves it to REST
    soap = register_soap_token(web_stack)
    assert cli("links", "request", "--customer", "CUST-DEGRAAF", "--company", "60101")[0] == 0
    url = web_stack.invite("CUST-DEGRAAF", CONTACT, "rest", "nl")
    mail = web_stack.mails(CONTACT)[-1]
    assert "Koppel L1NDA aan Nmbrs" in str(mail["Subject"])

    client = browser()
    page = client.get(url)
    assert page.status_code == 200
    assert 'id="connect"' in page.text
    assert "Verbinden met Nmbrs" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "script-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie

    started = client.post(url + "/connect", data={"csrf": csrf_of(page.text)})
    assert started.status_code == 303
    location = started.headers["location"]
    assert location.startswith(web_stack.sim.root_url + "/connect/authorize?")
    query = parse_qs(urlsplit(location).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [web_stack.callback_url]

    callback = consent_at_nmbrs(client, location, DEGRAAF)
    result = client.get(callback)
    assert result.status_code == 200, result.text[:500]
    assert '<main id="result"' in result.text
    assert items(result.text, "companies") == ["Bakkerij De Graaf B.V. (1)", "De Graaf Winkels B.V. (2)"]
    links = items(result.text, "links")
    assert links == ["Bakkerij De Graaf B.V.: actief vanaf nu"]

    (token_id, state), = rows(web_stack, "SELECT id, state FROM tokens WHERE kind = 'rest_connection'")
    assert token_id != soap
    assert state == "active"
    assert rows(web_stack, "SELECT state, token_id FROM links") == [("active", token_id)]
    assert rows(web_stack, "SELECT state, result_token_id FROM invitations") == [("used", token_id)]
    (subject, recipients), = rows(web_stack, "SELECT subject, recipients FROM outbox WHERE event = 'customer_page'")
    assert recipients == ["support@l1nda.example"]
    assert subject.startswith("[L1NDA] Customer page: CUST-DEGRAAF consented"), subject  # filed with the alerts


def test_the_same_link_cannot_be_used_twice(web_stack: WebStack) -> None:
    url = web_stack.invite("CUST-DEGRAAF", CONTACT, "rest")
    assert consent(web_stack, url, DEGRAAF).status_code == 200
    before = counts(web_stack)
    again = browser().get(url)
    assert (again.status_code, error_code(again)) == (409, "used")
    assert counts(web_stack) == before


def test_a_denied_consent_is_a_clear_page_and_writes_nothing(web_stack: WebStack) -> None:
    url = web_stack.invite("CUST-DEGRAAF", CONTACT, "rest")
    before = counts(web_stack)
    client = browser()
    started = start_consent(client, url)
    callback = consent_at_nmbrs(client, started.headers["location"], DEGRAAF, action="deny")
    denied = client.get(callback)
    assert (denied.status_code, error_code(denied)) == (400, "denied")
    assert counts(web_stack) == before
    # the invitation still works: the customer may change their mind
    assert consent(web_stack, url, DEGRAAF).status_code == 200


def test_a_callback_used_twice_says_code_reused_and_changes_nothing(web_stack: WebStack) -> None:
    url = web_stack.invite("CUST-DEGRAAF", CONTACT, "rest")
    client = browser()
    started = start_consent(client, url)
    callback = consent_at_nmbrs(client, started.headers["location"], DEGRAAF)
    assert client.get(callback).status_code == 200
    before = counts(web_stack)
    replay = client.get(callback)
    assert (replay.status_code, error_code(replay)) == (409, "code_reused")
    assert counts(web_stack) == before


def test_a_callback_with_a_bad_or_missing_state_is_refused(web_stack: WebStack) -> None:
    client = browser()
    for query in ("code=abc&state=not-a-state-we-made", "code=abc"):
        answer = client.get(f"{web_stack.callback_url}?{query}")
        assert (answer.status_code, error_code(answer)) == (400, "bad_state"), query
    assert rows(web_stack, "SELECT count(*) FROM tokens") == [(0,)]


def test_invalid_scope_is_a_clear_page(web_stack: WebStack) -> None:
    url = web_stack.invite("CUST-DEGRAAF", CONTACT, "rest")
    client = browser()
    started = start_consent(client, url)
    state = parse_qs(urlsplit(started.headers["location"]).query)["state"][0]
    answer = client.get(f"{web_stack.callback_url}?error=invalid_scope&state={state}")
    assert (answer.status_code, error_code(answer)) == (400, "invalid_scope")


def test_an_expired_and_an_unknown_link(web_stack: WebStack) -> None:
    url = web_stack.invite("CUST-DEGRAAF", CONTACT, "rest")
    unknown = browser().get(url[:-3] + "xyz")
    assert (unknown.status_code, error_code(unknown)) == (404, "unknown")
    web_stack.clock.advance(days=15)
    expired = browser().get(url)
    assert (expired.status_code, error_code(expired)) == (410, "expired")


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(web_stack: WebStack) -> None:
    url = web_stack.invite("CUST-DEGRAAF", CONTACT, "rest")
    client = browser()
    client.get(url)
    for data in ({}, {"csrf": "forged"}):
        answer = client.post(url + "/connect", data=data)
        assert (answer.status_code, error_code(answer)) == (403, "csrf")
    # a token from another browser (another cookie) does not fit this one
    other = browser()
    page = other.get(url)
    answer = client.post(url + "/connect", data={"csrf": csrf_of(page.text)})
    assert (answer.status_code, error_code(answer)) == (403, "csrf")
    assert rows(web_stack, "SELECT count(*) FROM rest_authorizations") == [(0,)]


def test_posts_are_rate_limited_per_invitation(web_stack: WebStack) -> None:
    url = web_stack.invite("CUST-DEGRAAF", CONTACT, "rest")
    client = browser()
    codes = [client.post(url + "/connect", data={"csrf": "x"}).status_code
             for _ in range(web_stack.settings.web_rate_limit + 1)]
    assert codes[:-1] == [403] * web_stack.settings.web_rate_limit
    last = client.post(url + "/connect", data={"csrf": "x"})
    assert (last.status_code, error_code(last)) == (429, "rate_limited")


def test_unknown_links_are_rate_limited_per_address(web_stack: WebStack) -> None:
    client = browser()
    answers = [client.get(f"{web_stack.base_url}/invite/guess{i}") for i in range(web_stack.settings.web_rate_limit)]
    assert {error_code(a) for a in answers} == {"unknown"}
    limited = client.get(f"{web_stack.base_url}/invite/guess-more")
    assert (limited.status_code, error_code(limited)) == (429, "rate_limited")


def test_no_open_redirect_and_only_own_routes(web_stack: WebStack) -> None:
    answer = httpx.get(f"{web_stack.base_url}/invite/x/connect")  # GET of a form route
    assert (answer.status_code, error_code(answer)) == (405, "failed")
    assert "location" not in answer.headers
    missing = httpx.get(f"{web_stack.base_url}/elsewhere?next=https://evil.example/")
    assert (missing.status_code, error_code(missing)) == (404, "unknown")
    assert "location" not in missing.headers
    with pytest.raises(ConfigError):
        redirect("https://evil.example/connect/authorize?x=1", (web_stack.sim.root_url + "/connect/authorize?",))
