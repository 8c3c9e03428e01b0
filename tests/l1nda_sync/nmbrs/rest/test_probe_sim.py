"""The REST probe against the simulator: what a consent reaches, and every refusal and fault mapped onto the one
error hierarchy with the outcome the engine records; throttling retried within the call, quota never retried."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from l1nda_sync.engine.outcomes import outcome_of
from l1nda_sync.nmbrs.errors import (
    ConsentRevoked,
    NoSubscription,
    QuotaExceeded,
    ScopeMissing,
    Throttled,
    TransientError,
)
from l1nda_sync.nmbrs.limits import shared_gate
from l1nda_sync.nmbrs.rest.answers import SubscriptionKeyRejected
from l1nda_sync.nmbrs.rest.client import RestClient, probe_grant
from l1nda_sync.nmbrs.rest.config import RestApp
from l1nda_sync.nmbrs.retry import RetryPolicy
from l1nda_sync.settings import Settings
from nmbrs_sim.testing import RunningSim
from nmbrs_sim.world import derived_uuid
from tests.l1nda_sync.nmbrs.rest.conftest import (
    BUSINESS,
    BUSINESS_ENV,
    NARROW_CALLBACK,
    NARROW_ID,
    NARROW_KEY,
    NARROW_SECRET,
    VANDIJK,
    SimClock,
    Sleeps,
    connect,
    consent,
    consent_id,
    rest_app,
)

MakeClient = Callable[..., RestClient]
DEGRAAF = "45d8ad44-ffb8-4691-87d8-7a7a5f4376e9"


def _api_calls(sim: RunningSim, operation: str | None = None) -> int:
    return sim.admin.call_count(service="REST", operation=operation) if operation else \
        sim.admin.call_count(service="REST")


def test_a_business_consent_reaches_its_debtor_and_companies(sim: RunningSim, app: RestApp, clock: SimClock,
                                                             make_client: MakeClient) -> None:
    conn = connect(sim, app, BUSINESS, clock)
    sim.admin.clear_calls()
    reach = make_client(app).probe(conn.credentials, with_user=True)
    assert [(d.uuid, d.number, d.name) for d in reach.debtors] == [(DEGRAAF, "B001", "Bakkerij De Graaf")]
    assert [(c.uuid, c.number, c.debtor_uuid) for c in reach.companies] == [
        (derived_uuid("company", 60101), "1", DEGRAAF), (derived_uuid("company", 60102), "2", DEGRAAF)]
    assert reach.user is not None
    assert reach.user.email == BUSINESS
    assert reach.user.debtor_uuid == DEGRAAF
    assert reach.calls == 3 == _api_calls(sim)  # debtors, companies of B001, user info
    assert sim.admin.call_count(service="Identity") == 0  # the cached access token was used


def test_a_probes_gets_go_on_kept_alive_connections(sim: RunningSim, app: RestApp, clock: SimClock,
                                                   make_client: MakeClient) -> None:
    conn = connect(sim, app, BUSINESS, clock)
    client = make_client(app)
    for _ in range(3):
        assert client.probe(conn.credentials, with_user=True).calls == 3
    assert client.http.keepalive.opened == 1  # nine GETs, one after another, on one connection
    assert not client.http.redirected


def test_a_client_login_reaches_only_its_filtered_company(sim: RunningSim, app: RestApp, clock: SimClock,
                                                          make_client: MakeClient) -> None:
    conn = connect(sim, app, VANDIJK, clock)
    reach = make_client(app).probe(conn.credentials)
    assert [d.number for d in reach.debtors] == ["D003"]
    assert [c.uuid for c in reach.companies] == [derived_uuid("company", 50301)]
    assert reach.user is None
    assert reach.calls == 2


def test_probe_grant_probes_an_unstored_grant_and_returns_it(sim: RunningSim, app: RestApp, clock: SimClock,
                                                            make_client: MakeClient) -> None:
    grant = consent(sim, app, BUSINESS, clock())
    reach, latest = probe_grant(Settings(), app, grant, client=make_client(app), now=clock)
    assert latest is grant
    assert reach.user is not None
    assert len(reach.companies) == 2
    clock.advance(3600)  # the access token expired meanwhile: the probe refreshes, the rotated grant comes back
    reach, latest = probe_grant(Settings(), app, grant, client=make_client(app), now=clock)
    assert latest.refresh_token != grant.refresh_token
    assert latest.access_token != grant.access_token
    assert len(reach.companies) == 2


def test_a_withdrawn_consent_refreshes_once_then_is_revoked(sim: RunningSim, app: RestApp, clock: SimClock,
                                                            make_client: MakeClient) -> None:
    conn = connect(sim, app, BUSINESS, clock)
    sim.admin.withdraw_consent(consent_id(sim, BUSINESS))
    sim.admin.clear_calls()
    with pytest.raises(ConsentRevoked) as caught:
        make_client(app).probe(conn.credentials)
    assert caught.value.outcome == "consent_revoked"
    assert caught.value.calls == 1
    assert _api_calls(sim) == 1  # 401/40102, then the refresh was refused: no second API call
    assert sim.admin.call_count(service="Identity", operation="token") == 1


def test_an_access_token_refused_after_a_good_refresh_is_the_consent(sim: RunningSim, app: RestApp, clock: SimClock,
                                                                     make_client: MakeClient) -> None:
    conn = connect(sim, app, BUSINESS, clock)
    sim.admin.delete_login(BUSINESS)  # API calls 401/40102; refresh invalid_grant
    with pytest.raises(ConsentRevoked):
        make_client(app).probe(conn.credentials)


def test_a_401_on_a_cached_token_refreshes_once_and_goes_on(sim: RunningSim, app: RestApp, clock: SimClock,
                                                            make_client: MakeClient) -> None:
    conn = connect(sim, app, BUSINESS, clock)
    clock.advance(3700)  # the simulator sees the token expired; our cache is told it has an hour left
    issued = clock() - timedelta(seconds=3700)
    conn.clock = lambda: issued
    sim.admin.clear_calls()
    reach = make_client(app).probe(conn.credentials)
    assert len(reach.companies) == 2
    assert reach.calls == 3
    assert conn.store.load(1).generation == 1
    assert sim.admin.call_count(service="Identity", operation="token") == 1


def test_a_consent_without_company_info_read_is_scope_missing(sim: RunningSim, app: RestApp, clock: SimClock,
                                                              make_client: MakeClient) -> None:
    conn = connect(sim, app, BUSINESS, clock, scopes=("offline_access", "user.info.read"))
    with pytest.raises(ScopeMissing) as caught:
        make_client(app).probe(conn.credentials)
    error = caught.value
    assert error.scope == "company.info.read"
    assert error.missing_operation == "company.info.read"
    assert error.outcome == "rights_missing"
    assert error.code == 40303
    assert outcome_of(error)[2] == "company.info.read"  # the engine's missing_operation names the scope


def test_the_narrow_app_without_user_info_is_scope_missing_naming_it(sim: RunningSim, clock: SimClock,
                                                                     make_client: MakeClient) -> None:
    narrow = rest_app(sim, client_id=NARROW_ID, secret=NARROW_SECRET, key=NARROW_KEY, secondary=None,
                      redirect_uri=NARROW_CALLBACK, scopes=("company.info.read",))
    conn = connect(sim, narrow, BUSINESS, clock)
    client = make_client(narrow)
    assert len(client.probe(conn.credentials).companies) == 2
    with pytest.raises(ScopeMissing) as caught:
        client.probe(conn.credentials, with_user=True)
    assert caught.value.scope == "user.info.read"
    assert caught.value.calls == 3


def test_no_subscription_is_40304(sim: RunningSim, app: RestApp, clock: SimClock, make_client: MakeClient) -> None:
    conn = connect(sim, app, BUSINESS, clock)
    sim.admin.set_subscription(BUSINESS_ENV, False)
    with pytest.raises(NoSubscription) as caught:
        make_client(app).probe(conn.credentials)
    assert caught.value.code == 40304
    assert caught.value.outcome == "no_subscription"
    assert caught.value.calls == 1


def test_too_many_calls_honours_retry_after_within_the_call(sim: RunningSim, app: RestApp, clock: SimClock,
                                                            make_client: MakeClient, sleeps: Sleeps) -> None:
    conn = connect(sim, app, BUSINESS, clock)
    sim.admin.clear_calls()
    sim.admin.inject_fault("too_many_calls", path="/api/debtors", count=1, retry_after=7)
    reach = make_client(app).probe(conn.credentials)
    assert len(reach.companies) == 2
    assert reach.calls == 3
    assert sleeps.waits == [7.0]
    assert sim.admin.call_count(service="REST", operation="getDebtors") == 2


def test_too_many_calls_without_retry_after_backs_off(sim: RunningSim, app: RestApp, clock: SimClock,
                                                      make_client: MakeClient, sleeps: Sleeps) -> None:
    conn = connect(sim, app, BUSINESS, clock)
    sim.admin.inject_fault("too_many_calls", path="/api/debtors/", count=2)
    reach = make_client(app).probe(conn.credentials)
    assert len(reach.companies) == 2
    assert reach.calls == 4
    assert len(sleeps.waits) == 2
    assert all(0 <= w <= 0.05 for w in sleeps.waits)


def test_a_throttling_storm_ends_transient_after_the_attempts(sim: RunningSim, app: RestApp, clock: SimClock,
                                                              make_client: MakeClient) -> None:
    conn = connect(sim, app, BUSINESS, clock)
    sim.admin.clear_calls()
    sim.admin.inject_fault("too_many_calls", path="/api/")
    with pytest.raises(Throttled) as caught:
        make_client(app).probe(conn.credentials)
    assert caught.value.code == 42908
    assert caught.value.outcome == "transient"
    assert caught.value.calls == 4
    assert _api_calls(sim) == 4
    assert sim.admin.call_count(service="Identity") == 0  # throttling is never read as a token problem


def test_a_retry_after_beyond_the_deadline_is_not_slept(sim: RunningSim, app: RestApp, clock: SimClock,
                                                        make_client: MakeClient, sleeps: Sleeps) -> None:
    conn = connect(sim, app, BUSINESS, clock)
    sim.admin.inject_fault("too_many_calls", path="/api/debtors", retry_after=3600)
    with pytest.raises(Throttled) as caught:
        make_client(app).probe(conn.credentials)
    assert caught.value.retry_after == 3600
    assert sleeps.waits == []
    assert caught.value.calls == 1


def test_quota_exceeded_is_not_retried(sim: RunningSim, app: RestApp, clock: SimClock, make_client: MakeClient,
                                       sleeps: Sleeps) -> None:
    conn = connect(sim, app, BUSINESS, clock)
    sim.admin.clear_calls()
    sim.admin.inject_fault("quota_exceeded", path="/api/")
    client = make_client(app)
    for _ in range(3):  # three probes (e.g. three connections in one run): one call each, no storm
        with pytest.raises(QuotaExceeded) as caught:
            client.probe(conn.credentials)
        assert caught.value.calls == 1
    error = caught.value
    assert error.code == 42909
    assert error.outcome == "transient"
    assert not error.retryable
    assert isinstance(error, TransientError)
    assert "quota" in str(error).lower()
    assert _api_calls(sim) == 3
    assert sleeps.waits == []


@pytest.mark.parametrize("kind", ["http_500", "http_502", "http_503", "reset"])
def test_server_errors_and_resets_are_retried(sim: RunningSim, app: RestApp, clock: SimClock,
                                              make_client: MakeClient, kind: str) -> None:
    conn = connect(sim, app, BUSINESS, clock)
    sim.admin.clear_calls()
    sim.admin.inject_fault(kind, path="/api/debtors", count=1)
    reach = make_client(app).probe(conn.credentials)
    assert len(reach.companies) == 2
    assert reach.calls == 3


def test_server_errors_that_last_are_transient(sim: RunningSim, app: RestApp, clock: SimClock,
                                               make_client: MakeClient) -> None:
    conn = connect(sim, app, BUSINESS, clock)
    sim.admin.inject_fault("http_503", path="/api/")
    with pytest.raises(TransientError) as caught:
        make_client(app).probe(conn.credentials)
    assert type(caught.value) is TransientError
    assert "503" in str(caught.value)
    assert caught.value.calls == 4


def test_a_firewall_page_is_transient_and_not_retried(sim: RunningSim, app: RestApp, clock: SimClock,
                                                      make_client: MakeClient) -> None:
    conn = connect(sim, app, BUSINESS, clock)
    sim.admin.inject_fault("http_403_html", path="/api/")
    with pytest.raises(TransientError) as caught:
        make_client(app).probe(conn.credentials)
    assert caught.value.outcome == "transient"
    assert caught.value.calls == 1


def test_a_rejected_primary_subscription_key_falls_back_to_the_secondary(sim: RunningSim, clock: SimClock,
                                                                         make_client: MakeClient) -> None:
    from tests.l1nda_sync.nmbrs.rest.conftest import APP_KEY

    conn = connect(sim, rest_app(sim), BUSINESS, clock)
    rotated = rest_app(sim, key="0" * 32, secondary=APP_KEY)
    client = make_client(rotated)
    assert len(client.probe(conn.credentials).companies) == 2
    assert client.probe(conn.credentials).calls == 2  # the secondary key is kept
    with pytest.raises(SubscriptionKeyRejected) as caught:
        make_client(rest_app(sim, key="0" * 32, secondary=None)).probe(conn.credentials)
    assert caught.value.outcome == "unknown"
    assert "L1NDA_NMBRS_REST_SUBSCRIPTION_KEY" in str(caught.value)
    assert not isinstance(caught.value, ConsentRevoked)  # L1NDA's key is not the customer's consent


def test_the_client_shares_the_process_gate_and_policy_of_the_soap_client(sim: RunningSim) -> None:
    settings = Settings(nmbrs_calls_per_second=77.0, nmbrs_max_concurrency=5, nmbrs_retry_attempts=2,
                        nmbrs_call_deadline=30.0)
    client = RestClient(rest_app(sim), settings)
    try:
        assert client.gate is shared_gate(77.0, 5)
        assert client.retry == RetryPolicy(attempts=2, deadline=30.0)
    finally:
        client.close()
