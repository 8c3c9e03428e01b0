"""The REST side of the engine's stories: the simulator's REST API and identity server over HTTP, L1NDA's demo app,
consents made as the customer's browser would make them (`SimAdmin.authorize`), and the simulator's clock kept
equal to the story clock, so that access tokens fall due and refresh tokens expire without waiting.

`RestStoryWorld.consent(...)` is `connections start` then `connections finish` (the CLI in-process, as an operator
runs them); `consent_as(...)` stores a consent through `ConnectionStore` directly when the CLI's finish would refuse
it (a consent without the scope the probe needs). Runs go through the real `SyncEngine` with its REST wiring.
"""

from __future__ import annotations

import io
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import nmbrs_sim
from l1nda_sync.alerts.hooks import AlertHooks
from l1nda_sync.alerts.outbox import drain
from l1nda_sync.alerts.sweep import sweep
from l1nda_sync.engine.sync import SyncEngine
from l1nda_sync.masking import Secret
from l1nda_sync.nmbrs.limits import CallGate
from l1nda_sync.nmbrs.rest import oauth
from l1nda_sync.nmbrs.rest.client import RestClient
from l1nda_sync.nmbrs.rest.config import RestApp
from l1nda_sync.nmbrs.retry import RetryPolicy
from l1nda_sync.registry.connections import ConnectionStore, Consent
from l1nda_sync.settings import Settings
from nmbrs_sim.testing import RunningSim
from tests.l1nda_sync.engine.story_world import StoryWorld, story_settings

DEMO = Path(nmbrs_sim.__file__).parent / "scenarios" / "demo.yaml"
APP_ID = "PartnerApp_L1NDA_demo"
APP_SECRET = "Lx*7$demo-Secret$q9*"
APP_KEY = "30d05593229f49c18856be06ebc47b24"
CALLBACK = "http://127.0.0.1:8090/nmbrs/callback"
OPS = "ops@l1nda.example"
REST_ENV = {"API_BASE_URL": None, "IDENTITY_BASE_URL": None, "CLIENT_ID": APP_ID, "CLIENT_SECRET": APP_SECRET,
            "SUBSCRIPTION_KEY": APP_KEY, "REDIRECT_URI": CALLBACK}
# The demo's REST logins that may consent: username -> the debtor's SOAP companies they reach through REST.
LINDE = "hr@thuiszorg-delinde.example"
VANDIJK = "payroll@modehuis-vandijk.example"
BUSINESS = "salaris@bakkerij-degraaf.example"


@dataclass
class CliResult:
    """What one in-process `l1nda-sync` command did."""

    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Sleeps:
    """A `sleep` that records instead of sleeping (the REST client's backoff)."""

    waits: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def rest_env(sim: RunningSim) -> dict[str, str]:
    """The L1NDA_NMBRS_REST_* settings of the demo app on this simulator."""
    return {f"L1NDA_NMBRS_REST_{k}": v if v is not None else sim.root_url for k, v in REST_ENV.items()}


def demo_app(sim: RunningSim) -> RestApp:
    return RestApp(sim.root_url, sim.root_url, APP_ID, Secret(APP_SECRET), Secret(APP_KEY), None, CALLBACK,
                   ("offline_access", "company.info.read", "user.info.read"))


