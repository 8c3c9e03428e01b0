"""The identity server over real HTTP: discovery, the authorize page (form POST), code exchange, refresh
rotation, reuse, expiry on the simulated clock, revocation, and RFC 6749 error answers."""

from __future__ import annotations

import jsonschema
import jwt
import pytest
import requests

from nmbrs_sim import openapi
from nmbrs_sim.scenario import read_scenario_file
from nmbrs_sim.testing import running_simulator
from tests.nmbrs_sim.conftest import DEMO
from tests.nmbrs_sim.rest_flow import (
    APP,
    APP_SECRET,
    BUSINESS_LOGIN,
    BUSINESS_PASSWORD,
    CALLBACK,
    MASTER_LOGIN,
    MASTER_PASSWORD,
    NARROW,
    NARROW_CALLBACK,
    NARROW_SECRET,
    SCOPES,
    Flow,
    basic,
    oauth_error,
    pkce,
    query_of,
)

DAY = 86_400


@pytest.fixture
def flow(sim) -> Flow:
    return Flow(sim)


def test_discovery_names_the_endpoints_on_this_host(sim) -> None:
    doc = requests.get(f"{sim.root_url}/.well-known/openid-configuration", timeout=10).json()
    assert doc["issuer"] == sim.root_url
    assert doc["authorization_endpoint"] == f"{sim.root_url}/connect/authorize"
    assert doc["token_endpoint"] == f"{sim.root_url}/connect/token"
    assert doc["revocation_endpoint"] == f"{sim.root_url}/connect/revocation"
    assert set(doc["code_challenge_methods_supported"]) == {"S256", "plain"}
    assert "offline_access" in doc["scopes_supported"]
    keys = requests.get(doc["jwks_uri"], timeout=10).json()["keys"]
    assert keys[0]["kty"] == "RSA"


