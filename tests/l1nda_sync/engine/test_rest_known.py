"""A batch's REST connections whose companies are all known and decided are resolved together (PostgreSQL): the
same probes `resolve` gives, a constant number of statements however many connections, and should that bulk read
fail, each connection on its own under its savepoint, the bad one `unknown` and the others valid."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg2.extensions
import pytest

from l1nda_sync.engine.checking import CheckRecord, TokenToCheck
from l1nda_sync.engine.rest_checking import finish_rest
from l1nda_sync.engine.rest_resolution import load_candidates, load_candidates_many, resolve, resolve_known
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


def rest_connection(cur: db.Cursor, label: str, customer: str | None = "MINE") -> int:
    cur.execute("""INSERT INTO tokens (kind, label, level, username, fingerprint, state)
                   VALUES ('rest_connection', %s, 'debtor', 'u@x.nl', %s, 'active') RETURNING id""", (label, label))
    token_id = int(cur.fetchone()[0])
    if customer is not None:
        cur.execute("INSERT INTO rest_connections (token_id, customer_ref, user_id, user_email) "
                    "VALUES (%s, %s, %s, 'u@x.nl')", (token_id, customer, str(uuid.uuid4())))
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
    assert counts[0] == counts[1] <= 3  # the look-up; the refresh: its rows locked, then written
    # The check step's own use: a savepoint around that bulk read, and nothing per connection.
    records = [CheckRecord(t, AT, Outcome.VALID, None, None, None, 5, 2, None, rest_reach=reach()) for t in known]
    tokens = [TokenToCheck(t, "u@x.nl", None, None, None, "rest_connection") for t in known]
    Counting.statements = 0
    with conn, conn.cursor(cursor_factory=Counting) as cur:
        finished = finish_rest(cur, records, tokens, policy=StatePolicy())
    assert Counting.statements <= counts[0] + 2
    assert [r.outcome for r in finished] == [Outcome.VALID] * len(known)


def test_a_batch_never_waits_on_entities_another_batch_is_refreshing(conn: db.Connection, known: list[int],
                                                                     registry_url: str) -> None:
    """Two check batches reaching the same company refresh it at the same moment: the second skips the rows the
    first holds instead of waiting on them (waiting, in the order a join visits rows, deadlocked two batches in the
    bench). Nothing is lost: the first's refresh lands, and the next check refreshes what the second saw."""
    other = db.connect(registry_url)
    try:
        with db.transaction(other) as first:
            assert set(resolve_known(first, [(known[1], reach("Eetcafe Een B.V."), AT)])) == {known[1]}
            with db.transaction(conn) as second:
                second.execute("SET LOCAL lock_timeout = '200ms'")  # a wait fails here, at once and for sure
                settled = resolve_known(second, [(known[2], reach("Eetcafe Twee B.V."), AT)])
            assert [c.id for c in settled[known[2]].companies] == [70001]
    finally:
        other.close()
    with db.transaction(conn) as cur:
        cur.execute("SELECT name FROM rest_entities WHERE uuid = %s", (COMPANY,))
        assert cur.fetchone()[0] == "Eetcafe Een B.V.", "the first batch's refresh landed; the second skipped it"
        resolve_known(cur, [(known[2], reach("Eetcafe Twee B.V."), AT)])
        cur.execute("SELECT name FROM rest_entities WHERE uuid = %s", (COMPANY,))
        assert cur.fetchone()[0] == "Eetcafe Twee B.V.", "the next check refreshes it"


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