class RestStoryWorld(StoryWorld):
    """A `StoryWorld` whose engine also checks REST connections; `advance` moves the simulator's clock too."""

    cli: Callable[..., CliResult]
    sleeps: Sleeps

    def __post_init__(self) -> None:
        self.app = demo_app(self.sim)
        self.sleeps = Sleeps()
        self.rest_client = self.new_rest_client()
        super().__post_init__()
        self.sim.admin.set_clock(self.now.isoformat())

    def new_rest_client(self) -> RestClient:
        return RestClient(self.app, self.settings, retry=RetryPolicy(attempts=1, deadline=30.0),
                          gate=CallGate(10_000, 16), sleep=self.sleeps)

    def new_engine(self) -> SyncEngine:
        return SyncEngine(self.url, settings=self.settings, client=self.client, hooks=AlertHooks(self.settings),
                          clock=lambda: self.now, rest_app=self.app, rest_client=self.rest_client)

    def advance(self, delta: timedelta) -> None:
        super().advance(delta)
        self.sim.admin.advance_clock(delta.total_seconds())

    # -- consents --------------------------------------------------------------------------------------------
    def consent(self, username: str, *, customer: str, contact: str, label: str | None = None) -> int:
        """`connections start`, the customer's consent in Nmbrs, `connections finish`: the connection's id."""
        started = self.cli("connections", "start", "--customer", customer, "--contact", contact, "--language", "nl",
                           *(("--label", label) if label else ()), "--json")
        assert started.code == 0, started.err
        q = {k: v[0] for k, v in parse_qs(urlsplit(started.json["url"]).query).items()}
        callback = self.sim.admin.authorize(username, q["client_id"], q["redirect_uri"], q["scope"], q["state"],
                                            code_challenge=q["code_challenge"], code_challenge_method="S256")
        done = self.cli("connections", "finish", "--callback-url", callback, "--json")
        assert done.code == 0, done.err
        token_id = int(done.json["connection"]["token"]["id"]) if "connection" in done.json else None
        if token_id is None:
            token_id = self.query("SELECT max(id) FROM tokens WHERE kind = 'rest_connection'")[0][0]
        label_of = label or customer
        self.ids[label_of] = int(token_id)
        return int(token_id)

    def consent_as(self, username: str, *, customer: str, contact: str, scopes: tuple[str, ...]) -> int:
        """A consent granting only `scopes`, stored as `connections finish` stores one (ConnectionStore), without
        the CLI's probe (which would refuse it)."""
        request = oauth.start_authorization(self.app, scopes=scopes)
        q = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        location = self.sim.admin.authorize(username, q["client_id"], q["redirect_uri"], q["scope"], q["state"],
                                            code_challenge=q["code_challenge"], code_challenge_method="S256")
        callback = oauth.parse_callback(location)
        assert callback.code is not None
        grant = oauth.exchange_code(self.app, callback.code, request.code_verifier, now=self.now)
        store = ConnectionStore.from_settings(self.settings)
        conn = self.conn()
        try:
            with conn:
                store.start(conn, customer_ref=customer, contact=contact, language="nl", label=None,
                            state=request.state.reveal(), code_verifier=request.code_verifier.reveal(), actor="test")
                taken = store.take_authorization(conn, request.state.reveal())
                user_id = str(uuid.uuid5(uuid.NAMESPACE_URL, username))
                saved = store.save_connection(conn, taken, Consent(APP_ID, user_id, username, (), grant),
                                              actor="test")
        finally:
            conn.close()
        self.ids[customer] = saved.connection.id
        return saved.connection.id

    def consent_id(self, username: str) -> str:
        return next(c["id"] for c in self.sim.admin.consents() if c["username"] == username and c["active"])

    def refreshes(self) -> int:
        """Refreshes the identity server answered (since the calls were last cleared)."""
        return self.sim.admin.call_count(service="Identity", operation="token")

    # -- mails -----------------------------------------------------------------------------------------------
    def deliver(self) -> dict[str, int]:
        """The run pipeline's delivery step at the story's time: sweep, then drain to the SMTP server."""
        conn = self.conn()
        try:
            swept = sweep(conn, self.now, self.settings)
            drain(conn, self.now, self.settings)
            return swept
        finally:
            conn.close()

    def entities(self) -> dict[str, tuple[str, int, str]]:
        """uuid -> (match, key, number) of every REST entity."""
        return {u: (m, k, n) for u, m, k, n in self.query(
            "SELECT uuid::text, match, key, number FROM rest_entities ORDER BY uuid")}


def rest_story_settings(sim: RunningSim, **overrides: Any) -> Settings:
    base = story_settings(sim.base_url)
    return replace(base, ops_recipients=(OPS,), mail_from="L1NDA Nmbrs sync <no-reply@l1nda.example>",
                   default_language="en", smtp_conn_id="smtp_default", **overrides)


def iter_rest_world(sim: RunningSim, url: str, cli: Callable[..., CliResult], **overrides: Any
                    ) -> Iterator[RestStoryWorld]:
    world = RestStoryWorld(sim, url, rest_story_settings(sim, **overrides))
    world.cli = cli
    try:
        yield world
    finally:
        world.client.close()
        world.rest_client.close()


def in_process_cli(monkeypatch: Any, capsys: Any) -> Callable[..., CliResult]:
    """`l1nda-sync ...` in this process, stdout and stderr captured (the environment is the test's)."""
    from l1nda_sync.cli import main

    def invoke(*argv: str) -> CliResult:
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return invoke