def test_the_page_shows_the_scopes_and_a_plain_form(sim, flow: Flow) -> None:
    page = requests.get(f"{sim.root_url}/connect/authorize", params=flow.authorize_params(), timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    for scope in SCOPES.split():
        assert f"<code>{scope}</code>" in page.text
    assert '<form method="post" action="/connect/authorize">' in page.text
    assert 'name="password"' in page.text
    assert "L1NDA (demo)" in page.text


def test_allow_redirects_with_code_scope_and_state_then_the_code_buys_tokens(sim, flow: Flow) -> None:
    response = flow.consent(BUSINESS_LOGIN, BUSINESS_PASSWORD, state="a b&c/é")
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(CALLBACK + "?")
    callback = query_of(location)
    assert callback["state"] == "a b&c/é"
    assert callback["scope"] == SCOPES
    tokens = flow.exchange(callback["code"])
    assert tokens.status_code == 200
    assert tokens.headers["Cache-Control"] == "no-store"
    body = tokens.json()
    jsonschema.validate(body, openapi.schema("TokenResponse"))
    assert body["expires_in"] == 3600
    assert body["token_type"] == "Bearer"
    assert body["refresh_token"]
    keys = requests.get(f"{sim.root_url}/.well-known/openid-configuration/jwks", timeout=10).json()
    key = jwt.PyJWK(keys["keys"][0])
    claims = jwt.decode(body["access_token"], key, algorithms=["RS256"], audience="nmbrs_api")
    assert claims["client_id"] == APP
    assert claims["exp"] - claims["iat"] == 3600
    assert set(claims["scope"]) == set(SCOPES.split())


def test_deny_sends_access_denied_with_state(flow: Flow) -> None:
    response = flow.consent(BUSINESS_LOGIN, "", action="deny", state="s1")
    assert response.status_code == 302
    callback = query_of(response.headers["Location"])
    assert callback["error"] == "access_denied"
    assert callback["state"] == "s1"
    assert "code" not in callback


@pytest.mark.parametrize("scope", ["company.info.read employee.salary.read", "company.info.read debtor.info",
                                   ""])
def test_unknown_or_disallowed_scope_shows_an_error_page_without_redirect(sim, flow: Flow, scope: str) -> None:
    response = requests.get(f"{sim.root_url}/connect/authorize", params=flow.authorize_params(scope=scope),
                            allow_redirects=False, timeout=10)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "<title>Invalid scope</title>" in response.text


def test_a_scope_the_client_may_not_use_is_invalid_even_if_nmbrs_knows_it(sim) -> None:
    narrow = Flow(sim, NARROW, NARROW_SECRET, NARROW_CALLBACK)
    response = requests.get(f"{sim.root_url}/connect/authorize",
                            params=narrow.authorize_params(scope="offline_access company.info.read"), timeout=10)
    assert response.status_code == 400
    assert "Invalid scope" in response.text


def test_redirect_uri_must_match_exactly_and_the_client_must_exist(sim, flow: Flow) -> None:
    for params in (flow.authorize_params() | {"redirect_uri": CALLBACK + "/"},
                   flow.authorize_params() | {"redirect_uri": CALLBACK.upper()},
                   flow.authorize_params() | {"client_id": "PartnerApp_Nobody"}):
        response = requests.get(f"{sim.root_url}/connect/authorize", params=params, allow_redirects=False,
                                timeout=10)
        assert response.status_code == 400, params
        assert "Location" not in response.headers


def test_response_type_other_than_code_is_sent_back(sim, flow: Flow) -> None:
    response = requests.get(f"{sim.root_url}/connect/authorize",
                            params=flow.authorize_params() | {"response_type": "token"}, allow_redirects=False,
                            timeout=10)
    assert response.status_code == 302
    assert query_of(response.headers["Location"])["error"] == "unsupported_response_type"


def test_wrong_password_and_master_login_stay_on_the_page(flow: Flow) -> None:
    wrong = flow.consent(BUSINESS_LOGIN, "not-the-password")
    assert wrong.status_code == 401
    assert "Invalid username or password" in wrong.text
    assert "Location" not in wrong.headers
    master = flow.consent(MASTER_LOGIN, MASTER_PASSWORD)
    assert master.status_code == 403
    assert "master" in master.text
    nobody = flow.consent("nobody@nowhere.example", "whatever")
    assert nobody.status_code == 401


def test_a_login_without_password_cannot_consent(sim, flow: Flow) -> None:
    assert flow.consent("master-horeca@demo-accountants.example", "").status_code == 401
    sim.admin.set_password(BUSINESS_LOGIN, None)
    assert flow.consent(BUSINESS_LOGIN, BUSINESS_PASSWORD).status_code == 401


@pytest.mark.parametrize("method", ["S256", "plain"])
def test_pkce_is_checked_when_a_challenge_was_sent(flow: Flow, method: str) -> None:
    verifier, challenge = pkce(method)
    code = flow.code(BUSINESS_LOGIN, BUSINESS_PASSWORD, code_challenge=challenge, code_challenge_method=method)
    oauth_error(flow.exchange(code, code_verifier=verifier + "x"), 400, "invalid_grant")
    code = flow.code(BUSINESS_LOGIN, BUSINESS_PASSWORD, code_challenge=challenge, code_challenge_method=method)
    oauth_error(flow.exchange(code), 400, "invalid_grant")  # no verifier at all
    code = flow.code(BUSINESS_LOGIN, BUSINESS_PASSWORD, code_challenge=challenge, code_challenge_method=method)
    assert flow.exchange(code, code_verifier=verifier).status_code == 200


def test_a_code_is_single_use_bound_to_its_redirect_uri_and_lives_five_minutes(sim, flow: Flow) -> None:
    code = flow.code(BUSINESS_LOGIN, BUSINESS_PASSWORD)
    assert flow.exchange(code).status_code == 200
    oauth_error(flow.exchange(code), 400, "invalid_grant")
    code = flow.code(BUSINESS_LOGIN, BUSINESS_PASSWORD)
    oauth_error(flow.token({"grant_type": "authorization_code", "code": code,
                            "redirect_uri": "http://localhost:8090/nmbrs/callback"}), 400, "invalid_grant")
    code = flow.code(BUSINESS_LOGIN, BUSINESS_PASSWORD)
    sim.admin.advance_clock(299)
    assert flow.exchange(code).status_code == 200
    code = flow.code(BUSINESS_LOGIN, BUSINESS_PASSWORD)
    sim.admin.advance_clock(301)
    oauth_error(flow.exchange(code), 400, "invalid_grant")


def test_client_authentication_basic_percent_encoded_or_in_the_form(sim, flow: Flow) -> None:
    code = flow.code(BUSINESS_LOGIN, BUSINESS_PASSWORD)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}
    assert flow.token(data, auth="form").status_code == 200
    url = f"{sim.root_url}/connect/token"
    # The secret holds '$' and '*': Basic without percent-encoding still decodes here ('*' and '$' survive
    # unquoting), but a wrong secret, a missing one or an unknown client are invalid_client (401 with Basic).
    wrong = requests.post(url, data=data, headers={"Authorization": basic(APP, APP_SECRET + "x")}, timeout=10)
    oauth_error(wrong, 401, "invalid_client")
    assert wrong.headers["WWW-Authenticate"].startswith("Basic")
    oauth_error(requests.post(url, data=data, headers={"Authorization": basic("PartnerApp_X", APP_SECRET)},
                              timeout=10), 401, "invalid_client")
    oauth_error(requests.post(url, data=data, timeout=10), 400, "invalid_client")
    oauth_error(requests.post(url, data={**data, "client_id": APP, "client_secret": "nope"}, timeout=10), 400,
                "invalid_client")


