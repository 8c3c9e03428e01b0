from __future__ import annotations

import threading
import time

import psycopg2
import pytest

from l1nda_sync.registry import db, locks, schema
from l1nda_sync.registry.schema import Migration, SchemaError

TABLES = {
    "schema_version", "tokens", "runs", "checks", "reach_debtors", "reach_companies", "reach_events", "links",
    "link_events", "problems", "outbox", "token_events", "webhook_outbox", "registry_keys", "problem_kinds",
    "rest_connections", "rest_authorizations", "rest_entities", "invitations", "customer_contacts",
}


def _shape(conn) -> dict[str, list]:
    """Everything an upgrade could change: columns, constraints, indexes, recorded versions."""
    with db.reading(conn) as cur:
        cur.execute("""SELECT table_name, column_name, data_type, is_nullable, column_default
                       FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2""")
        columns = cur.fetchall()
        cur.execute("""SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
                       WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2""")
        constraints = cur.fetchall()
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1")
        indexes = cur.fetchall()
        cur.execute("SELECT to_regclass('schema_version') IS NOT NULL")
        versions = []
        if cur.fetchone()[0]:
            cur.execute("SELECT version, name, checksum, applied_at FROM schema_version ORDER BY version")
            versions = cur.fetchall()
    return {"columns": columns, "constraints": constraints, "indexes": indexes, "versions": versions}


def test_empty_database_to_head_then_a_second_upgrade_changes_nothing(database_url: str) -> None:
    conn = db.connect(database_url)
    try:
        assert schema.current_version(conn) == 0
        applied = schema.upgrade(conn)
        assert [m.filename for m in applied] == [m.filename for m in schema.migrations()]
        assert schema.current_version(conn) == schema.head_version()
        first = _shape(conn)
        assert {t for t, *_ in first["columns"]} == TABLES
        assert schema.upgrade(conn) == []
        assert _shape(conn) == first
        assert schema.status(conn).up_to_date
        assert schema.require_current(conn) == schema.head_version()
    finally:
        conn.close()


def test_require_current_names_both_versions_and_the_command(database_url: str) -> None:
    conn = db.connect(database_url)
    try:
        with pytest.raises(SchemaError) as behind:
            schema.require_current(conn)
        message = str(behind.value)
        assert "version 0" in message
        assert f"version {schema.head_version()}" in message
        assert "l1nda-sync db upgrade" in message
        assert "0001_initial.sql" in message
        assert (behind.value.current, behind.value.expected) == (0, schema.head_version())

        schema.upgrade(conn)
        with db.transaction(conn) as cur:
            cur.execute("INSERT INTO schema_version (version, name, checksum) VALUES (99, 'future', 'x')")
        with pytest.raises(SchemaError, match="version 99, newer than this l1nda-sync") as ahead:
            schema.require_current(conn)
        assert ahead.value.current == 99
        with pytest.raises(SchemaError, match="newer"):
            schema.upgrade(conn)
    finally:
        conn.close()


def test_require_current_leaves_no_transaction_open(registry_url: str) -> None:
    conn = db.connect(registry_url)
    try:
        schema.require_current(conn)
        assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    finally:
        conn.close()


def test_status_lists_pending_then_applied_and_notices_an_edited_file(database_url: str) -> None:
    conn = db.connect(database_url)
    try:
        before = schema.status(conn)
        assert before.current == 0
        assert not before.up_to_date
        assert [m.version for m in before.pending] == [m.version for m in schema.migrations()]
        schema.upgrade(conn)
        after = schema.status(conn)
        assert after.pending == ()
        assert [a.modified for a in after.applied] == [False] * len(after.applied)
        with db.transaction(conn) as cur:
            cur.execute("UPDATE schema_version SET checksum = 'edited' WHERE version = 1")
        assert schema.status(conn).applied[0].modified is True
    finally:
        conn.close()


def test_a_failing_migration_leaves_nothing_behind(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = schema.migrations()
    broken = Migration(len(real) + 1, "broken", "CREATE TABLE half_done (id int); SELECT 1 / 0;")
    monkeypatch.setattr(schema, "migrations", lambda: (*real, broken))
    conn = db.connect(database_url)
    try:
        with pytest.raises(psycopg2.errors.DivisionByZero):
            schema.upgrade(conn)
        assert schema.current_version(conn) == len(real)  # the good ones stay applied
        with db.reading(conn) as cur:
            cur.execute("SELECT to_regclass('half_done')")
            assert cur.fetchone()[0] is None
    finally:
        conn.close()


def _waiting_for_schema_lock(conn) -> int:
    with db.reading(conn) as cur:
        cur.execute("""SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                       AND ((classid::bigint << 32) | objid::bigint) = %s""", (locks.SCHEMA_LOCK_KEY,))
        return int(cur.fetchone()[0])


def test_two_upgraders_at_once_apply_each_migration_once(database_url: str) -> None:
    holder = db.connect(database_url)
    results: dict[int, object] = {}

    def upgrader(n: int) -> None:
        conn = db.connect(database_url)
        try:
            results[n] = [m.version for m in schema.upgrade(conn)]
        except Exception as exc:  # reported below
            results[n] = exc
        finally:
            conn.close()

    try:
        with holder.cursor() as cur:  # hold the upgrade lock until both upgraders queue behind it
            cur.execute("SELECT pg_advisory_lock(%s)", (locks.SCHEMA_LOCK_KEY,))
        holder.commit()
        threads = [threading.Thread(target=upgrader, args=(n,)) for n in (1, 2)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while _waiting_for_schema_lock(holder) < 2:
            assert time.monotonic() < deadline, "upgraders never queued on the schema lock"
            time.sleep(0.01)
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (locks.SCHEMA_LOCK_KEY,))
        holder.commit()
        for t in threads:
            t.join(30)
        heads = list(range(1, schema.head_version() + 1))
        assert all(isinstance(r, list) for r in results.values()), results
        # Each migration is its own transaction under the lock, so the two may share the work between them
        # (which one takes which is a race); what matters is that every migration is applied exactly once.
        applied = [v for r in results.values() for v in r]  # type: ignore[attr-defined]
        assert sorted(applied) == heads
        assert schema.current_version(holder) == schema.head_version()
    finally:
        holder.close()


def test_migration_files_are_numbered_without_gaps() -> None:
    versions = [m.version for m in schema.migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert all(m.sql.strip() for m in schema.migrations())
