"""Fixtures for the engine's integration stories: the demo world in the simulator and a fresh registry."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg2
import pytest

from l1nda_sync.registry import db
from nmbrs_sim.testing import RunningSim, running_simulator
from tests.l1nda_sync.engine.story_world import DEMO_SCENARIO, StoryWorld, iter_world


@pytest.fixture
def sim() -> Iterator[RunningSim]:
    with running_simulator(DEMO_SCENARIO) as running:
        yield running


@pytest.fixture
def world(sim: RunningSim, registry_url: str, fernet_keys: list[str], tmp_path: object,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[StoryWorld]:
    monkeypatch.setenv("L1NDA_NMBRS_WSDL_CACHE_DIR", str(tmp_path))
    yield from iter_world(sim, registry_url)


@pytest.fixture
def conn(registry_url: str) -> Iterator[db.Connection]:
    """A connection to a fresh registry, closed after the test."""
    c = db.connect(registry_url)
    yield c
    c.close()


@pytest.fixture
def second_registry_url(pg_server_url: str, registry_template: str) -> Iterator[str]:
    """Another fresh registry next to `registry_url`."""
    name = f"test_second_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(pg_server_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{registry_template}"')
        yield urlsplit(pg_server_url)._replace(path=f"/{name}").geturl()
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


@pytest.fixture
def registries(registry_url: str, second_registry_url: str) -> Iterator[tuple[Any, Any]]:
    bulk, single = db.connect(registry_url), db.connect(second_registry_url)
    try:
        yield bulk, single
    finally:
        bulk.close()
        single.close()
