"""`companies match --company ID` takes a candidate only (the same debtor number within the customer) unless
`--force`: a typo never merges a REST company into some other customer's SOAP company."""

from __future__ import annotations

import uuid

from l1nda_sync.registry import db, rest_entities
from l1nda_sync.registry.rest_entities import SeenEntity
from tests.l1nda_sync.cli.conftest import Cli


def _world(url: str) -> tuple[str, str]:
    """A SOAP token reaching 50101 (debtor D001, linked by CUST) and 60101 (debtor D009, another customer's); two
    unmatched REST companies of CUST under D001."""
    conn = db.connect(url)
    try:
        with db.transaction(conn) as cur:
            cur.execute("""INSERT INTO tokens (kind, label, level, username, token_ciphertext, fingerprint)
                           VALUES ('soap_token', 'acc', 'accountant', 'u@x.nl', 'c', 'acc') RETURNING id""")
            soap = int(cur.fetchone()[0])
            cur.execute("""INSERT INTO reach_debtors (token_id, debtor_id, number)
                           VALUES (%s, 2001, 'D001'), (%s, 2009, 'D009')""", (soap, soap))
            cur.execute("""INSERT INTO reach_companies (token_id, company_id, debtor_id, number, name)
                           VALUES (%s, 50101, 2001, 101, 'Anker'), (%s, 60101, 2009, 101, 'Elders')""", (soap, soap))
            cur.execute("""INSERT INTO links (customer_ref, company_id, state)
                           VALUES ('CUST', 50101, 'pending'), ('OTHER', 60101, 'pending')""")
            debtor = str(uuid.uuid4())
            made = [rest_entities.create(cur, SeenEntity(str(uuid.uuid4()), "company", "CUST", "101", "Anker", debtor,
                                                         "D001"), match="unmatched") for _ in range(2)]
        return made[0].uuid, made[1].uuid
    finally:
        conn.close()


def test_a_match_to_a_soap_company_that_is_no_candidate_needs_force(cli: Cli, registry_url: str) -> None:
    first, second = _world(registry_url)
    refused = cli("companies", "match", first, "--company", "60101")
    assert refused.code == 2
    assert "no candidate" in refused.err
    assert "--force" in refused.err
    matched = cli("companies", "match", first, "--company", "50101")
    assert matched.code == 0, matched.err
    forced = cli("companies", "match", second, "--company", "60101", "--force")
    assert forced.code == 0, forced.err
    conn = db.connect(registry_url)
    try:
        with db.reading(conn) as cur:
            found = rest_entities.lookup(cur, [first, second])
    finally:
        conn.close()
    assert (found[first].key, found[second].key) == (50101, 60101)
