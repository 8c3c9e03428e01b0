"""The SOAP cutover against the simulator (SOAP and REST over HTTP), PostgreSQL and real SMTP, on the story clock
(the simulator's clock moves with it): a mixed fleet before and after `soap_end`.

The fleet: the accountant's master token `all` serves five debtors' links (Anker, Zwaan, De Linde, Smit, Kok);
De Linde consents through REST before the end; the business customer De Graaf has its own SOAP token and consents
too; Van Dijk has a debtor token and never reacts; Kok's company is a candidate of an ambiguous REST company (the
state `companies unmatched` lists, written as the resolver writes it). Asserted: the status before, the preview at
T equal to what the run at T does, no SOAP call after `soap_end` (the simulator's call log), the link states, the
mails counted, and a rerun that changes and sends nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest

from l1nda_sync.engine.planning import PlanError
from l1nda_sync.masking import Secret
from l1nda_sync.migration import world as migration_world
from l1nda_sync.migration.readiness import assess
from l1nda_sync.migration.running import preview
from nmbrs_sim.testing import RunningSim, running_simulator
from tests.l1nda_sync.alerts.harness import MailServer
from tests.l1nda_sync.engine.rest_world import (
    BUSINESS,
    DEMO,
    LINDE,
    OPS,
    RestStoryWorld,
    in_process_cli,
    iter_rest_world,
    rest_env,
)

MIN = timedelta(minutes=1)
DEGRAAF_TOKEN = "5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"
SOAP_SERVICES = ("DebtorService", "CompanyService", "EmployeeService", "ReportService", "SingleSignOn")


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
    yield from iter_rest_world(sim, registry_url, in_process_cli(monkeypatch, capsys),
                               web_base_url="https://connect.l1nda.example",
                               web_secret=Secret("w" * 40), reminder_interval=3600.0)
    sim.admin.reset_world()


def soap_calls(sim: RunningSim) -> int:
    """SOAP calls in the simulator's call log (everything that is not REST or the identity server)."""
    return sum(int(r["count"]) for r in sim.admin.calls() if r["service"] not in ("REST", "Identity"))


def with_soap_end(world: RestStoryWorld, at: object) -> None:
    world.settings = replace(world.settings, soap_end=at)  # type: ignore[arg-type]
    world.engine = world.new_engine()


