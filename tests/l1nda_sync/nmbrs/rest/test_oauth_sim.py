"""OAuth2 against the simulator's identity server: the consent flow with PKCE, percent-encoded Basic client
authentication, rotating refresh tokens, and every refusal as its own error."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from requests.adapters import HTTPAdapter

from l1nda_sync.masking import Secret
from l1nda_sync.nmbrs.errors import (
    AuthorizationError,
    ConsentDenied,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    NmbrsError,
    TransientError,
)
from l1nda_sync.nmbrs.rest import oauth
from l1nda_sync.nmbrs.rest.config import RestApp
from l1nda_sync.nmbrs.retry import RetryPolicy
from nmbrs_sim.admin import SimAdminError
from nmbrs_sim.testing import RunningSim
from tests.l1nda_sync.nmbrs.rest.conftest import (
    APP_ID,
    APP_SECRET,
    BUSINESS,
    CALLBACK,
    NARROW_CALLBACK,
    NARROW_ID,
    NARROW_SECRET,
    SimClock,
    consent,
    rest_app,
)

FAST = RetryPolicy(attempts=3, deadline=20.0, base_delay=0.0, max_delay=0.0)


class Recording(HTTPAdapter):
    """Records the requests it sends (to look at the headers authlib and our auth method wrote)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent.append(request)
        return super().send(request, *args, **kwargs)


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_the_authorize_url_asks_for_the_app_scopes_with_pkce_s256_and_a_random_state(app: RestApp) -> None:
    first, second = oauth.start_authorization(app), oauth.start_authorization(app)
    query = _query(first.url)
    assert first.url.startswith(app.identity_base + "/connect/authorize?")
    assert query["client_id"] == APP_ID
    assert query["redirect_uri"] == CALLBACK
    assert query["response_type"] == "code"
    assert query["scope"] == "offline_access company.info.read user.info.read"
    assert query["code_challenge_method"] == "S256"
    digest = __import__("hashlib").sha256(first.code_verifier.reveal().encode()).digest()
    assert query["code_challenge"] == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert query["state"] == first.state.reveal() != second.state.reveal()
    assert len(first.state.reveal()) >= 32
    assert 43 <= len(first.code_verifier.reveal()) <= 128
    assert first.state.reveal() not in repr(first)
    assert first.code_verifier.reveal() not in repr(first)
    assert _query(oauth.start_authorization(app, scopes=("company.info.read",)).url)["scope"] == "company.info.read"


def test_the_whole_consent_flow_gives_a_grant_that_opens_the_api(sim: RunningSim, app: RestApp, clock: SimClock
                                                                 ) -> None:
    now = clock()
    grant = consent(sim, app, BUSINESS, now)
    assert grant.refresh_token is not None
    assert grant.scopes == ("offline_access", "company.info.read", "user.info.read")
    assert 3590 <= (grant.expires_at - now).total_seconds() <= 3600
    answer = requests.get(f"{sim.root_url}/api/debtors", timeout=5, headers={
        "Authorization": f"Bearer {grant.access_token.reveal()}", "X-Subscription-Key": app.subscription_key.reveal()})
    assert answer.status_code == 200
    assert answer.json()["data"][0]["number"] == "B001"
    assert grant.access_token.reveal() not in repr(grant)
    assert grant.refresh_token.reveal() not in repr(grant)


def test_client_authentication_is_basic_with_the_secret_percent_encoded(sim: RunningSim, app: RestApp,
                                                                        clock: SimClock) -> None:
    grant = consent(sim, app, BUSINESS, clock())
    recording = Recording()
    session = requests.Session()
    session.mount("http://", recording)
    oauth.refresh(app, grant.refresh_token or "", now=clock(), session=session)
    (sent,) = recording.sent
    expected = base64.b64encode(b"PartnerApp_L1NDA_demo:Lx%2A7%24demo-Secret%24q9%2A").decode()
    assert sent.headers["Authorization"] == f"Basic {expected}"
    assert "client_secret" not in str(sent.body)


def test_a_refresh_rotates_the_refresh_token_and_kills_the_old_one(sim: RunningSim, app: RestApp,
                                                                   clock: SimClock) -> None:
    grant = consent(sim, app, BUSINESS, clock())
    assert grant.refresh_token is not None
    clock.advance(1800)
    later = clock()
    rotated = oauth.refresh(app, grant.refresh_token, now=later)
    assert rotated.refresh_token is not None
    assert rotated.refresh_token.reveal() != grant.refresh_token.reveal()
    assert rotated.access_token.reveal() != grant.access_token.reveal()
    assert 3590 <= (rotated.expires_at - later).total_seconds() <= 3600
    with pytest.raises(InvalidGrant) as reused:
        oauth.refresh(app, grant.refresh_token, now=later)
    assert reused.value.error == "invalid_grant"
    assert "used already" in str(reused.value)
    assert oauth.refresh(app, rotated.refresh_token, now=later).refresh_token is not None


