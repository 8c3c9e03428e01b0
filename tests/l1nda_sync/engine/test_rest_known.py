"""A batch's REST connections whose companies are all known and decided are resolved together (PostgreSQL): the
same probes `resolve` gives, a constant number of statements however many connections, and should that bulk read
fail, each connection on its own under its savepoint, the bad one `unknown` and the others valid."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg2.extensions
import pytest

from l1nda_sync.engine.checking import CheckRecord, TokenToCheck
from l1nda_sync.engine.rest_checking import finish_rest
from l1nda_sync.engine.rest_resolution import resolve, resolve_known
from l1nda_sync.engine.token_state import Outcome, StatePolicy
from l1nda_sync.nmbrs.rest.records import RestCompany, RestDebtor, RestReach
from l1nda_sync.registry import db

AT = datetime(2027, 3, 1, 9, tzinfo=UTC)
DEBTOR, COMPANY = str(uuid.uuid4()), str(uuid.uuid4())


def reach(company_name: str = "Eetcafe B.V.", *, company: str = COMPANY) -> RestReach:
    return RestReach((RestDebtor(DEBTOR, "1", "Eetcafe"),), (RestCompany(company, "1", company_name, DEBTOR),),
                     None, 2)


class Counting(psycopg2.extensions.cursor):
    statements = 0

    def execute(self, query: Any, vars: Any = None) -> None:
        Counting.statements += 1
        super().execute(query, vars)


@pytest.fixture
def conn(registry_url: str) -> Iterator[db.Connection]:
    c = db.connect(registry_url)
    yield c
    c.close()


def rest_connection(cur: db.Cursor, label: str) -> int:
    cur.execute("""INSERT INTO tokens (kind, label, level, username, fingerprint, state)
                   VALUES ('rest_connection', %s, 'debtor', 'u@x.nl', %s, 'active') RETURNING id""", (label, label))
    token_id = int(cur.fetchone()[0])
    cur.execute("INSERT INTO rest_connections (token_id, customer_ref, user_id, user_email) "
                "VALUES (%s, 'MINE', %s, 'u@x.nl')", (token_id, str(uuid.uuid4())))
    return token_id


@pytest.fixture
def known(conn: db.Connection) -> list[int]:
    """Six connections of customer MINE; its SOAP token reaches debtor "1" (3001) with company "1" (70001), which
    MINE links: the first check (`resolve`) matched both by number, so they are known and decided."""
    with db.transaction(conn) as cur:
        cur.execute("""INSERT INTO tokens (kind, label, level, username, token_ciphertext, fingerprint, state)
                       VALUES ('soap_token', 'acc', 'debtor', 'u@x.nl', 'c', 'acc', 'active') RETURNING id""")
        soap = int(cur.fetchone()[0])
        cur.execute("INSERT INTO reach_debtors (token_id, debtor_id, number, name) VALUES (%s, 3001, '1', 'Eetcafe')",
                    (soap,))
        cur.execute("""INSERT INTO reach_companies (token_id, company_id, debtor_id, number, name)
                       VALUES (%s, 70001, 3001, 1, 'Eetcafe B.V.')""", (soap,))
        cur.execute("INSERT INTO links (customer_ref, company_id, state, token_id) "
                    "VALUES ('MINE', 70001, 'active', %s)", (soap,))
        ids = [rest_connection(cur, f"mine-{n}") for n in range(6)]
        first = resolve(cur, ids[0], reach(), at=AT)
    assert ([c.id for c in first.companies], [d.id for d in first.debtors]) == ([70001], [3001])
    return ids


def test_known_connections_resolve_together_as_each_would_alone(conn: db.Connection, known: list[int]) -> None:
    with db.transaction(conn) as cur:
        cur.execute("SAVEPOINT alone")
        alone = resolve(cur, known[1], reach(), at=AT)
        cur.execute("ROLLBACK TO SAVEPOINT alone")
        stranger = rest_connection(cur, "new company")
        together = resolve_known(cur, [(known[1], reach(), AT), (known[2], reach("Eetcafe Nieuw B.V."), AT),
                                       (stranger, reach(company=str(uuid.uuid4())), AT)])
        cur.execute("SELECT name FROM rest_entities WHERE uuid = %s", (COMPANY,))
        name = cur.fetchone()[0]
    assert set(together) == {known[1], known[2]}, "a connection with a company never seen is left to resolve"
    assert together[known[1]] == alone
    assert [c.id for c in together[known[2]].companies] == [70001]
    assert name == "Eetcafe Nieuw B.V.", "what Nmbrs says of a known company is refreshed, once"


def test_resolving_known_connections_costs_the_same_statements_for_two_or_six(conn: db.Connection,
                                                                           known: list[int]) -> None:
    counts = []
    for many in (2, 6):
        Counting.statements = 0
        with conn, conn.cursor(cursor_factory=Counting) as cur:
            settled = resolve_known(cur, [(token_id, reach(), AT) for token_id in known[:many]])
        counts.append(Counting.statements)
        assert len(settled) == many
    assert counts[0] == counts[1] <= 2
    # The check step's own use: a savepoint around that bulk read, and nothing per connection.
    records = [CheckRecord(t, AT, Outcome.VALID, None, None, None, 5, 2, None, rest_reach=reach()) for t in known]
    tokens = [TokenToCheck(t, "u@x.nl", None, None, None, "rest_connection") for t in known]
    Counting.statements = 0
    with conn, conn.cursor(cursor_factory=Counting) as cur:
        finished = finish_rest(cur, records, tokens, policy=StatePolicy())
    assert Counting.statements <= counts[0] + 2
    assert [r.outcome for r in finished] == [Outcome.VALID] * len(known)


def test_a_bulk_read_that_fails_falls_back_to_one_connection_at_a_time(conn: db.Connection, known: list[int]) -> None:
    """A UUID the registry refuses (not a UUID at all) fails the batch's bulk read; it is undone, and every
    connection is resolved on its own: the bad one is `unknown`, the others valid, and the transaction goes on."""
    bad = RestReach((RestDebtor("not-a-uuid", "1", "Eetcafe"),), (), None, 1)
    records = [CheckRecord(token_id, AT, Outcome.VALID, None, None, None, 5, 2, None, rest_reach=r)
               for token_id, r in ((known[1], reach()), (known[2], bad), (known[3], reach()))]
    tokens = [TokenToCheck(t, "u@x.nl", None, None, None, "rest_connection") for t in known[1:4]]
    with db.transaction(conn) as cur:
        finished = finish_rest(cur, records, tokens, policy=StatePolicy())
        cur.execute("SELECT count(*) FROM rest_entities")
        entities = cur.fetchone()[0]
    assert [r.outcome for r in finished] == [Outcome.VALID, Outcome.UNKNOWN, Outcome.VALID]
    assert (finished[1].detail or "").startswith("resolving REST ids")
    assert [[c["id"] for c in r.probe["companies"]] if r.probe else None for r in finished] == [[70001], None,
                                                                                                 [70001]]
    assert entities == 2, "nothing of the failed reads was written"