def test_a_batchs_candidates_are_each_connections_own(conn: db.Connection, known: list[int]) -> None:
    """Read for many connections at once, each connection's candidates are what `load_candidates` reads for it
    alone: its own customer's links (case and spaces aside), its own debtor numbers, nothing for no customer."""
    with db.transaction(conn) as cur:
        cur.execute("""INSERT INTO reach_debtors (token_id, debtor_id, number, name)
                       SELECT token_id, 3002, ' 2 ', 'Bistro' FROM reach_debtors WHERE debtor_id = 3001""")
        cur.execute("""INSERT INTO reach_companies (token_id, company_id, debtor_id, number, name)
                       SELECT token_id, 70002, 3002, 1, 'Bistro B.V.' FROM reach_debtors WHERE debtor_id = 3001""")
        cur.execute("INSERT INTO links (customer_ref, company_id, debtor_id, state) "
                    "VALUES ('bistro ', 70002, 3002, 'pending')")
        bistro = rest_connection(cur, "bistro", " BISTRO")
        nobody = rest_connection(cur, "no customer", None)
        two = RestReach((RestDebtor(DEBTOR, "1", "Eetcafe"), RestDebtor(str(uuid.uuid4()), "2", "Bistro")), (),
                        None, 2)
        wanted = [(known[0], reach()), (known[1], two), (bistro, two), (nobody, reach())]
        together = load_candidates_many(cur, wanted)
        alone = {token_id: load_candidates(cur, token_id, r) for token_id, r in wanted}
    assert set(together) == set(alone)
    for token_id, candidates in together.items():
        single = alone[token_id]
        assert (candidates.customer_ref, candidates.linked_companies, candidates.linked_debtors) == \
            (single.customer_ref, single.linked_companies, single.linked_debtors), token_id
        assert (sorted(candidates.companies), sorted(candidates.debtors)) == \
            (sorted(single.companies), sorted(single.debtors)), token_id
    assert [c.id for c in together[bistro].companies] == [70002]
    assert [c.id for c in together[known[1]].companies] == [70001]
    assert together[nobody].companies == together[nobody].debtors == ()


def test_an_open_company_kept_as_it_is_resolves_together_and_a_changed_one_alone(conn: db.Connection,
                                                                              known: list[int]) -> None:
    """Unmatched (no link of the customer names it) it is decided again on every check: kept when its candidates
    did not change, so the batch resolves it as `resolve` would, with no statement per connection; once the
    customer links its SOAP company, `resolve` gets it and gives it the SOAP id."""
    other = str(uuid.uuid4())
    unlinked = RestReach((RestDebtor(other, "7", "Kapsalon"),), (RestCompany(str(uuid.uuid4()), "1", "Kapsalon B.V.",
                                                                            other),), None, 2)
    with db.transaction(conn) as cur:
        cur.execute("INSERT INTO reach_debtors (token_id, debtor_id, number, name) "
                    "SELECT token_id, 3007, '7', 'Kapsalon' FROM reach_debtors WHERE debtor_id = 3001")
        cur.execute("""INSERT INTO reach_companies (token_id, company_id, debtor_id, number, name)
                       SELECT token_id, 70007, 3007, 1, 'Kapsalon B.V.' FROM reach_debtors WHERE debtor_id = 3001""")
        first = resolve(cur, known[4], unlinked, at=AT)
        assert all(c.id < 0 for c in first.companies)
        cur.execute("SAVEPOINT alone")
        alone = resolve(cur, known[5], unlinked, at=AT)
        cur.execute("ROLLBACK TO SAVEPOINT alone")
    counts = []
    for many in (1, 2):
        Counting.statements = 0
        with conn, conn.cursor(cursor_factory=Counting) as cur:
            together = resolve_known(cur, [(known[5 - n], unlinked, AT) for n in range(many)])
        counts.append(Counting.statements)
        assert together[known[5]] == alone
    assert counts[0] == counts[1]
    with db.transaction(conn) as cur:
        cur.execute("INSERT INTO links (customer_ref, company_id, state) VALUES ('MINE', 70007, 'pending')")
        assert resolve_known(cur, [(known[5], unlinked, AT)]) == {}
        promoted = resolve(cur, known[5], unlinked, at=AT)
    assert [c.id for c in promoted.companies] == [70007]