def test_percent_encoding_matters_for_a_secret_with_a_plus() -> None:
    """A '+' in a secret sent unencoded in Basic decodes to a space (RFC 6749 form-encoding): invalid_client."""
    scenario = read_scenario_file(DEMO)
    scenario["rest"]["clients"][0]["client_secret"] = "with+plus*and$dollar"
    with running_simulator(scenario) as own:
        flow = Flow(own, secret="with+plus*and$dollar")
        code = flow.code(BUSINESS_LOGIN, BUSINESS_PASSWORD)
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}
        raw = requests.post(f"{own.root_url}/connect/token", data=data,
                            headers={"Authorization": basic(APP, "with+plus*and$dollar", encode=False)}, timeout=10)
        oauth_error(raw, 401, "invalid_client")
        assert flow.token(data).status_code == 200


def test_unsupported_grant_type_and_missing_parameters(flow: Flow) -> None:
    oauth_error(flow.token({"grant_type": "client_credentials"}), 400, "unsupported_grant_type")
    oauth_error(flow.token({"grant_type": "authorization_code"}), 400, "invalid_request")
    oauth_error(flow.token({"grant_type": "refresh_token"}), 400, "invalid_request")


def test_refresh_rotates_and_the_old_token_is_dead(flow: Flow) -> None:
    first = flow.tokens(BUSINESS_LOGIN, BUSINESS_PASSWORD)
    second = flow.refresh(first["refresh_token"])
    assert second.status_code == 200
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert rotated["access_token"] != first["access_token"]
    assert flow.api("/api/debtors", rotated["access_token"]).status_code == 200
    oauth_error(flow.refresh(first["refresh_token"]), 400, "invalid_grant")  # reuse of the old one
    assert flow.refresh(rotated["refresh_token"]).status_code == 200
    oauth_error(flow.refresh("F" * 64), 400, "invalid_grant")


def test_a_refresh_token_belongs_to_its_client(sim, flow: Flow) -> None:
    first = flow.tokens(BUSINESS_LOGIN, BUSINESS_PASSWORD)
    narrow = Flow(sim, NARROW, NARROW_SECRET, NARROW_CALLBACK)
    oauth_error(narrow.refresh(first["refresh_token"]), 400, "invalid_grant")
    assert flow.refresh(first["refresh_token"]).status_code == 200


def test_no_refresh_token_without_offline_access(sim) -> None:
    narrow = Flow(sim, NARROW, NARROW_SECRET, NARROW_CALLBACK)
    body = narrow.tokens(BUSINESS_LOGIN, BUSINESS_PASSWORD, scope="company.info.read")
    assert "refresh_token" not in body
    assert body["scope"] == "company.info.read"


def test_refresh_tokens_expire_after_30_days_unused(sim, flow: Flow) -> None:
    tokens = flow.tokens(BUSINESS_LOGIN, BUSINESS_PASSWORD)
    sim.admin.advance_clock(29 * DAY)
    renewed = flow.refresh(tokens["refresh_token"])
    assert renewed.status_code == 200  # used within 30 days: the new one lives 30 days from now
    sim.admin.advance_clock(30 * DAY + 60)
    oauth_error(flow.refresh(renewed.json()["refresh_token"]), 400, "invalid_grant")


