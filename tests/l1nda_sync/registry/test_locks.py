"""Advisory locks: every key is declared in registry/locks.py, the keys are distinct, each function takes its key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import l1nda_sync
from l1nda_sync.alerts.problems import Kind
from l1nda_sync.registry import db, locks

PACKAGE = Path(l1nda_sync.__file__).parent
INT4 = range(-(2**31), 2**31)
INT8 = range(-(2**63), 2**63)


def test_no_advisory_lock_sql_outside_the_locks_module() -> None:
    pattern = re.compile(r"pg_(try_)?advisory", re.IGNORECASE)
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in sorted(PACKAGE.rglob("*"))
        if path.is_file() and path.suffix in {".py", ".sql"} and path != Path(locks.__file__)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_constant_keys_are_distinct_and_in_range() -> None:
    keys = list(locks.CONSTANT_KEYS.values())
    assert len(set(keys)) == len(keys)
    assert all(k in INT8 for k in keys)
    classes = list(locks.PAIR_CLASSES.values())
    assert len(set(classes)) == len(classes)
    assert all(c in INT4 for c in classes)
    assert len(set(locks.HASHED_NAMES.values())) == len(locks.HASHED_NAMES)
    assert not any(name.startswith(locks.PROBLEM_LOCK_PREFIX + ":") for name in locks.HASHED_NAMES.values())


def test_hashed_keys_miss_the_constant_keys(database_url: str) -> None:
    """The drain's key, and the problem keys of every kind for the first ten thousand token ids."""
    problem_names = [locks.problem_lock_name(t, k) for t in range(10_000) for k in Kind]
    conn = db.connect(database_url)
    try:
        with db.reading(conn) as cur:
            cur.execute("SELECT hashtextextended(n, 0) FROM unnest(%s::text[]) AS n",
                        (list(locks.HASHED_NAMES.values()),))
            named = [r[0] for r in cur.fetchall()]
            cur.execute("SELECT DISTINCT hashtextextended(n, 0) FROM unnest(%s::text[]) AS n", (problem_names,))
            problems = {r[0] for r in cur.fetchall()}
    finally:
        conn.close()
    constants = set(locks.CONSTANT_KEYS.values())
    assert len(set(named)) == len(named)
    assert not constants & set(named)
    assert not constants & problems
    assert not problems & set(named)


def _held(cur) -> set[tuple[int, int, int]]:
    cur.execute("""SELECT classid::bigint, objid::bigint, objsubid FROM pg_locks
                   WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted""")
    return set(cur.fetchall())


def _bigint(key: int) -> tuple[int, int, int]:
    return (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF, 1


@pytest.mark.parametrize(("take", "expected"), [
    (locks.lock_schema_upgrade, lambda cur: _bigint(locks.SCHEMA_LOCK_KEY)),
    (locks.lock_token_writes, lambda cur: _bigint(locks.TOKEN_WRITE_LOCK_KEY)),
    (lambda cur: locks.lock_link_requests(cur, 4711), lambda cur: (locks.LINK_REQUEST_LOCK_CLASS, 4711, 2)),
    (lambda cur: locks.lock_rest_refresh(cur, 31), lambda cur: (locks.REST_REFRESH_LOCK_CLASS, 31, 2)),
    (lambda cur: locks.lock_problem(cur, None, Kind.REVOKED), lambda cur: _hashed(cur, "l1nda-problem:0:revoked")),
    (lambda cur: locks.lock_problem(cur, 12, Kind.REVOKED), lambda cur: _hashed(cur, "l1nda-problem:12:revoked")),
])
def test_transaction_locks_take_their_key_until_the_transaction_ends(database_url: str, take, expected) -> None:
    conn = db.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            take(cur)
            assert _held(cur) == {expected(cur)}
        with db.reading(conn) as cur:
            assert _held(cur) == set()
    finally:
        conn.close()


def _hashed(cur, name: str) -> tuple[int, int, int]:
    cur.execute("SELECT hashtextextended(%s, 0)", (name,))
    return _bigint(cur.fetchone()[0])


@pytest.mark.parametrize(("try_lock", "unlock", "expected"), [
    (locks.try_lock_outbox_drain, locks.unlock_outbox_drain, lambda cur: _hashed(cur, "l1nda-outbox-drain")),
    (locks.try_lock_webhook_delivery, locks.unlock_webhook_delivery, lambda cur: _bigint(0x4C314E4457)),
])
def test_session_locks_exclude_a_second_session_until_unlocked(database_url: str, try_lock, unlock, expected) -> None:
    first, second = db.connect(database_url), db.connect(database_url)
    try:
        with first, first.cursor() as cur:
            assert try_lock(cur)
        with first, first.cursor() as cur:
            assert _held(cur) == {expected(cur)}  # outlives the transaction
        with second, second.cursor() as cur:
            assert not try_lock(cur)
        with first, first.cursor() as cur:
            unlock(cur)
            assert _held(cur) == set()
        with second, second.cursor() as cur:
            assert try_lock(cur)
            unlock(cur)
    finally:
        first.close()
        second.close()


def test_the_keys_are_the_ones_every_release_takes() -> None:
    """Workers of two releases run side by side during a deploy: a changed key would let both into the same
    section. The values are pinned here, not compared with themselves."""
    assert (locks.SCHEMA_LOCK_KEY, locks.TOKEN_WRITE_LOCK_KEY, locks.WEBHOOK_DELIVERY_LOCK_KEY) == (
        0x4C314E444101, 0x4C314E444102, 0x4C314E4457)
    assert (locks.LINK_REQUEST_LOCK_CLASS, locks.REST_REFRESH_LOCK_CLASS) == (0x4C31, 18_007)
    assert (locks.OUTBOX_DRAIN_LOCK_NAME, locks.PROBLEM_LOCK_PREFIX) == ("l1nda-outbox-drain", "l1nda-problem")