def test_an_open_company_another_connection_of_the_batch_promotes_is_seen_promoted(conn: db.Connection,
                                                                                known: list[int]) -> None:
    """Two customers' connections reach one Nmbrs debtor: OTHER saw its company first (unmatched, a negative key),
    MINE links it. One by one, MINE's check promotes it to the SOAP id and OTHER's then finds it decided; the batch
    must not settle OTHER's before that write (found by review)."""
    debtor, company = str(uuid.uuid4()), str(uuid.uuid4())
    shared = RestReach((RestDebtor(debtor, "5", "Bakkerij"),), (RestCompany(company, "1", "Bakkerij B.V.", debtor),),
                       None, 2)
    with db.transaction(conn) as cur:
        cur.execute("INSERT INTO reach_debtors (token_id, debtor_id, number, name) "
                    "SELECT token_id, 3005, '5', 'Bakkerij' FROM reach_debtors WHERE debtor_id = 3001")
        cur.execute("""INSERT INTO reach_companies (token_id, company_id, debtor_id, number, name)
                       SELECT token_id, 70005, 3005, 1, 'Bakkerij B.V.' FROM reach_debtors WHERE debtor_id = 3001""")
        cur.execute("INSERT INTO links (customer_ref, company_id, state) VALUES ('MINE', 70005, 'pending')")
        other = rest_connection(cur, "other customer", "OTHER")
        kept_apart = rest_connection(cur, "another customer", "ELSE")
        assert all(c.id < 0 for c in resolve(cur, other, shared, at=AT).companies)
        cur.execute("INSERT INTO reach_debtors (token_id, debtor_id, number, name) "
                    "SELECT token_id, 3009, '9', 'Slager' FROM reach_debtors WHERE debtor_id = 3001")
        alone_debtor = str(uuid.uuid4())
        alone = RestReach((RestDebtor(alone_debtor, "9", "Slager"),), (), None, 1)
        resolve(cur, kept_apart, alone, at=AT)  # open too, but shares nothing: settled by the batch
    batch = [(known[1], shared), (other, shared), (kept_apart, alone)]
    records = [CheckRecord(t, AT, Outcome.VALID, None, None, None, 5, 2, None, rest_reach=r) for t, r in batch]
    tokens = [TokenToCheck(t, "u@x.nl", None, None, None, "rest_connection") for t, _ in batch]
    with db.transaction(conn) as cur:
        cur.execute("SAVEPOINT one_by_one")
        expected = {t: resolve(cur, t, r, at=AT) for t, r in batch}
        cur.execute("ROLLBACK TO SAVEPOINT one_by_one")
        assert set(resolve_known(cur, [(t, r, AT) for t, r in batch])) == {kept_apart}
        cur.execute("ROLLBACK TO SAVEPOINT one_by_one")
        finished = finish_rest(cur, records, tokens, policy=StatePolicy())
        cur.execute("SELECT key FROM rest_entities WHERE uuid = %s", (company,))
        stored_key = cur.fetchone()[0]
    assert stored_key == 70005
    assert {r.token_id: [c["id"] for c in r.probe["companies"]] for r in finished if r.probe} == \
        {t: [c.id for c in p.companies] for t, p in expected.items()} == {known[1]: [70005], other: [70005],
                                                                           kept_apart: []}


def _records(batch: list[tuple[int, RestReach]]) -> tuple[list[CheckRecord], list[TokenToCheck]]:
    return ([CheckRecord(t, AT, Outcome.VALID, None, None, None, 5, 2, None, rest_reach=r) for t, r in batch],
            [TokenToCheck(t, "u@x.nl", None, None, None, "rest_connection") for t, _ in batch])


def _waits_on_an_advisory_lock(conn: db.Connection, pid: int) -> bool:
    with db.transaction(conn) as cur:
        cur.execute("SELECT wait_event_type = 'Lock' AND wait_event = 'advisory' FROM pg_stat_activity "
                    "WHERE pid = %s", (pid,))
        row = cur.fetchone()
    return bool(row and row[0])


def _until_it_waits_for_the_writers_lock(conn: db.Connection, waiter: db.Connection, thread: threading.Thread,
                                         who: str) -> None:
    """Return once `waiter`'s session waits on an advisory lock; fail if its thread went on, or after 30 s."""
    deadline = time.monotonic() + 30
    while not _waits_on_an_advisory_lock(conn, waiter.info.backend_pid):
        assert thread.is_alive(), f"{who} must wait for the writers' lock, not go on"
        assert time.monotonic() < deadline, f"{who} never waited for the writers' lock"