def test_admin_expiry_of_refresh_tokens_by_consent(sim, flow: Flow) -> None:
    business = flow.tokens(BUSINESS_LOGIN, BUSINESS_PASSWORD)
    vandijk = flow.tokens("payroll@modehuis-vandijk.example", "vandijk-demo-pw")
    consents = {c["username"]: c for c in sim.admin.consents()}
    assert consents[BUSINESS_LOGIN]["live_refresh_tokens"] == 1
    assert sim.admin.expire_refresh_tokens(consents[BUSINESS_LOGIN]["id"]) == 1
    oauth_error(flow.refresh(business["refresh_token"]), 400, "invalid_grant")
    assert flow.refresh(vandijk["refresh_token"]).status_code == 200
    assert sim.admin.expire_refresh_tokens() == 1  # the rotated one of van Dijk


def test_withdrawal_kills_refresh_and_access_tokens(sim, flow: Flow) -> None:
    tokens = flow.tokens(BUSINESS_LOGIN, BUSINESS_PASSWORD)
    assert flow.api("/api/debtors", tokens["access_token"]).status_code == 200
    (consent,) = sim.admin.consents()
    assert consent["active"]
    assert consent["scopes"] == SCOPES.split()
    sim.admin.withdraw_consent(consent["id"])
    assert flow.api("/api/debtors", tokens["access_token"]).json()["code"] == 40102
    oauth_error(flow.refresh(tokens["refresh_token"]), 400, "invalid_grant")
    assert sim.admin.consents()[0]["active"] is False
    again = flow.tokens(BUSINESS_LOGIN, BUSINESS_PASSWORD)  # consenting again makes a new connection
    assert flow.api("/api/debtors", again["access_token"]).status_code == 200
    assert len(sim.admin.consents()) == 2


def test_revocation_kills_a_refresh_token(sim, flow: Flow) -> None:
    tokens = flow.tokens(BUSINESS_LOGIN, BUSINESS_PASSWORD)
    url = f"{sim.root_url}/connect/revocation"
    headers = {"Authorization": basic(APP, APP_SECRET)}
    assert requests.post(url, data={"token": "unknown"}, headers=headers, timeout=10).status_code == 200
    oauth_error(requests.post(url, data={"token": tokens["refresh_token"]},
                              headers={"Authorization": basic(APP, "wrong-secret")}, timeout=10),
                401, "invalid_client")
    assert flow.refresh(tokens["refresh_token"]).status_code == 200  # the failed revocation changed nothing
    newest = flow.tokens(BUSINESS_LOGIN, BUSINESS_PASSWORD)["refresh_token"]
    response = requests.post(url, data={"token": newest, "token_type_hint": "refresh_token"}, headers=headers,
                             timeout=10)
    assert response.status_code == 200
    oauth_error(flow.refresh(newest), 400, "invalid_grant")


def test_a_deleted_login_gets_no_tokens(sim, flow: Flow) -> None:
    tokens = flow.tokens(BUSINESS_LOGIN, BUSINESS_PASSWORD)
    sim.admin.delete_login(BUSINESS_LOGIN)
    oauth_error(flow.refresh(tokens["refresh_token"]), 400, "invalid_grant")
    assert flow.api("/api/debtors", tokens["access_token"]).json()["code"] == 40102


def test_admin_authorize_consents_without_a_browser(sim, flow: Flow) -> None:
    verifier, challenge = pkce()
    location = sim.admin.authorize(BUSINESS_LOGIN, APP, CALLBACK, SCOPES, "st-9", code_challenge=challenge,
                                   code_challenge_method="S256")
    callback = query_of(location)
    assert location.startswith(CALLBACK)
    assert callback["state"] == "st-9"
    assert callback["scope"] == SCOPES
    assert flow.exchange(callback["code"], code_verifier=verifier).status_code == 200


@pytest.mark.parametrize(("username", "scope", "redirect", "status", "words"), [
    (MASTER_LOGIN, SCOPES, CALLBACK, 403, "master"),
    ("master-horeca@demo-accountants.example", SCOPES, CALLBACK, 401, "Invalid username"),
    (BUSINESS_LOGIN, "company.info.read payroll.everything", CALLBACK, 400, "Invalid scope"),
    (BUSINESS_LOGIN, SCOPES, "http://127.0.0.1:9999/elsewhere", 400, "Invalid redirect_uri"),
])
def test_admin_authorize_is_refused_like_the_page(sim, username: str, scope: str, redirect: str, status: int,
                                                  words: str) -> None:
    from nmbrs_sim.admin import SimAdminError

    with pytest.raises(SimAdminError) as caught:
        sim.admin.authorize(username, APP, redirect, scope, "s")
    assert caught.value.status == status
    assert words in caught.value.message