def test_a_code_is_single_use_and_bound_to_its_verifier(sim: RunningSim, app: RestApp, clock: SimClock) -> None:
    request = oauth.start_authorization(app)
    query = _query(request.url)
    location = sim.admin.authorize(BUSINESS, APP_ID, CALLBACK, query["scope"], query["state"],
                                   code_challenge=query["code_challenge"], code_challenge_method="S256")
    code = oauth.parse_callback(location).code
    assert code is not None
    with pytest.raises(InvalidGrant, match="code_verifier"):
        oauth.exchange_code(app, code, Secret("x" * 64), now=clock())
    request2 = oauth.start_authorization(app)
    query2 = _query(request2.url)
    code2 = oauth.parse_callback(sim.admin.authorize(BUSINESS, APP_ID, CALLBACK, query2["scope"], query2["state"],
                                                     code_challenge=query2["code_challenge"],
                                                     code_challenge_method="S256")).code
    assert code2 is not None
    oauth.exchange_code(app, code2, request2.code_verifier, now=clock())
    with pytest.raises(InvalidGrant, match="used already"):
        oauth.exchange_code(app, code2, request2.code_verifier, now=clock())


def test_a_wrong_client_secret_is_invalid_client_naming_the_setting(sim: RunningSim, clock: SimClock) -> None:
    good = consent(sim, rest_app(sim), BUSINESS, clock())
    wrong = rest_app(sim, secret="Lx*7$wrong$q9*")
    with pytest.raises(InvalidClient) as caught:
        oauth.refresh(wrong, good.refresh_token or "", now=clock())
    assert "L1NDA_NMBRS_REST_CLIENT_ID" in str(caught.value)
    assert "wrong" not in str(caught.value)
    assert caught.value.outcome == "unknown"
    assert not caught.value.retryable


def test_the_narrow_app_gets_no_refresh_token_without_offline_access(sim: RunningSim, clock: SimClock) -> None:
    narrow = rest_app(sim, client_id=NARROW_ID, secret=NARROW_SECRET, redirect_uri=NARROW_CALLBACK,
                      scopes=("company.info.read",))
    grant = consent(sim, narrow, BUSINESS, clock())
    assert grant.refresh_token is None
    assert grant.scopes == ("company.info.read",)
    with pytest.raises(SimAdminError) as refused:  # Nmbrs shows an "Invalid scope" page: no redirect
        consent(sim, narrow, BUSINESS, clock(), scopes=("offline_access", "company.info.read"))
    assert refused.value.status == 400


@pytest.mark.parametrize(("error", "cls"), [("access_denied", ConsentDenied), ("invalid_scope", InvalidScope),
                                            ("server_error", AuthorizationError)])
def test_an_error_callback_raises_its_class_with_the_state(error: str, cls: type[NmbrsError]) -> None:
    url = f"{CALLBACK}?error={error}&error_description=The+user+denied+the+request.&state=st-1"
    with pytest.raises(cls) as caught:
        oauth.parse_callback(url)
    assert type(caught.value) is cls
    assert isinstance(caught.value, AuthorizationError)
    assert caught.value.error == error
    assert caught.value.state == "st-1"
    quiet = oauth.parse_callback(url, raise_errors=False)
    assert quiet.error == error
    assert quiet.code is None


@pytest.mark.parametrize("url", ["", "not a url", f"{CALLBACK}", f"{CALLBACK}?state=abc", "ftp://x/?code=1"])
def test_a_callback_without_code_or_error_is_bad_input(url: str) -> None:
    with pytest.raises(ValueError, match="callback URL"):
        oauth.parse_callback(url)


def test_the_callback_keeps_the_granted_scope(sim: RunningSim, app: RestApp) -> None:
    location = sim.admin.authorize(BUSINESS, APP_ID, CALLBACK, "offline_access company.info.read", "s1")
    callback = oauth.parse_callback(location)
    assert callback.scopes == ("offline_access", "company.info.read")
    assert callback.state == "s1"
    assert callback.code is not None


