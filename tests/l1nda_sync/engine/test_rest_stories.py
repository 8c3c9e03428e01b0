"""Stories of REST connections through the real engine: the simulator (SOAP and REST) over HTTP, PostgreSQL, the
CLI in-process for consents and operators' matches, real SMTP for the mails. No sleeps: the story clock and the
simulator's clock move together (`RestStoryWorld.advance`).

The demo world: the accountant's master login `all` (SOAP) reaches every company of the office, among them
Thuiszorg De Linde's 50501 and 50502 (debtor D005) and Modehuis Van Dijk's 50301 (D003); their logins may consent
to L1NDA through REST.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest

from l1nda_sync.engine.sync import SyncEngine
from nmbrs_sim.testing import RunningSim, running_simulator
from tests.l1nda_sync.alerts.harness import MailServer
from tests.l1nda_sync.engine.rest_world import (
    BUSINESS,
    DEMO,
    LINDE,
    OPS,
    VANDIJK,
    CliResult,
    RestStoryWorld,
    in_process_cli,
    iter_rest_world,
    rest_env,
)

MIN = timedelta(minutes=1)
CUSTOMER = "hanna@thuiszorg-delinde.example"


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSim]:
    with running_simulator(DEMO) as running:
        yield running


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[MailServer]:
    server = MailServer().start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", server.connection_json)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def world(sim: RunningSim, registry_url: str, fernet_keys: list[str], tmp_path: object, smtp: MailServer,
          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[RestStoryWorld]:
    sim.admin.reset_world()
    sim.admin.clear_faults()
    sim.admin.clear_calls()
    monkeypatch.setenv("L1NDA_NMBRS_WSDL_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("L1NDA_DATABASE_URL", registry_url)
    for name, value in rest_env(sim).items():
        monkeypatch.setenv(name, value)
    yield from iter_rest_world(sim, registry_url, in_process_cli(monkeypatch, capsys))
    sim.admin.clear_faults()
    sim.admin.reset_world()


def linde_on_rest(world: RestStoryWorld) -> int:
    """The accountant's SOAP token serves De Linde's two links; then De Linde consents and the connection is
    checked: its companies are the SOAP companies, and the links move to it."""
    world.add_token("all")
    world.request(50501, 50502, customer="CUST-LINDE")
    world.run()
    soap = "linde" if "linde" in world.ids else "all"  # the customer's own (debtor-level) token goes first
    assert [world.link(c)[:2] for c in (50501, 50502)] == [("active", soap), ("active", soap)]
    conn = world.consent(LINDE, customer="CUST-LINDE", contact=CUSTOMER, label="linde-rest")
    world.advance(MIN)
    report = world.run(token_ids=(conn,))
    assert report.outcomes == {"valid": 1}
    return conn


def test_a_consent_is_checked_matched_and_the_links_move_to_rest(world: RestStoryWorld) -> None:
    conn = linde_on_rest(world)
    assert world.state("linde-rest") == "active"
    assert sorted((m, k, n) for m, k, n in world.entities().values()) == [
        ("number", 2005, "D005"), ("number", 50501, "501"), ("number", 50502, "502")]
    assert world.reach("linde-rest") == {50501, 50502}
    assert [world.link(c) for c in (50501, 50502)] == [("active", "linde-rest", "moved_to_rest")] * 2
    report = world.reports[-1]
    assert report.links_moved_to_rest == 2
    assert {c["kind"] for c in report.link_changes} == {"rest_connection"}
    # a second check with nothing changed stores no probe and moves nothing
    world.advance(10 * MIN)
    again = world.run(token_ids=(conn,))
    assert again.outcomes == {"valid": 1}
    assert again.link_changes == []
    assert world.query("SELECT unchanged FROM checks WHERE token_id = %s ORDER BY id DESC LIMIT 1", conn)[0][0]


def test_a_good_access_token_read_with_the_batch_is_used_without_a_read_of_its_own(
        world: RestStoryWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = linde_on_rest(world)
    world.advance(10 * MIN)  # the access token, issued at the consent, has 49 minutes left
    world.sim.admin.clear_calls()
    engine = world.new_engine()
    rest = engine.rest
    assert rest is not None
    reads: list[int] = []
    load = rest.store.load
    monkeypatch.setattr(rest.store, "load", lambda connection_id: reads.append(connection_id) or load(connection_id))
    assert engine.check_batch(None, [conn]) == {"checked": 1, "calls": 2, "valid": 1}
    assert reads == []
    assert world.refreshes() == 0
    world.advance(timedelta(minutes=48, seconds=30))  # 30 s left: due, refreshed from the row read under the lock
    assert engine.check_batch(None, [conn]) == {"checked": 1, "calls": 2, "valid": 1}
    assert reads == []
    assert world.refreshes() == 1
    assert world.query("SELECT generation FROM rest_connections WHERE token_id = %s", conn)[0][0] == 1


def test_two_workers_check_a_connection_whose_access_token_is_due_with_one_refresh(world: RestStoryWorld) -> None:
    conn = linde_on_rest(world)
    world.advance(timedelta(hours=1))  # the access token expired: both workers need a fresh one
    world.sim.admin.clear_calls()
    engines = [world.new_engine() for _ in range(2)]
    barrier = threading.Barrier(2)
    counts: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def check(engine: SyncEngine) -> None:
        barrier.wait()
        try:
            counts.append(engine.check_batch(None, [conn]))
        except BaseException as exc:  # pragma: no cover - shown by the assertion
            errors.append(exc)

    threads = [threading.Thread(target=check, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert world.refreshes() == 1
    assert [c.get("valid") for c in counts] == [1, 1], counts  # nobody read the loser's invalid_grant as revoked
    assert world.query("SELECT generation FROM rest_connections WHERE token_id = %s", conn)[0][0] == 1
    report = world.engine.apply_checks(None)
    assert report.outcomes == {"valid": 2}
    assert world.state("linde-rest") == "active"


def test_a_withdrawn_consent_is_confirmed_fails_over_to_soap_and_mails(world: RestStoryWorld,
                                                                      smtp: MailServer) -> None:
    conn = linde_on_rest(world)
    # a second connection as the breaker's witness: REST connections are judged apart from SOAP tokens, and one
    # connection alone cannot tell its customer's withdrawal from an identity server refusing everyone
    witness = world.consent(VANDIJK, customer="CUST-VANDIJK", contact="petra@modehuis-vandijk.example")
    world.deliver()
    smtp.clear()
    world.sim.admin.withdraw_consent(world.consent_id(LINDE))
    world.advance(10 * MIN)
    first = world.run(token_ids=(conn, witness))
    assert first.outcomes == {"consent_revoked": 1, "valid": 1}
    assert first.suspected == [{"token_id": conn, "label": "linde-rest", "suspected": "consent_revoked"}]
    world.deliver()
    assert smtp.received == [], "one refusal: suspected, nobody mailed"
    assert [world.link(c)[:2] for c in (50501, 50502)] == [("active", "linde-rest")] * 2
    world.advance(30 * MIN)
    world.run(token_ids=(conn, witness))
    assert world.state("linde-rest") == "revoked"
    assert world.problems("linde-rest") == {"consent_revoked"}
    assert [world.link(c) for c in (50501, 50502)] == [("active", "all", "failover")] * 2
    world.deliver()
    assert {(r, e) for r, e, _ in smtp.events()} == {(OPS, "escalated"), (CUSTOMER, "escalated")}
    assert all("connections start" in m.get_body(("plain",)).get_content() for m in smtp.messages(OPS))


def test_a_refresh_token_expired_by_the_clock_is_a_confirmed_consent_revoked(world: RestStoryWorld) -> None:
    for label in ("horeca", "vandijk", "linde"):  # a fleet: one refusal among healthy tokens is no incident
        world.add_token(label)
    linde_on_rest(world)
    world.advance(timedelta(days=31))  # idle past refresh_idle_days (30): the refresh token expired
    # REST connections are judged apart: a fresh connection beside it is the REST breaker's witness
    world.consent(VANDIJK, customer="CUST-VANDIJK", contact="petra@modehuis-vandijk.example")
    first = world.run()  # every token is due
    assert first.outcomes == {"valid": 5, "consent_revoked": 1}
    assert not first.breaker_tripped
    assert world.state("linde-rest") == "invalid"  # suspected: links kept, nobody told
    assert [world.link(c)[:2] for c in (50501, 50502)] == [("active", "linde-rest")] * 2
    world.advance(30 * MIN)
    second = world.run()
    assert second.outcomes.get("consent_revoked") == 1
    assert world.state("linde-rest") == "revoked"
    assert world.problems("linde-rest") == {"consent_revoked"}
    assert [world.link(c)[:2] for c in (50501, 50502)] == [("active", "linde")] * 2  # its own SOAP token


def test_a_consent_without_the_company_scope_is_rights_missing_naming_it(world: RestStoryWorld) -> None:
    conn = world.consent_as(LINDE, customer="CUST-LINDE", contact=CUSTOMER, scopes=("offline_access",
                                                                                    "user.info.read"))
    world.advance(MIN)
    assert world.run(token_ids=(conn,)).outcomes == {"rights_missing": 1}
    missing = world.query("SELECT missing_operation FROM checks WHERE token_id = %s", conn)[0][0]
    assert missing == "company.info.read"


def test_an_environment_without_subscription_is_no_subscription(world: RestStoryWorld) -> None:
    conn = world.consent(BUSINESS, customer="CUST-GRAAF", contact="jan@bakkerij-degraaf.example")
    world.sim.admin.set_subscription("bakkerij-degraaf", False)
    world.advance(MIN)
    assert world.run(token_ids=(conn,)).outcomes == {"no_subscription": 1}
    assert world.query("SELECT fault_code FROM checks WHERE token_id = %s", conn)[0][0] == 40304


def test_a_throttling_storm_over_several_runs_raises_no_alarm(world: RestStoryWorld, smtp: MailServer) -> None:
    conn = linde_on_rest(world)
    world.deliver()
    smtp.clear()
    world.sim.admin.inject_fault("too_many_calls", path="/api/")
    for _ in range(6):
        world.advance(30 * MIN)
        outcomes = world.run(token_ids=(conn,)).outcomes
        assert outcomes.get("transient") == 1
        assert not {"consent_revoked", "invalid", "unknown"} & outcomes.keys()
        world.deliver()
    assert world.state("linde-rest") == "active"
    assert world.problems("linde-rest") == set()
    assert [world.link(c)[:2] for c in (50501, 50502)] == [("active", "linde-rest")] * 2
    # every REST connection throttled for hours is a REST-wide fault: at most a provider incident for ops (naming
    # REST connections), never a customer mail
    assert {r for r, _, _ in smtp.events()} <= {OPS}
    assert {e for _, e, _ in smtp.events()} <= {"opened", "escalated"}
    kinds = world.query("SELECT kind, detail->>'kind' FROM problems")
    assert set(kinds) <= {("provider_incident", "rest_connection")}, kinds
    world.sim.admin.clear_faults()
    world.advance(30 * MIN)
    assert world.run(token_ids=(conn,)).outcomes.get("valid", 0) >= 1
    assert world.query("SELECT outcome FROM checks WHERE token_id = %s ORDER BY id DESC LIMIT 1", conn) == [("valid",)]


def test_sync_run_token_takes_a_connection_id(world: RestStoryWorld) -> None:
    world.add_token("all")
    conn = world.consent(LINDE, customer="CUST-LINDE", contact=CUSTOMER)
    result: CliResult = world.cli("sync", "run", "--token", str(conn), "--json")
    assert result.code == 0, result.err
    assert world.query("SELECT outcome FROM checks WHERE token_id = %s", conn) == [("valid",)]


def test_without_a_rest_app_connections_are_left_out_and_the_soap_checks_are_applied(world: RestStoryWorld) -> None:
    """No REST app configured (a deployment fault): the plan leaves the due connections out and says so in the run
    report; the SOAP tokens of the same run are checked and applied as always (a check task that raised would
    have skipped the whole apply)."""
    world.add_token("all")
    world.request(50501, customer="CUST-LINDE")
    conn = world.consent(LINDE, customer="CUST-LINDE", contact=CUSTOMER)
    no_app = replace(world.settings, nmbrs_rest_client_id=None, nmbrs_rest_client_secret=None,
                     nmbrs_rest_subscription_key=None, nmbrs_rest_secondary_key=None, nmbrs_rest_redirect_uri=None)
    bare = SyncEngine(world.url, settings=no_app, client=world.client, clock=lambda: world.now)
    assert bare.rest is None
    report = bare.run_once()
    assert report.rest_left_out == [conn]
    assert "REST connections NOT checked" in report.table()
    assert "L1NDA_NMBRS_REST_" in report.table()
    assert world.query("SELECT count(*) FROM checks WHERE token_id = %s", conn)[0][0] == 0
    assert world.state(next(k for k, v in world.ids.items() if v == conn)) == "new"
    assert world.state("all") == "active", "the SOAP check of the run is applied"
    assert world.link(50501)[:2] == ("active", "all")
    [stored] = world.query("SELECT summary->'rest_left_out' FROM runs WHERE id = %s", report.run_id)
    assert stored[0] == [conn]
    named = bare.run_once(token_ids=(conn,))  # asked for by id: left out all the same, nothing written about it
    assert (named.checked, named.rest_left_out) == (0, [conn])


# -- one company, two ids -------------------------------------------------------------------------------------
def open_companies(world: RestStoryWorld) -> list[dict[str, object]]:
    listed = world.cli("companies", "unmatched", "--json")
    assert listed.code == 0, listed.err
    return [{"uuid": o["entity"]["uuid"], "match": o["entity"]["match"], "number": o["entity"]["number"],
             "candidates": sorted(c["company_id"] for c in o["candidates"])} for o in listed.json]


def test_an_ambiguous_company_is_listed_and_never_linked_until_an_operator_matches_it(world: RestStoryWorld) -> None:
    # A second debtor numbered D005 in the office, with a company 501 of the same name: the numbers and the name
    # cannot tell 50501 from 50599, and the customer links both.
    world.sim.admin.add_debtor("demo-accountants", id=2099, number="D005", name="Thuiszorg De Linde (kopie)")
    world.sim.admin.add_company(2099, id=50599, number=501, name="Thuiszorg De Linde B.V.")
    world.add_token("all")
    world.request(50501, 50502, 50599, customer="CUST-LINDE")  # candidates: the customer's links only
    world.run()
    conn = world.consent(LINDE, customer="CUST-LINDE", contact=CUSTOMER, label="linde-rest")
    world.advance(MIN)
    world.run(token_ids=(conn,))
    [ambiguous] = open_companies(world)
    assert (ambiguous["match"], ambiguous["number"], ambiguous["candidates"]) == ("ambiguous", "501", [50501, 50599])
    key = world.entities()[str(ambiguous["uuid"])][1]
    assert key < 0
    assert key in world.reach("linde-rest")  # kept in the reach, never linkable
    assert 50502 in world.reach("linde-rest")  # 502 has one candidate: matched
    world.advance(10 * MIN)
    world.run(token_ids=(conn,))  # checked again: still ambiguous, still the SOAP token's
    assert [world.link(c)[:2] for c in (50501, 50599)] == [("active", "all")] * 2
    assert open_companies(world)[0]["match"] == "ambiguous"

    matched = world.cli("companies", "match", str(ambiguous["uuid"]), "--company", "50501")
    assert matched.code == 0, matched.err
    assert open_companies(world) == []
    assert 50501 in world.reach("linde-rest")
    world.advance(10 * MIN)
    world.run(token_ids=(conn,))
    assert world.link(50501) == ("active", "linde-rest", "moved_to_rest")
    assert world.link(50599)[:2] == ("active", "all")
    assert world.entities()[str(ambiguous["uuid"])][:2] == ("operator", 50501)


def test_an_unmatched_company_is_matched_again_once_a_soap_token_reaches_it(world: RestStoryWorld) -> None:
    world.add_token("horeca")  # reaches the Horeca debtors only, not Van Dijk (D003)
    world.request(50301, customer="CUST-VANDIJK")
    world.run()
    conn = world.consent(VANDIJK, customer="CUST-VANDIJK", contact="petra@modehuis-vandijk.example",
                         label="vandijk-rest")
    world.advance(MIN)
    world.run(token_ids=(conn,))
    [unmatched] = open_companies(world)
    assert (unmatched["match"], unmatched["number"], unmatched["candidates"]) == ("unmatched", "301", [])
    assert all(k < 0 for k in world.reach("vandijk-rest"))
    assert world.link(50301)[0] == "pending"  # nothing reaches 50301 under its SOAP id

    world.add_token("vandijk")  # now the SOAP reach has D003 / 301
    world.advance(MIN)
    world.run()
    assert world.link(50301)[:2] == ("active", "vandijk")
    world.advance(10 * MIN)
    world.run(token_ids=(conn,))
    assert open_companies(world) == []
    assert world.reach("vandijk-rest") == {50301}
    assert world.link(50301) == ("active", "vandijk-rest", "moved_to_rest")
