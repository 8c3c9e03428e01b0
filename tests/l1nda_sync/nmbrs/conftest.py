"""The demo world served by the Nmbrs simulator over real HTTP, and NmbrsClients pointed at it.

Each test gets its own client (own WSDL cache directory, own rate gate, a fast retry policy) and starts from the
demo world with no faults, no latency and an empty call log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import nmbrs_sim
from l1nda_sync.nmbrs import Credentials, NmbrsClient
from l1nda_sync.nmbrs.limits import CallGate
from l1nda_sync.nmbrs.retry import RetryPolicy
from l1nda_sync.settings import Settings
from nmbrs_sim.testing import RunningSim, running_simulator

DEMO = Path(nmbrs_sim.__file__).parent / "scenarios" / "demo.yaml"
ENV = "demo-accountants"


@dataclass(frozen=True)
class Login:
    username: str
    token: str

    def creds(self, domain: str | None = None) -> Credentials:
        return Credentials(self.username, self.token, domain)


MASTER_ALL = Login("master-all@demo-accountants.example", "3f1c0e7a9b2d4c6e8f0a1b2c3d4e5f60")
MASTER_HORECA = Login("master-horeca@demo-accountants.example", "9a8b7c6d5e4f30211203f4e5d6c7b8a9")
CLIENT_VANDIJK = Login("payroll@modehuis-vandijk.example", "0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a")
CLIENT_DELINDE = Login("hr@thuiszorg-delinde.example", "a1b2c3d4e5f60718293a4b5c6d7e8f90")
BUSINESS = Login("salaris@bakkerij-degraaf.example", "5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b")
ALL_LOGINS = (MASTER_ALL, MASTER_HORECA, CLIENT_VANDIJK, CLIENT_DELINDE, BUSINESS)

FAST_RETRY = RetryPolicy(attempts=3, deadline=20.0, base_delay=0.01, max_delay=0.05)


class WallClock:
    """A settable UTC clock for mapping ages."""

    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSim]:
    with running_simulator(DEMO) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh_world(request: pytest.FixtureRequest) -> Iterator[None]:
    if "sim" not in request.fixturenames:
        yield
        return
    running: RunningSim = request.getfixturevalue("sim")
    running.admin.clear_calls()
    yield
    running.admin.reset_world()
    running.admin.clear_faults()
    running.admin.set_latency(0)
    running.admin.clear_calls()


@pytest.fixture
def wall() -> WallClock:
    return WallClock()


@pytest.fixture
def make_client(sim: RunningSim, tmp_path: Path, wall: WallClock) -> Iterator[Callable[..., NmbrsClient]]:
    """make_client(retry=..., gate=..., **settings overrides) -> an NmbrsClient on the simulator."""
    made: list[NmbrsClient] = []

    def make(*, retry: RetryPolicy | None = FAST_RETRY, gate: CallGate | None = None, **overrides: Any
             ) -> NmbrsClient:
        values = {"nmbrs_base_url": sim.base_url, "nmbrs_wsdl_cache_dir": str(tmp_path / "wsdl"),
                  "nmbrs_read_timeout": 5.0, "nmbrs_connect_timeout": 2.0, **overrides}
        client = NmbrsClient(settings=Settings(**values), retry=retry, gate=gate or CallGate(10_000, 32),
                             wall_clock=wall)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., NmbrsClient]) -> NmbrsClient:
    return make_client()
