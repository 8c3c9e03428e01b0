"""Fixtures for the alerts tests: a migrated registry , a live SMTP server."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

from tests.l1nda_sync.alerts.harness import MailServer, World, test_settings


@pytest.fixture
def conn(registry_url: str) -> Iterator[Any]:
    connection = psycopg2.connect(registry_url, options="-c timezone=UTC")
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture(autouse=True)
def _quiet_smtp_server_log() -> None:
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command at INFO


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[MailServer]:
    server = MailServer().start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", server.connection_json)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def world(conn: Any, smtp: MailServer, fernet_keys: list[str]) -> World:
    return World(conn, test_settings())
