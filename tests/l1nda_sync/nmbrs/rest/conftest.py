"""The demo world served by the simulator over real HTTP, L1NDA's demo REST app on it, and consents made through
the simulator's admin API (`POST /_sim/rest/authorize`) exactly as a customer's browser would make them.

Time is the simulator's clock (`SimClock`): grants are dated with it and tests move it instead of sleeping. Every
client gets its own rate gate and a retry policy whose sleeps are recorded, not slept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import nmbrs_sim
from l1nda_sync.masking import Secret
from l1nda_sync.nmbrs.limits import CallGate
from l1nda_sync.nmbrs.rest import oauth
from l1nda_sync.nmbrs.rest.client import RestClient
from l1nda_sync.nmbrs.rest.config import RestApp
from l1nda_sync.nmbrs.rest.grants import InMemoryGrantStore, StoredGrant, access_token
from l1nda_sync.nmbrs.rest.oauth import Grant
from l1nda_sync.nmbrs.rest.records import RestCredentials
from l1nda_sync.nmbrs.retry import RetryPolicy
from l1nda_sync.settings import Settings
from nmbrs_sim.testing import RunningSim, running_simulator

DEMO = Path(nmbrs_sim.__file__).parent / "scenarios" / "demo.yaml"
APP_ID = "PartnerApp_L1NDA_demo"
APP_SECRET = "Lx*7$demo-Secret$q9*"
APP_KEY = "30d05593229f49c18856be06ebc47b24"
APP_KEY_2 = "7c1e4a2b9d8f46e0a5b3c2d1e0f9a8b7"
CALLBACK = "http://127.0.0.1:8090/nmbrs/callback"
NARROW_ID = "PartnerApp_Narrow_test"
NARROW_SECRET = "narrow*Secret$2027"
NARROW_KEY = "5a4b3c2d1e0f49a8b7c6d5e4f3a2b1c0"
NARROW_CALLBACK = "http://127.0.0.1:8090/narrow/callback"
BUSINESS = "salaris@bakkerij-degraaf.example"
BUSINESS_ENV = "bakkerij-degraaf"
VANDIJK = "payroll@modehuis-vandijk.example"
FAST_RETRY = RetryPolicy(attempts=4, deadline=60.0, base_delay=0.01, max_delay=0.05)


def rest_app(sim: RunningSim, *, client_id: str = APP_ID, secret: str = APP_SECRET, key: str = APP_KEY,
             secondary: str | None = APP_KEY_2, redirect_uri: str = CALLBACK,
             scopes: tuple[str, ...] = ("offline_access", "company.info.read", "user.info.read")) -> RestApp:
    return RestApp(sim.root_url, sim.root_url, client_id, Secret(secret), Secret(key),
                   Secret(secondary) if secondary else None, redirect_uri, scopes)


class SimClock:
    """The simulator's clock as a datetime (what grants are dated with)."""

    def __init__(self, sim: RunningSim) -> None:
        self.sim = sim

    def __call__(self) -> datetime:
        return datetime.fromisoformat(str(self.sim.admin.clock()["now"]).replace("Z", "+00:00"))

    def advance(self, seconds: float) -> None:
        self.sim.admin.advance_clock(seconds)


@dataclass
class Sleeps:
    """A `sleep` that records instead of sleeping."""

    waits: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


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
    running.admin.reset_world()  # also forgets consents and tokens and puts the clock back
    running.admin.clear_faults()
    running.admin.clear_calls()


@pytest.fixture
def app(sim: RunningSim) -> RestApp:
    return rest_app(sim)


@pytest.fixture
def clock(sim: RunningSim) -> SimClock:
    return SimClock(sim)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(sleeps: Sleeps) -> Iterator[Callable[..., RestClient]]:
    made: list[RestClient] = []

    def make(app: RestApp, *, retry: RetryPolicy = FAST_RETRY, **overrides: Any) -> RestClient:
        settings = Settings(nmbrs_read_timeout=5.0, nmbrs_connect_timeout=2.0, **overrides)
        client = RestClient(app, settings, retry=retry, gate=CallGate(10_000, 16), sleep=sleeps)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def consent(sim: RunningSim, app: RestApp, username: str, now: datetime, *, scopes: tuple[str, ...] | None = None
            ) -> Grant:
    """The whole consent flow: the authorize URL, the customer's 'allow' (admin API), the callback, the code."""
    request = oauth.start_authorization(app, scopes=scopes)
    query = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
    location = sim.admin.authorize(username, query["client_id"], query["redirect_uri"], query["scope"],
                                   query["state"], code_challenge=query["code_challenge"],
                                   code_challenge_method=query["code_challenge_method"])
    callback = oauth.parse_callback(location)
    assert callback.state == request.state
    assert callback.code is not None
    return oauth.exchange_code(app, callback.code, request.code_verifier, now=now)


@dataclass
class Connection:
    """A consented connection in an in-memory store, and its credentials for the client (dated by `clock`)."""

    app: RestApp
    store: InMemoryGrantStore
    clock: Callable[[], datetime]
    scopes: tuple[str, ...] | None
    connection_id: int = 1

    def access(self, force: bool) -> Secret:
        return access_token(self.app, self.store, self.connection_id, now=self.clock(), force_refresh=force)

    @property
    def credentials(self) -> RestCredentials:
        return RestCredentials(self.connection_id, self.access, self.scopes)


def connect(sim: RunningSim, app: RestApp, username: str, clock: Callable[[], datetime], *,
            scopes: tuple[str, ...] | None = None) -> Connection:
    grant = consent(sim, app, username, clock(), scopes=scopes)
    store = InMemoryGrantStore()
    store.put(1, StoredGrant(grant.refresh_token, grant.access_token, grant.expires_at, 0))
    return Connection(app, store, clock, grant.scopes)


def consent_id(sim: RunningSim, username: str) -> str:
    (row,) = [c for c in sim.admin.consents() if c["username"] == username and c["active"]]
    return str(row["id"])