def test_batches_that_store_entities_take_turns_and_one_that_only_refreshes_never_waits(
        conn: db.Connection, known: list[int], registry_url: str) -> None:
    """Two batches that each store a company first seen lock the entity rows they write in their own order: they
    deadlocked in the bench (one check `unknown`). A storing batch now takes the writers' lock before any entity
    row lock, so the second waits for the first's transaction to end, then stores; a batch that only refreshes
    known entities takes no such lock and never waits."""
    first_seen, also_new = str(uuid.uuid4()), str(uuid.uuid4())
    writer_a, writer_b, reader = db.connect(registry_url), db.connect(registry_url), db.connect(registry_url)
    results: dict[str, list[CheckRecord]] = {}
    try:
        with db.transaction(writer_a) as a:
            results["a"] = finish_rest(a, *_records([(known[1], reach(company=first_seen)), (known[2], reach())]),
                                       policy=StatePolicy())
            with db.transaction(reader) as r:  # only known entities: no wait, even beside a storing batch
                r.execute("SET LOCAL lock_timeout = '200ms'")
                results["reader"] = finish_rest(r, *_records([(known[3], reach())]), policy=StatePolicy())

            def store_b() -> None:
                with db.transaction(writer_b) as b:
                    results["b"] = finish_rest(b, *_records([(known[4], reach(company=also_new)),
                                                             (known[5], reach(company=first_seen))]),
                                               policy=StatePolicy())

            thread = threading.Thread(target=store_b)
            thread.start()
            _until_it_waits_for_the_writers_lock(conn, writer_b, thread, "b")
            assert "b" not in results
        thread.join(30)
        assert not thread.is_alive()
    finally:
        for c in (writer_a, writer_b, reader):
            c.close()
    assert [r.outcome for name in ("a", "reader", "b") for r in results[name]] == [Outcome.VALID] * 5
    with db.transaction(conn) as cur:
        cur.execute("SELECT count(*) FROM rest_entities WHERE uuid = ANY(%s::uuid[])", ([first_seen, also_new],))
        assert cur.fetchone()[0] == 2, "each company stored once"


def test_a_consents_first_check_takes_the_writers_lock_before_it_stores_entities(
        conn: db.Connection, known: list[int], registry_url: str) -> None:
    """A consent's first check (`consent.activate`) stores entities in its own transaction: it takes the writers'
    lock first, so it waits for a storing batch instead of holding rows that batch waits on (found by review: the
    two deadlocked, and the consent, its grant already exchanged, was the victim)."""
    from l1nda_sync.consent import Reached, activate
    from l1nda_sync.settings import Settings

    with db.transaction(conn) as cur:
        fresh = rest_connection(cur, "fresh consent")
    batch_conn, consent_conn = db.connect(registry_url), db.connect(registry_url)
    done: dict[str, object] = {}
    try:
        with db.transaction(batch_conn) as b:
            finish_rest(b, *_records([(known[1], reach(company=str(uuid.uuid4())))]), policy=StatePolicy())

            def consent() -> None:
                with db.transaction(consent_conn) as c:
                    done["applied"] = activate(c, Settings(), fresh, Reached("user", "u@x.nl", calls=2,
                                                                           reach=reach(company=str(uuid.uuid4()))), AT)

            thread = threading.Thread(target=consent)
            thread.start()
            _until_it_waits_for_the_writers_lock(conn, consent_conn, thread, "the consent")
        thread.join(30)
        assert not thread.is_alive()
    finally:
        batch_conn.close()
        consent_conn.close()
    assert done["applied"] is not None


def test_a_dry_run_never_holds_up_a_real_batch_that_stores(conn: db.Connection, known: list[int],
                                                          registry_url: str) -> None:
    """A dry run previews every batch in one transaction that lives until the whole run is previewed: it never
    takes the writers' lock (found by review: a real storing batch waited for the preview to end)."""
    dry, real = db.connect(registry_url), db.connect(registry_url)
    try:
        with db.transaction(dry) as d:
            previewed = finish_rest(d, *_records([(known[1], reach(company=str(uuid.uuid4())))]),
                                    policy=StatePolicy(), dry_run=True)
            d.execute("SHOW lock_timeout")
            assert d.fetchone()[0] == "0", "the dry run's own lock time-out is back as it was"
            with db.transaction(real) as r:
                r.execute("SET LOCAL lock_timeout = '200ms'")  # a wait fails here, at once and for sure
                stored = finish_rest(r, *_records([(known[2], reach(company=str(uuid.uuid4())))]),
                                     policy=StatePolicy())
            d.execute("ROLLBACK")
    finally:
        dry.close()
        real.close()
    assert [r.outcome for r in previewed + stored] == [Outcome.VALID, Outcome.VALID]