def test_identity_server_errors_after_sending_are_transient_and_not_retried(sim: RunningSim, app: RestApp,
                                                                             clock: SimClock) -> None:
    """A 5xx may come after the server rotated the token: a repeat would send a spent token (invalid_grant)."""
    grant = consent(sim, app, BUSINESS, clock())
    sim.admin.clear_calls()
    sim.admin.inject_fault("http_502", path="/connect/token", count=1)
    with pytest.raises(TransientError) as caught:
        oauth.refresh(app, grant.refresh_token or "", now=clock(), retry=FAST)
    assert caught.value.outcome == "transient"
    assert not caught.value.retryable
    assert "502" in str(caught.value)
    assert sim.admin.call_count(service="Identity", operation="token") == 1
    sim.admin.inject_fault("http_403_html", path="/connect/token", count=1)  # a WAF page: not JSON
    with pytest.raises(TransientError) as page:
        oauth.refresh(app, grant.refresh_token or "", now=clock(), retry=FAST)
    assert not page.value.retryable
    assert sim.admin.call_count(service="Identity", operation="token") == 2
    assert oauth.refresh(app, grant.refresh_token or "", now=clock()).refresh_token is not None  # not used up


def test_a_429_is_refused_unprocessed_and_retried(sim: RunningSim, app: RestApp, clock: SimClock) -> None:
    grant = consent(sim, app, BUSINESS, clock())
    sim.admin.clear_calls()
    sim.admin.inject_fault("http_429", path="/connect/token", count=1, retry_after=0)
    rotated = oauth.refresh(app, grant.refresh_token or "", now=clock(), retry=FAST)
    assert rotated.refresh_token is not None
    assert sim.admin.call_count(service="Identity", operation="token") == 2


def test_a_connection_reset_is_transient_and_not_retried(sim: RunningSim, app: RestApp, clock: SimClock) -> None:
    grant = consent(sim, app, BUSINESS, clock())
    sim.admin.clear_calls()
    sim.admin.inject_fault("reset", path="/connect/token", count=1)
    with pytest.raises(TransientError, match="ConnectionError") as caught:
        oauth.refresh(app, grant.refresh_token or "", now=clock(), retry=FAST)
    assert not caught.value.retryable
    assert sim.admin.call_count(service="Identity", operation="token") == 1


def test_a_code_exchange_is_not_retried_after_sending(sim: RunningSim, app: RestApp, clock: SimClock) -> None:
    request = oauth.start_authorization(app)
    query = _query(request.url)
    code = oauth.parse_callback(sim.admin.authorize(BUSINESS, APP_ID, CALLBACK, query["scope"], query["state"],
                                                    code_challenge=query["code_challenge"],
                                                    code_challenge_method="S256")).code
    assert code is not None
    sim.admin.clear_calls()
    sim.admin.inject_fault("http_503", path="/connect/token", count=1)
    with pytest.raises(TransientError) as caught:
        oauth.exchange_code(app, code, request.code_verifier, now=clock(), retry=FAST)
    assert not caught.value.retryable
    assert sim.admin.call_count(service="Identity", operation="token") == 1


def test_a_connection_never_opened_is_retried(clock: SimClock, sim: RunningSim) -> None:
    import socket
    from dataclasses import replace

    with socket.socket() as s:  # a port nobody listens on: connection refused, nothing sent
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    closed = replace(rest_app(sim), identity_base=f"http://127.0.0.1:{port}")
    tries: list[int] = []
    real = oauth._post_token

    def counting(*args: Any, **kwargs: Any) -> dict[str, Any]:
        tries.append(1)
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(oauth, "_post_token", counting)
        with pytest.raises(TransientError) as caught:
            oauth.refresh(closed, "rt", now=clock(), retry=FAST)
    assert caught.value.retryable
    assert len(tries) == 3


def test_app_repr_hides_its_secrets(sim: RunningSim) -> None:
    app = rest_app(sim)
    shown = repr(app) + str(app)
    assert APP_SECRET not in shown
    assert app.subscription_key.reveal() not in shown
    assert APP_ID in shown


def test_revoke_kills_the_refresh_token(sim: RunningSim, app: RestApp, clock: SimClock) -> None:
    grant = consent(sim, app, BUSINESS, clock())
    assert grant.refresh_token is not None
    oauth.revoke(app, grant.refresh_token)
    with pytest.raises(InvalidGrant):
        oauth.refresh(app, grant.refresh_token, now=clock())
    oauth.revoke(app, grant.refresh_token)  # idempotent: any token answers 200
