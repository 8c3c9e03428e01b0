"""The order a run starts its tokens in: the heaviest first (an unprobed accountant, then by debtors reached),
dealt round the batches so that each batch starts with its share of them. Pure, then on PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from l1nda_sync.engine.planning import Workload, dealt, heaviest_first, plan_batches, workloads
from l1nda_sync.registry import db

NOW = datetime(2026, 12, 2, 9, tzinfo=UTC)


def test_unprobed_accountants_first_then_most_debtors_then_id() -> None:
    loads = [Workload(1, False, 0), Workload(2, False, 150), Workload(3, True, 0), Workload(4, False, 20),
             Workload(5, False, 150), Workload(6, True, 0)]
    assert heaviest_first(loads) == [3, 6, 2, 5, 4, 1]


def test_dealt_round_like_cards() -> None:
    assert dealt([9, 8, 7, 6, 5, 4, 3], 3) == ((9, 6, 3), (8, 5), (7, 4))
    assert dealt([1, 2], 100) == ((1, 2),)
    assert dealt([], 5) == ()


@given(st.lists(st.integers(min_value=1, max_value=10_000), unique=True, max_size=300),
       st.integers(min_value=1, max_value=120))
def test_dealing_keeps_every_token_once_within_the_batch_size(ids: list[int], size: int) -> None:
    batches = dealt(ids, size)
    assert sorted(t for batch in batches for t in batch) == sorted(ids)
    assert all(0 < len(batch) <= size for batch in batches)
    assert len(batches) == -(-len(ids) // size)  # as few batches as consecutive ones would be
    assert max(map(len, batches), default=0) - min(map(len, batches), default=0) <= 1
    place = {t: n for n, t in enumerate(ids)}
    assert all([place[t] for t in batch] == sorted(place[t] for t in batch) for batch in batches)
    assert [batch[0] for batch in batches] == ids[: len(batches)]  # every batch starts with one of the heaviest


def _token(cur: db.Cursor, label: str, level: str, *, probed: bool, debtors: int = 0, lost: int = 0) -> int:
    cur.execute("""INSERT INTO tokens (label, level, username, token_ciphertext, fingerprint, state, next_check_at,
                                       probe_cache)
                   VALUES (%s, %s, 'u@x.nl', 'c', %s, 'active', %s, %s) RETURNING id""",
                (label, level, label, NOW - timedelta(minutes=1), '{"debtors": []}' if probed else None))
    token_id = int(cur.fetchone()[0])
    for n in range(debtors + lost):
        cur.execute("INSERT INTO reach_debtors (token_id, debtor_id, lost_at) VALUES (%s, %s, %s)",
                    (token_id, n + 1, NOW if n >= debtors else None))
    return token_id


def test_a_run_starts_unprobed_accountants_and_big_offices_first(conn: db.Connection) -> None:
    with db.transaction(conn) as cur:
        client = _token(cur, "client", "debtor", probed=True, debtors=1)
        new_client = _token(cur, "new client", "debtor", probed=False)
        office = _token(cur, "office", "accountant", probed=True, debtors=40, lost=100)  # lost debtors do not count
        big_office = _token(cur, "big office", "accountant", probed=True, debtors=60)
        new_office = _token(cur, "new office", "accountant", probed=False)
        ids = [client, new_client, office, big_office, new_office]
        found = {w.token_id: w for w in workloads(cur, ids)}
        batches = plan_batches(cur, ids, 2)
    assert found[office] == Workload(office, False, 40)
    assert found[new_office].unprobed_accountant
    assert not found[new_client].unprobed_accountant
    assert batches == ((new_office, client), (big_office, new_client), (office,))


def test_a_failing_accountant_a_new_rest_connection_and_an_unknown_id(conn: db.Connection) -> None:
    """An accountant that was checked but never gave a probe (it keeps failing: about one call) is not "unprobed";
    a new REST connection weighs the debtors it was consented (its probe asks each); an id without a row is still
    planned, once."""
    with db.transaction(conn) as cur:
        failing = _token(cur, "failing office", "accountant", probed=False)
        cur.execute("UPDATE tokens SET last_checked_at = %s WHERE id = %s", (NOW, failing))
        cur.execute("""INSERT INTO tokens (kind, label, level, username, fingerprint, state, next_check_at)
                       VALUES ('rest_connection', 'rest', 'debtor', 'u@x.nl', 'rest', 'active', %s) RETURNING id""",
                    (NOW,))
        rest = int(cur.fetchone()[0])
        cur.execute("""INSERT INTO rest_connections (token_id, customer_ref, user_id, user_email, debtor_ids)
                       VALUES (%s, 'REST', %s, 'u@x.nl', %s::uuid[])""",
                    (rest, str(uuid.uuid4()), [str(uuid.uuid4()) for _ in range(3)]))
        client = _token(cur, "client", "debtor", probed=True, debtors=1)
        found = {w.token_id: w for w in workloads(cur, [failing, rest, client, 999_999, client])}
        batches = plan_batches(cur, [failing, rest, client, 999_999], 3)
    assert found[failing] == Workload(failing, False, 0)
    assert found[rest] == Workload(rest, False, 3)
    assert found[999_999] == Workload(999_999, False, 0)
    assert len(found) == 4
    assert batches == ((rest, failing), (client, 999_999))


def test_a_batch_loads_its_tokens_in_the_plans_order(conn: db.Connection) -> None:
    from l1nda_sync.engine.checking import load_tokens

    with db.transaction(conn) as cur:
        first = _token(cur, "a", "debtor", probed=True)
        second = _token(cur, "b", "accountant", probed=False)
        third = _token(cur, "c", "debtor", probed=True)
        loaded = [t.id for t in load_tokens(cur, [second, third, first])]
    assert loaded == [second, third, first]


def test_the_engine_plans_heaviest_first_and_a_dry_run_shows_the_same_batches(
        registry_url: str, conn: db.Connection) -> None:
    """`SyncEngine.plan` deals its claimed tokens (and a dry run its due ones) heaviest first, each once."""
    from l1nda_sync.engine.sync import SyncEngine
    from l1nda_sync.settings import Settings

    with db.transaction(conn) as cur:
        light = [_token(cur, f"client {n}", "debtor", probed=True, debtors=1) for n in range(3)]
        office = _token(cur, "office", "accountant", probed=True, debtors=30)
        new_office = _token(cur, "new office", "accountant", probed=False)
    engine = SyncEngine(registry_url, settings=Settings(batch_size=2), clock=lambda: NOW)
    dry = engine.plan(dry_run=True)
    real = engine.plan()
    expected = ((new_office, light[1]), (office, light[2]), (light[0],))  # in id order they would be consecutive
    assert dry.batches == real.batches == expected
    assert sorted(t for batch in real.batches for t in batch) == sorted(real.token_ids) == sorted([*light, office,
                                                                                                  new_office])
