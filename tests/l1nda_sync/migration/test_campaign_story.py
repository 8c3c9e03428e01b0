"""The migration campaign against the simulator, PostgreSQL and real SMTP on the story clock, through the cutover.

The fleet (as in test_cutover_story): the accountant token `all` serves five debtors (Anker, Zwaan, De Linde, Smit
and Kok, whose company is ambiguous); Van Dijk and De Graaf have their own SOAP tokens. An operator records the
debtors' contacts (`migration contact`, Kok none). soap_end is 21 days after the campaign starts: weekly reminders,
daily in the last 14 days. De Linde and De Graaf consent after the first invitation; Van Dijk's problem is muted on
day 10; Anker, Zwaan and Smit never react. Every mail is counted per recipient; a rerun at the same time sends
nothing; at soap_end the campaign stops and the cutover's notices go out; no SOAP call after soap_end.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta
from typing import Any

from l1nda_sync.alerts.problems import Kind
from tests.l1nda_sync.alerts.harness import MailServer
from tests.l1nda_sync.engine.rest_world import BUSINESS, LINDE, OPS, RestStoryWorld
from tests.l1nda_sync.migration.test_cutover_story import MIN, soap_calls

DAY = timedelta(days=1)
DEBTORS = {"CUST-ANKER": "hr@anker.example", "CUST-ZWAAN": "hr@zwaan.example",
           "CUST-LINDE": "hanna@thuiszorg-delinde.example", "CUST-SMIT": "hr@smit.example"}


def build(world: RestStoryWorld) -> None:
    world.add_token("all")
    world.add_token("vandijk")
    world.add_token("degraaf", username=BUSINESS, token="5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b", level="debtor")
    for company, customer in ((50101, "CUST-ANKER"), (50201, "CUST-ZWAAN"), (50501, "CUST-LINDE"),
                              (50601, "CUST-SMIT"), (50701, "CUST-KOK"), (50301, "CUST-VANDIJK"),
                              (60101, "CUST-DEGRAAF")):
        world.request(company, customer=customer)
    world.run()
    conn = world.conn()
    with conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO rest_entities (uuid, entity, key, customer_ref, number, debtor_uuid, debtor_number,
                                                  name, match, candidates)
                       VALUES ('7d1f7a57-0000-4000-8000-000000000701', 'company', -nextval('rest_unmatched_keys'),
                               'CUST-KOK', '701', '7d1f7a57-0000-4000-8000-000000000007', 'D007', 'Kok B.V.',
                               'ambiguous', '{50701,50799}')""")
    conn.close()
    for customer, contact in DEBTORS.items():
        done = world.cli("migration", "contact", "--customer", customer, "--contact", contact, "--json")
        assert done.code == 0, done.err


def status_at(world: RestStoryWorld) -> dict[str, Any]:
    """`migration status --json --at` the story's time (the CLI's clock hook)."""
    status = world.cli("migration", "status", "--json", "--at", world.now.isoformat())
    assert status.code == 0, status.err
    return dict(status.json)


def tally(smtp: MailServer) -> Counter[str]:
    return Counter(m["To"] for m in smtp.messages())


