"""Connecting to the registry: one place that turns a URL into a psycopg2 connection with sane defaults."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions

from l1nda_sync.masking import redact_url
from l1nda_sync.registry.errors import ConfigError, RegistryError, RegistryUnavailable

APPLICATION_NAME = "l1nda-sync"


def connect(url: str, *, connect_timeout: int = 10) -> psycopg2.extensions.connection:
    """A connection in UTC; an unreachable server raises RegistryUnavailable naming the (redacted) URL."""
    try:
        return psycopg2.connect(
            url, application_name=APPLICATION_NAME, connect_timeout=connect_timeout, options="-c timezone=UTC"
        )
    except psycopg2.ProgrammingError:  # "invalid dsn: ..." quotes the whole URL, password included
        raise ConfigError(
            f"the registry URL {redact_url(url)} is not a PostgreSQL URL; set L1NDA_DATABASE_URL (or --database-url) "
            "to postgresql://user:password@host:5432/database"
        ) from None
    except psycopg2.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RegistryUnavailable(
            f"cannot connect to the registry at {redact_url(url)}: {first_line}; "
            "check L1NDA_DATABASE_URL (or --database-url) and that the server is running"
        ) from None


Connection = psycopg2.extensions.connection
Cursor = psycopg2.extensions.cursor


@contextmanager
def transaction(conn: Connection) -> Iterator[Cursor]:
    """One transaction with a cursor: committed when the block ends, rolled back on any exception."""
    with conn, conn.cursor() as cur:
        yield cur


@contextmanager
def reading(conn: Connection) -> Iterator[Cursor]:
    """A cursor for reads that ends the transaction it opened, and leaves a caller's open transaction alone."""
    idle = conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        if idle:
            conn.rollback()


def fetch_one(cur: Cursor) -> tuple[Any, ...]:
    """The row of a statement that always returns one (an aggregate, INSERT ... RETURNING, a row held locked)."""
    row = cur.fetchone()
    if row is None:
        raise RegistryError("the registry returned no row where one was certain; is another tool changing it?")
    return row


def fetch_all(url: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """Run one statement on a short-lived connection and return its rows (for reports, the demo and tests)."""
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description is not None else []
    finally:
        conn.close()
