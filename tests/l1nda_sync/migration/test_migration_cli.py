"""`l1nda-sync migration status --csv`, `contact`, and the bad input exits (2, naming the option)."""

from __future__ import annotations

import csv
import io

from l1nda_sync.migration.report import CSV_COLUMNS
from tests.l1nda_sync.engine.rest_world import RestStoryWorld


def test_status_csv_contact_and_bad_options(world: RestStoryWorld) -> None:
    world.add_token("all")
    world.request(50101, customer="CUST-ANKER")
    world.request(50201, customer="CUST-ZWAAN")
    world.run()

    out = world.cli("migration", "status", "--csv")
    assert out.code == 0, out.err
    rows = list(csv.DictReader(io.StringIO(out.out)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["customer_ref"], r["company_id"], r["readiness"], r["accountant_token"]) for r in rows] == [
        ("CUST-ANKER", "50101", "soap_only", str(world.ids["all"])),
        ("CUST-ZWAAN", "50201", "soap_only", str(world.ids["all"]))]

    both = world.cli("migration", "status", "--csv", "--json")
    assert both.code == 2
    assert both.json["error"]["field"] == "--csv"  # with --json the error is JSON on stdout
    for action in ("preview", "status"):
        bad_at = world.cli("migration", action, "--at", "next tuesday")
        assert bad_at.code == 2
        assert "--at: 'next tuesday' is not a date" in bad_at.err
    # the clock hook: the countdown as at a given time
    at = world.cli("migration", "status", "--json", "--at", "2027-02-20")
    assert at.code == 0, at.err
    assert at.json["now"].startswith("2027-02-20T00:00:00+01:00")
    assert at.json["seconds_left"] == 9 * 24 * 3600
    bad_contact = world.cli("migration", "contact", "--customer", "CUST-ANKER", "--contact", "not-an-address")
    assert bad_contact.code == 2
    assert "--contact" in bad_contact.err
    assert world.query("SELECT count(*) FROM customer_contacts")[0][0] == 0  # nothing half-written

    done = world.cli("migration", "contact", "--customer", "cust-anker", "--contact", "hr@anker.example",
                     "--language", "nl", "--json")
    assert done.code == 0, done.err
    again = world.cli("migration", "contact", "--customer", "CUST-ANKER", "--contact", "hr@anker.example")
    assert again.code == 0, again.err
    assert world.query("SELECT customer_ref, contact, language FROM customer_contacts") == [
        ("CUST-ANKER", "hr@anker.example", "nl")]