def test_the_campaign_story(world: RestStoryWorld, smtp: MailServer) -> None:
    build(world)
    start = world.now + timedelta(hours=1)
    world.settings = replace(world.settings, migration_campaign_start=start, soap_end=start + 21 * DAY)
    world.engine = world.new_engine()
    world.deliver()
    assert smtp.messages() == []  # before the start: nothing
    status = world.cli("migration", "status", "--json")
    assert status.json["totals"] == {"soap_only": 6, "rest_ready": 0, "ambiguous": 1}
    assert {c: v["invitation"] for c, v in status_at(world)["customers"].items()} == dict.fromkeys(
        ("CUST-ANKER", "CUST-DEGRAAF", "CUST-KOK", "CUST-LINDE", "CUST-SMIT", "CUST-VANDIJK", "CUST-ZWAAN"), "none")

    mails: Counter[str] = Counter()
    for day in range(21):
        world.now = start + day * DAY + MIN
        world.sim.admin.set_clock(world.now.isoformat())
        if day == 10:
            (pid,) = world.query("SELECT id FROM problems WHERE kind = 'migration_invite' AND state = 'open' "
                                 "AND subject LIKE 'CUST-VANDIJK %%'")[0]
            assert world.cli("problems", "mute", str(pid)).code == 0
        smtp.clear()
        world.deliver()
        world.deliver()  # a rerun at the same time: nothing more
        today = tally(smtp)
        if day == 0:
            assert today == {**{c: 1 for c in DEBTORS.values()}, "contact-vandijk@customer.example": 1,
                             "contact-degraaf@customer.example": 1, "contact-all@customer.example": 1, OPS: 1}
            invite = next(m for m in smtp.messages() if m["To"] == DEBTORS["CUST-ANKER"])
            body = invite.get_body(("plain",)).get_content()
            assert "https://connect.l1nda.example/invite/" in body
            assert "no master login" in body
            summary = next(m for m in smtp.messages() if m["To"] == "contact-all@customer.example")
            text = summary.get_body(("plain",)).get_content()
            assert "each debtor" in text
            assert "CUST-KOK" not in text  # ambiguous: the operator's to decide
            assert "/invite/" not in text
            # De Linde and De Graaf consent; the next run puts their links on REST
            world.consent(LINDE, customer="CUST-LINDE", contact=DEBTORS["CUST-LINDE"], label="linde-rest")
            world.consent(BUSINESS, customer="CUST-DEGRAAF", contact="jan@bakkerij-degraaf.example",
                          label="degraaf-rest")
            world.run(token_ids=(world.ids["linde-rest"], world.ids["degraaf-rest"]))
        mails.update(today)

    silent = ("hr@anker.example", "hr@zwaan.example", "hr@smit.example")
    # invitation on day 0; weekly until the last 14 days (none on days 1-6); daily on days 7-20 (day 14: a new link)
    assert {a: mails[a] for a in silent} == {a: 15 for a in silent}
    assert mails["contact-vandijk@customer.example"] == 4  # days 0, 7, 8, 9; muted on day 10
    assert mails[DEBTORS["CUST-LINDE"]] == mails["contact-degraaf@customer.example"] == 1  # consented: no reminder
    assert mails["contact-all@customer.example"] == mails[OPS] == 3  # days 0, 7, 14
    assert sum(mails.values()) == 3 * 15 + 4 + 2 + 3 + 3
    assert world.query("SELECT count(*) FROM invitations WHERE state = 'expired'")[0][0] == 3  # renewed on day 14
    status = world.cli("migration", "status", "--json")
    assert status.json["totals"] == {"soap_only": 4, "rest_ready": 2, "ambiguous": 1}
    # on the story clock: renewed on day 14, else expired (De Linde and De Graaf consented with
    # `connections start`, not through their invitation)
    assert {c: v["invitation"] for c, v in status_at(world)["customers"].items()} == {
        "CUST-ANKER": "sent", "CUST-DEGRAAF": "expired", "CUST-KOK": "none", "CUST-LINDE": "expired",
        "CUST-SMIT": "sent", "CUST-VANDIJK": "expired", "CUST-ZWAAN": "sent"}

    # soap_end: the cutover; the campaign stops (its problems resolve without a word), the notices go out once
    world.now = world.settings.soap_end + MIN
    world.sim.admin.set_clock(world.now.isoformat())
    world.sim.admin.clear_calls()
    smtp.clear()
    world.run()
    world.deliver()
    world.deliver()
    assert soap_calls(world.sim) == 0
    assert sorted(m["To"] for m in smtp.messages()) == sorted(
        ["contact-all@customer.example", "contact-vandijk@customer.example", OPS])
    assert world.query("SELECT count(*) FROM problems WHERE state = 'open' AND kind = ANY(%s)",
                       [Kind.MIGRATION_INVITE.value, Kind.MIGRATION_ACCOUNTANT.value,
                        Kind.MIGRATION_WEEKLY.value])[0][0] == 0
    after = world.cli("migration", "status", "--json")
    assert after.json["totals"] == {"soap_only": 4, "rest_ready": 2, "ambiguous": 1}
    assert {r["company_id"]: r["link_state"] for r in after.json["links"]} == {
        50101: "suspended", 50201: "suspended", 50501: "active", 50601: "suspended", 50701: "suspended",
        50301: "suspended", 60101: "active"}
