"""Fixtures for the engine's integration stories: the demo world in the simulator and a fresh registry."""

from __future__ import annotations

from collections.abc import Iterator

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
