"""Fixtures for every l1nda_sync test: encryption keys and a migrated registry database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg2
import pytest
from cryptography.fernet import Fernet

from l1nda_sync.registry import schema


def _admin(server_url: str, sql: str) -> None:
    conn = psycopg2.connect(server_url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@pytest.fixture
def fernet_keys(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """One fresh Fernet key in L1NDA_FERNET_KEYS (newest first); tests that rotate set more themselves."""
    keys = [Fernet.generate_key().decode("ascii")]
    monkeypatch.setenv("L1NDA_FERNET_KEYS", ",".join(keys))
    return keys


@pytest.fixture(scope="session")
def registry_template(pg_server_url: str) -> Iterator[str]:
    """A database migrated to head once per session, to copy from (never connect to it in a test)."""
    from l1nda_sync.registry import db

    name = f"tpl_registry_{uuid.uuid4().hex[:12]}"
    _admin(pg_server_url, f'CREATE DATABASE "{name}"')
    try:
        conn = db.connect(urlsplit(pg_server_url)._replace(path=f"/{name}").geturl())
        try:
            schema.upgrade(conn)
        finally:
            conn.close()
        yield name
    finally:
        _admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def registry_url(database_url: str, pg_server_url: str, registry_template: str) -> str:
    """A fresh registry at the current schema version: the test's own database, recreated from the template.

    The root `database_url` fixture still drops it after the test.
    """
    name = urlsplit(database_url).path.lstrip("/")
    _admin(pg_server_url, f'DROP DATABASE "{name}"')
    _admin(pg_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{registry_template}"')
    return database_url