def build_fleet(world: RestStoryWorld) -> None:
    world.add_token("all")
    world.add_token("vandijk")
    world.add_token("degraaf", username=BUSINESS, token=DEGRAAF_TOKEN, level="debtor")
    world.request(50101, customer="CUST-ANKER")
    world.request(50201, customer="CUST-ZWAAN")
    world.request(50501, 50502, customer="CUST-LINDE")
    world.request(50601, customer="CUST-SMIT")
    world.request(50701, customer="CUST-KOK")
    world.request(50301, customer="CUST-VANDIJK")
    world.request(60101, 60102, customer="CUST-DEGRAAF")
    world.run()
    world.consent(LINDE, customer="CUST-LINDE", contact="hanna@thuiszorg-delinde.example", label="linde-rest")
    world.consent(BUSINESS, customer="CUST-DEGRAAF", contact="jan@bakkerij-degraaf.example", label="degraaf-rest")
    world.advance(MIN)
    world.run(token_ids=(world.ids["linde-rest"], world.ids["degraaf-rest"]))
    # Kok's company is a candidate of a REST company the resolver could not place (as `companies unmatched` shows)
    conn = world.conn()
    with conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO rest_entities (uuid, entity, key, customer_ref, number, debtor_uuid, debtor_number,
                                                  name, match, candidates)
                       VALUES ('7d1f7a57-0000-4000-8000-000000000701', 'company', -nextval('rest_unmatched_keys'),
                               'CUST-KOK', '701', '7d1f7a57-0000-4000-8000-000000000007', 'D007', 'Kok B.V.',
                               'ambiguous', '{50701,50799}')""")
    conn.close()


def readiness(world: RestStoryWorld) -> dict[int, str]:
    conn = world.conn()
    try:
        with conn, conn.cursor() as cur:
            current, _ = migration_world.load(cur)
    finally:
        conn.close()
    return {r.company_id: r.readiness.value for r in assess(current, world.now)}


def test_the_cutover_story(world: RestStoryWorld, smtp: MailServer) -> None:
    build_fleet(world)
    with_soap_end(world, world.now + timedelta(days=1))
    assert readiness(world) == {50101: "soap_only", 50201: "soap_only", 50501: "rest_ready", 50502: "rest_ready",
                                50601: "soap_only", 50701: "ambiguous", 50301: "soap_only", 60101: "rest_ready",
                                60102: "rest_ready"}
    status = world.cli("migration", "status", "--json")
    assert status.code == 0, status.err
    assert status.json["totals"] == {"soap_only": 4, "rest_ready": 4, "ambiguous": 1}
    office = status.json["accountant_tokens"][str(world.ids["all"])]  # its debtors, ready or not
    assert (office["customers"], office["rest_ready"], office["soap_only"], office["ambiguous"]) == (
        ["CUST-ANKER", "CUST-ZWAAN", "CUST-LINDE", "CUST-SMIT", "CUST-KOK"], 2, 3, 1)

    # before soap_end: SOAP is called as ever
    world.advance(timedelta(hours=2))
    world.sim.admin.clear_calls()
    world.run(force=True)
    assert soap_calls(world.sim) > 0
    world.deliver()
    smtp.clear()

    # at soap_end: the preview, then the run at the same time does exactly that
    world.now = world.settings.soap_end + MIN
    world.sim.admin.set_clock(world.now.isoformat())
    world.sim.admin.clear_calls()
    conn = world.conn()
    with conn, conn.cursor() as cur:
        plan = preview(cur, at=world.now, soap_end=world.settings.soap_end)
    conn.close()
    world.run()
    assert soap_calls(world.sim) == 0
    events = world.query("""SELECT link_id, from_state, to_state, from_token_id, to_token_id, reason FROM link_events
                            WHERE actor = 'cutover' ORDER BY link_id""")
    assert [(c.link_id, c.from_state.value, c.to_state.value, c.from_token, c.to_token, str(c.reason))
            for c in sorted(plan.changes, key=lambda c: c.link_id)] == events
    assert sorted(plan.retire) == [r[0] for r in world.query(
        "SELECT id FROM tokens WHERE state = 'retired' ORDER BY id")] == sorted(
        world.ids[k] for k in ("all", "vandijk", "degraaf"))
    assert sorted(n.token_id for n in plan.notices) == [r[0] for r in world.query(
        "SELECT token_id FROM problems WHERE kind = 'soap_ended' ORDER BY token_id")]

    assert {c: world.link(c) for c in (50101, 50301, 50501, 50701, 60101)} == {
        50101: ("suspended", "all", "soap_ended"), 50301: ("suspended", "vandijk", "soap_ended"),
        50501: ("active", "linde-rest", "moved_to_rest"), 50701: ("suspended", "all", "soap_ended"),
        60101: ("active", "degraaf-rest", "moved_to_rest")}

    world.deliver()
    mails = {(tuple(m["To"].split(", ")), m["Subject"]) for m in smtp.messages()}
    assert len(smtp.messages()) == 3, smtp.subjects()
    to = {m["To"]: m for m in smtp.messages()}
    assert set(to) == {"contact-all@customer.example", "contact-vandijk@customer.example", OPS}, mails
    accountant = to["contact-all@customer.example"].get_body(("plain",)).get_content()
    assert all(c in accountant for c in ("CUST-ANKER", "CUST-KOK", "CUST-SMIT", "CUST-ZWAAN"))
    assert "/invite/" not in accountant  # a summary: an invitation is one customer's
    business = to["contact-vandijk@customer.example"].get_body(("plain",)).get_content()
    assert "https://connect.l1nda.example/invite/" in business
    assert world.query("SELECT purpose, customer_ref, state FROM invitations") == [("rest", "CUST-VANDIJK", "sent")]

    # a named SOAP token is refused, and nothing is due on SOAP
    with pytest.raises(PlanError, match="SOAP token"):
        world.engine.plan(token_ids=(world.ids["vandijk"],))

    # a rerun, hours later (reminders are hourly here): nothing changes, nobody is mailed again, no SOAP call
    before = world.snapshot()
    smtp.clear()
    for _ in range(3):
        world.advance(timedelta(hours=2))
        world.run(force=True)
        world.deliver()
    assert soap_calls(world.sim) == 0
    assert world.snapshot() == before
    assert smtp.messages() == []
    assert world.query("SELECT count(*) FROM link_events WHERE actor = 'cutover'")[0][0] == len(events)
