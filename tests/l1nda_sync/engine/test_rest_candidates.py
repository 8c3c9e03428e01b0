"""Candidates for a REST connection's companies come from its own customer's links only (PostgreSQL): another
accountant's company with the same debtor and company numbers is never this customer's, and a REST connection
never takes another customer's link (docs/rest-connections.md, "One company, two ids")."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from l1nda_sync.engine.reconciling import reconcile_all
from l1nda_sync.engine.rest_resolution import resolve
from l1nda_sync.nmbrs.rest.records import RestCompany, RestDebtor, RestReach
from l1nda_sync.registry import db

AT = datetime(2027, 3, 1, 9, tzinfo=UTC)
DEBTOR, COMPANY = str(uuid.uuid4()), str(uuid.uuid4())
REACH = RestReach((RestDebtor(DEBTOR, "1", "Eetcafe"),), (RestCompany(COMPANY, "1", "Eetcafe B.V.", DEBTOR),),
                  None, 2)


def token(cur: db.Cursor, kind: str, label: str) -> int:
    cur.execute("""INSERT INTO tokens (kind, label, level, username, token_ciphertext, fingerprint, state)
                   VALUES (%s, %s, 'debtor', 'u@x.nl', CASE WHEN %s = 'soap_token' THEN 'c' END, %s, 'active')
                   RETURNING id""", (kind, label, kind, label))
    return int(cur.fetchone()[0])


@pytest.fixture
def world(conn: db.Connection) -> dict[str, int]:
    """Accountant A's SOAP token reaches debtor "1" (id 3001) with company "1" (id 70001), linked by customer OTHER;
    customer MINE's REST connection reaches its own debtor "1" with company "1"."""
    with db.transaction(conn) as cur:
        soap, rest = token(cur, "soap_token", "acc-a"), token(cur, "rest_connection", "mine-rest")
        cur.execute("INSERT INTO rest_connections (token_id, customer_ref, user_id, user_email) "
                    "VALUES (%s, 'MINE', %s, 'u@x.nl')", (rest, str(uuid.uuid4())))
        cur.execute("INSERT INTO reach_debtors (token_id, debtor_id, number, name) VALUES (%s, 3001, '1', 'Eetcafe')",
                    (soap,))
        cur.execute("""INSERT INTO reach_companies (token_id, company_id, debtor_id, number, name)
                       VALUES (%s, 70001, 3001, 1, 'Eetcafe B.V.')""", (soap,))
        cur.execute("""INSERT INTO links (customer_ref, company_id, state, token_id)
                       VALUES ('OTHER', 70001, 'active', %s) RETURNING id""", (soap,))
        link = int(cur.fetchone()[0])
    return {"soap": soap, "rest": rest, "link": link}


def test_another_customers_company_with_the_same_numbers_is_no_candidate(conn: db.Connection,
                                                                        world: dict[str, int]) -> None:
    with db.transaction(conn) as cur:
        probe = resolve(cur, world["rest"], REACH, at=AT)
        cur.execute("""INSERT INTO reach_companies (token_id, company_id, number)
                       SELECT %s, c.id, 1 FROM unnest(%s::int[]) AS c(id)""",
                    (world["rest"], [c.id for c in probe.companies]))
        changes = reconcile_all(cur, now=lambda: AT)
        cur.execute("SELECT state, token_id FROM links WHERE id = %s", (world["link"],))
        link = cur.fetchone()
    assert [c.id for c in probe.companies] != [70001]
    assert all(c.id < 0 for c in probe.companies), "unmatched: never another customer's SOAP id"
    assert all(d.id < 0 for d in probe.debtors)
    assert changes == []
    assert link == ("active", world["soap"]), "the other customer's link stays with its SOAP token"


def test_the_customers_own_link_names_the_candidate(conn: db.Connection, world: dict[str, int]) -> None:
    with db.transaction(conn) as cur:
        cur.execute("UPDATE links SET customer_ref = 'MINE' WHERE id = %s", (world["link"],))
        probe = resolve(cur, world["rest"], REACH, at=AT)
    assert [c.id for c in probe.companies] == [70001]
    assert [d.id for d in probe.debtors] == [3001]


def test_a_connection_that_reaches_another_customers_company_never_takes_its_link(conn: db.Connection,
                                                                                 world: dict[str, int]) -> None:
    """Even when its reach holds that SOAP id (an operator's match, an old key), the link is not its to take."""
    with db.transaction(conn) as cur:
        cur.execute("INSERT INTO reach_companies (token_id, company_id, number) VALUES (%s, 70001, 1)",
                    (world["rest"],))
        changes = reconcile_all(cur, now=lambda: AT)
    assert changes == []
