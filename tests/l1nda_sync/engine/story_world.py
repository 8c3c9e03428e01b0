"""A world for the engine's stories: the Nmbrs simulator over HTTP, a migrated registry, a settable clock.

`StoryWorld.run()` is one scheduled run through the real SyncEngine (plan -> check -> finish), exactly the code
the DAG's tasks call; only the clock is ours, so that confirmation spacing and backoff need no waiting.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2

from l1nda_sync.alerts.hooks import AlertHooks
from l1nda_sync.engine.sync import RunReport, SyncEngine
from l1nda_sync.nmbrs.client import NmbrsClient
from l1nda_sync.registry.db import fetch_all
from l1nda_sync.registry.links import request_link
from l1nda_sync.registry.tokens import NewToken, TokenStore
from l1nda_sync.settings import Settings
from nmbrs_sim.testing import RunningSim

DEMO_SCENARIO = Path(__file__).resolve().parents[3] / "include/nmbrs_sim/scenarios/demo.yaml"
MIN = timedelta(minutes=1)

# The demo scenario's logins: label -> (level, username, token)
LOGINS = {
    "all": ("accountant", "master-all@demo-accountants.example", "3f1c0e7a9b2d4c6e8f0a1b2c3d4e5f60"),
    "horeca": ("accountant", "master-horeca@demo-accountants.example", "9a8b7c6d5e4f30211203f4e5d6c7b8a9"),
    "vandijk": ("debtor", "payroll@modehuis-vandijk.example", "0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a"),
    "linde": ("debtor", "hr@thuiszorg-delinde.example", "a1b2c3d4e5f60718293a4b5c6d7e8f90"),
}


@dataclass
class StoryWorld:
    sim: RunningSim
    url: str
    settings: Settings
    # Tokens are added due at the database's now(); the story clock starts just after it.
    now: datetime = field(default_factory=lambda: datetime.now(UTC) + timedelta(seconds=5))
    ids: dict[str, int] = field(default_factory=dict)
    reports: list[RunReport] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = NmbrsClient(settings=self.settings, wall_clock=lambda: self.now)
        self.engine = self.new_engine()

    def new_engine(self) -> SyncEngine:
        """An engine as another worker would build it: own hooks, same client settings, the story clock."""
        return SyncEngine(self.url, settings=self.settings, client=self.client, hooks=AlertHooks(self.settings),
                          clock=lambda: self.now)

    # -- registry --------------------------------------------------------------------------------------------
    def conn(self) -> Any:
        return psycopg2.connect(self.url, options="-c timezone=UTC")

    def add_token(self, label: str, *, username: str | None = None, token: str | None = None,
                  level: str | None = None) -> int:
        self.ids[label] = register_token(self.url, label, settings=self.settings, username=username, token=token,
                                         level=level)
        return self.ids[label]

    def request(self, *company_ids: int, customer: str = "cust") -> list[int]:
        return request_links(self.url, company_ids, customer=customer)

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        return fetch_all(self.url, sql, *args)

    def state(self, label: str) -> str:
        return self.query("SELECT state FROM tokens WHERE id = %s", self.ids[label])[0][0]

    def link(self, company_id: int) -> tuple[str, int | None, str | None]:
        """(state, serving token label or None, reason) of the wanted link of a company."""
        state, token_id, reason = self.query(
            "SELECT state, token_id, reason FROM links WHERE wanted AND company_id = %s", company_id)[0]
        labels = {v: k for k, v in self.ids.items()}
        return state, labels.get(token_id), reason

    def problems(self, label: str, *, open_only: bool = True) -> set[str]:
        sql = "SELECT kind FROM problems WHERE token_id = %s"
        return {r[0] for r in self.query(sql + (" AND resolved_at IS NULL" if open_only else ""), self.ids[label])}

    def counts(self) -> dict[str, int]:
        """Row counts of every registry table: what a dry run must leave alone."""
        tables = [r[0] for r in self.query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
        return {t: self.query(f'SELECT count(*) FROM "{t}"')[0][0] for t in tables}

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """What a converged registry looks like, without ids and times that differ between equal histories."""
        return {
            "tokens": self.query("SELECT label, state, missing_operation, consecutive_invalid, consecutive_transient "
                                 "FROM tokens ORDER BY label"),
            "links": self.query("SELECT company_id, state, token_id, reason FROM links ORDER BY company_id"),
            "reach": self.query("SELECT token_id, company_id, debtor_id, lost_at IS NULL FROM reach_companies "
                                "ORDER BY token_id, company_id"),
            "problems": self.query("SELECT token_id, kind, stage, resolved_at IS NULL FROM problems "
                                   "ORDER BY token_id, kind"),
        }

    def reach(self, label: str) -> set[int]:
        return {r[0] for r in self.query(
            "SELECT company_id FROM reach_companies WHERE token_id = %s AND lost_at IS NULL", self.ids[label])}

    # -- time and runs ---------------------------------------------------------------------------------------
    def advance(self, delta: timedelta) -> None:
        self.now += delta

    def run(self, *, force: bool = False, token_ids: tuple[int, ...] = (), dry_run: bool = False) -> RunReport:
        report = self.engine.run_once(force=force, token_ids=token_ids, dry_run=dry_run)
        self.reports.append(report)
        return report


def register_token(url: str, label: str, *, settings: Settings | None = None, username: str | None = None,
                   token: str | None = None, level: str | None = None) -> int:
    """Register a token (a demo login's by its label in LOGINS, or the one given) with contact-<label>@..."""
    lvl, user, secret = LOGINS.get(label, (level, username, token))
    new = NewToken.validate(label=label, level=level or lvl, username=username or user, token=token or secret,
                            contacts=[f"contact-{label}@customer.example"])
    conn = psycopg2.connect(url)
    try:
        with conn:
            return TokenStore.from_settings(settings).add(conn, new, actor="test").id
    finally:
        conn.close()


def request_links(url: str, company_ids: Iterable[int], *, customer: str = "cust") -> list[int]:
    """Request a link for each company, in one transaction."""
    conn = psycopg2.connect(url)
    try:
        with conn:
            return [request_link(conn, customer_ref=customer, company_id=c, environment=None, actor="test").id
                    for c in company_ids]
    finally:
        conn.close()


def story_settings(base_url: str, **overrides: Any) -> Settings:
    settings = Settings.load(use_airflow=False)
    return replace(settings, nmbrs_base_url=base_url, nmbrs_retry_attempts=1, **overrides)


def iter_world(sim: RunningSim, url: str, **overrides: Any) -> Iterator[StoryWorld]:
    world = StoryWorld(sim, url, story_settings(sim.base_url, **overrides))
    try:
        yield world
    finally:
        world.client.close()
