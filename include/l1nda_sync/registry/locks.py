"""Every PostgreSQL advisory lock the project takes, declared in one place.

No other module writes `pg_advisory_*` SQL (a test scans the package); each lock below is one named key (or
one named family of keys) and one function to take it, whose docstring says what it serialises.

Key spaces. PostgreSQL keeps two: one bigint key, and a pair of int4 keys; a key in one never conflicts with a
key in the other. The constant bigint keys below all read "L1ND…" in hex and are distinct (a test checks).
Two locks are keyed by a name hashed in PostgreSQL (`hashtextextended(name, 0)`, a bigint): the outbox drain
and the per-problem family. A hash cannot be proven distinct from the constants for every token id, only made
vanishingly unlikely to match (2^-64 per pair; the test checks the drain and a sample of problem keys). A
match would only make two unrelated critical sections wait for each other (or a drain skip one round as
busy); it never lets two holders of the same lock in. The values are those the project has always used, so
a worker still running the previous release takes the same locks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from psycopg2.extensions import cursor as Cursor

# Bigint key space: constant keys.
SCHEMA_LOCK_KEY: Final = 0x4C314E444101
"""Schema upgrades: one upgrader applies migrations at a time (transaction lock)."""

TOKEN_WRITE_LOCK_KEY: Final = 0x4C314E444102
"""Token writes that check or change fingerprints (add, replace, key rotation): one at a time (transaction lock)."""

WEBHOOK_DELIVERY_LOCK_KEY: Final = 0x4C314E4457
"""Webhook delivery: one deliverer at a time, so events leave in order (session lock)."""

SOAP_CUTOVER_LOCK_KEY: Final = 0x4C314E444103
"""The SOAP cutover: one cutover at a time (transaction lock); a second run waits, then finds nothing to retire."""

MIGRATION_CAMPAIGN_LOCK_KEY: Final = 0x4C314E444104
"""The migration campaign's pass: one at a time (transaction lock), so a (customer, contact) is invited once."""

REST_ENTITY_WRITES_LOCK_KEY: Final = 0x4C314E444105
"""Writers of REST entities (a check batch storing a company first seen or an open one decided, a consent's first
check, an operator's match): one at a time (transaction lock, taken before any entity row lock), so two writers
never wait on each other's rows; see finish_rest. A dry run never takes it (it would hold it until it ends)."""

# Bigint key space: keys hashed from a name by PostgreSQL.
OUTBOX_DRAIN_LOCK_NAME: Final = "l1nda-outbox-drain"
"""Outbox drain: one drain at a time (session lock, released also when a crashed drainer's connection ends)."""

PROBLEM_LOCK_PREFIX: Final = "l1nda-problem"
"""Problems: one writer at a time per (token, kind), so a problem is opened once (transaction lock)."""

# Int4-pair key space: (class, id).
LINK_REQUEST_LOCK_CLASS: Final = 0x4C31
"""Link requests: one request at a time per company (transaction lock, second key the company id)."""

REST_REFRESH_LOCK_CLASS: Final = 18_007
"""REST connection refreshes: one refresh at a time per connection, across processes (transaction lock, second
key the connection id); see registry/grant_store.py."""

CONSTANT_KEYS: Final = {
    "schema upgrade": SCHEMA_LOCK_KEY,
    "token write": TOKEN_WRITE_LOCK_KEY,
    "webhook delivery": WEBHOOK_DELIVERY_LOCK_KEY,
    "SOAP cutover": SOAP_CUTOVER_LOCK_KEY,
    "migration campaign": MIGRATION_CAMPAIGN_LOCK_KEY,
    "REST entity writes": REST_ENTITY_WRITES_LOCK_KEY,
}
HASHED_NAMES: Final = {"outbox drain": OUTBOX_DRAIN_LOCK_NAME}
PAIR_CLASSES: Final = {"link request": LINK_REQUEST_LOCK_CLASS, "REST refresh": REST_REFRESH_LOCK_CLASS}


def _xact_lock(cur: Cursor, key: int) -> None:
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (key,))


def lock_schema_upgrade(cur: Cursor) -> None:
    """Serialise schema upgrades until this transaction ends."""
    _xact_lock(cur, SCHEMA_LOCK_KEY)


def lock_token_writes(cur: Cursor) -> None:
    """Serialise token writes that check or change fingerprints (add, replace, key rotation) until this
    transaction ends."""
    _xact_lock(cur, TOKEN_WRITE_LOCK_KEY)


def lock_soap_cutover(cur: Cursor) -> None:
    """Serialise the SOAP cutover until this transaction ends."""
    _xact_lock(cur, SOAP_CUTOVER_LOCK_KEY)


def lock_migration_campaign(cur: Cursor) -> None:
    """Serialise the migration campaign's passes until this transaction ends."""
    _xact_lock(cur, MIGRATION_CAMPAIGN_LOCK_KEY)


def lock_rest_entity_writes(cur: Cursor) -> None:
    """Serialise writers of REST entities (check batches that store, consents, operators' matches) until this
    transaction ends. Taken before the writer locks any entity row; batches that only refresh known entities
    (rows locked with SKIP LOCKED, never waiting) run beside them."""
    _xact_lock(cur, REST_ENTITY_WRITES_LOCK_KEY)


def lock_link_requests(cur: Cursor, company_id: int) -> None:
    """Serialise link requests for one company until this transaction ends (the duplicate check and the
    insert cannot interleave)."""
    cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LINK_REQUEST_LOCK_CLASS, company_id))


def lock_rest_refresh(cur: Cursor, connection_id: int) -> None:
    """Serialise refreshes of one REST connection until this transaction ends (a rotated refresh token is
    used once: two refreshes at once would make one of them read as a withdrawn consent)."""
    cur.execute("SELECT pg_advisory_xact_lock(%s, %s::integer)", (REST_REFRESH_LOCK_CLASS, connection_id))


def problem_lock_name(token_id: int | None, kind: str) -> str:
    """The name hashed into the lock key of the problem (token, kind); None (the provider's) counts as 0."""
    return f"{PROBLEM_LOCK_PREFIX}:{token_id or 0}:{kind}"


def lock_problem(cur: Cursor, token_id: int | None, kind: str) -> None:
    """Serialise everyone who may open the problem (token, kind) until this transaction ends."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (problem_lock_name(token_id, kind),))


def _fetch_bool(cur: Cursor) -> bool:
    row = cur.fetchone()
    return bool(row and row[0])


def try_lock_outbox_drain(cur: Cursor) -> bool:
    """Take the outbox drain lock for this session if free; False when another drain holds it."""
    cur.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (OUTBOX_DRAIN_LOCK_NAME,))
    return _fetch_bool(cur)


def unlock_outbox_drain(cur: Cursor) -> None:
    """Release this session's outbox drain lock."""
    cur.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (OUTBOX_DRAIN_LOCK_NAME,))


def try_lock_webhook_delivery(cur: Cursor) -> bool:
    """Take the webhook delivery lock for this session if free; False when another deliverer holds it."""
    cur.execute("SELECT pg_try_advisory_lock(%s)", (WEBHOOK_DELIVERY_LOCK_KEY,))
    return _fetch_bool(cur)


def unlock_webhook_delivery(cur: Cursor) -> None:
    """Release this session's webhook delivery lock."""
    cur.execute("SELECT pg_advisory_unlock(%s)", (WEBHOOK_DELIVERY_LOCK_KEY,))
