"""The bench's world: a generated scenario served by `nmbrs-sim serve` in its own process, a migrated registry
with every login registered, wanted links for a sample of companies, and churn applied through the admin API."""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg2

from l1nda_dev.bench.rest import RestLogin, add_rest
from nmbrs_sim.admin import SimAdmin
from nmbrs_sim.catalog import PATH_PREFIX

if TYPE_CHECKING:
    from l1nda_sync.settings import Settings

STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Company:
    """A company of the bench world, with its debtor and environment."""

    id: int
    debtor_id: int
    environment: str


@dataclass
class WorldIndex:
    """What the bench needs from the scenario: logins to register, companies to link and churn."""

    logins: list[dict[str, Any]]
    companies: list[Company]
    debtors_by_env: dict[str, list[int]] = field(default_factory=dict)
    max_company_id: int = 0


def index_world(scenario: dict[str, Any]) -> WorldIndex:
    logins: list[dict[str, Any]] = []
    companies: list[Company] = []
    debtors_by_env: dict[str, list[int]] = {}
    for env in scenario["environments"]:
        sub = env["sub_domain"]
        for debtor in env.get("debtors") or []:
            debtors_by_env.setdefault(sub, []).append(debtor["id"])
            companies.extend(Company(c["id"], debtor["id"], sub) for c in debtor.get("companies") or [])
        logins.extend({**login, "environment": sub} for login in env.get("logins") or [])
    return WorldIndex(logins, companies, debtors_by_env, max((c.id for c in companies), default=0))


@dataclass
class SimProcess:
    """The simulator running in a child process, and where it listens."""

    proc: subprocess.Popen[str]
    root_url: str
    cpu: int | None

    @property
    def base_url(self) -> str:
        return f"{self.root_url}{PATH_PREFIX}"

    def admin(self) -> SimAdmin:
        return SimAdmin(self.root_url, timeout=60.0)


@contextlib.contextmanager
def simulator_process(scenario_path: Path) -> Iterator[SimProcess]:
    """`nmbrs-sim serve` on a free port; on a machine with more than one CPU it gets a core of its own and this
    process (and the sweep children it starts) the others, so the simulator never competes for the engine's GIL.
    """
    proc = subprocess.Popen([sys.executable, "-m", "nmbrs_sim.cli", "serve", "--scenario", str(scenario_path),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    own_cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        words = [w for w in line.split() if w.startswith("http://")]
        if not words:
            proc.kill()
            _, err = proc.communicate(timeout=STOP_TIMEOUT_S)
            raise RuntimeError(f"the simulator did not start: {line.strip()} {err.strip()[-2000:]}")
        root = words[0].split(PATH_PREFIX)[0] if PATH_PREFIX in words[0] else words[0].rstrip("/")
        cpu = None
        if len(own_cpus) > 1:
            cpu = min(own_cpus)
            os.sched_setaffinity(proc.pid, {cpu})
            os.sched_setaffinity(0, own_cpus - {cpu})
        yield SimProcess(proc, root, cpu)
    finally:
        if len(own_cpus) > 1:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, own_cpus)
        proc.terminate()
        try:
            proc.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def write_scenario(scenario: dict[str, Any], path: Path) -> None:
    """Streamed to the file (no copy of the whole text in memory: 60 MB at 20,000 tokens)."""
    with path.open("w", encoding="utf-8") as out:
        json.dump(scenario, out, separators=(",", ":"))


@dataclass(frozen=True)
class GeneratedWorld:
    """What the bench keeps of a generated world; the scenario itself is only in the file the simulator loads."""

    summary: dict[str, int]
    index: WorldIndex
    rest_users: list[RestLogin]
    peak_rss_mb: float  # the generating process's


def generate_to(path: Path, *, tokens: int, seed: int, rest_connections: int) -> GeneratedWorld:
    """Generate the world, add the REST logins, write it to `path`; run in a child process (see `run`), so the
    whole scenario tree (about 280 MB at 20,000 tokens) never sits in the bench's own process."""
    from nmbrs_sim.generate import generate_world, summarize

    scenario = generate_world(tokens=tokens, seed=seed)
    rest_users = add_rest(scenario, rest_connections, random.Random(seed + 18))  # noqa: S311 - a reproducible world
    write_scenario(scenario, path)
    return GeneratedWorld(summarize(scenario), index_world(scenario), rest_users,
                          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def register_tokens(database_url: str, settings: Settings, logins: list[dict[str, Any]]) -> list[int]:
    """Every login through `NewToken.validate` + `TokenStore.add`, in one transaction (one round trip each)."""
    from l1nda_sync.registry.tokens import NewToken, TokenStore

    store = TokenStore.from_settings(settings)
    ids: list[int] = []
    conn = psycopg2.connect(database_url, options="-c timezone=UTC")
    try:
        with conn:
            for n, login in enumerate(logins):
                level = "accountant" if login["level"] == "accountant" else "debtor"
                new = NewToken.validate(label=f"bench {n + 1:05d} {login['environment']}", level=level,
                                        username=login["username"], token=login["token"],
                                        contacts=[f"bench-{n + 1:05d}@customer.example"])
                ids.append(store.add(conn, new, actor="bench").id)
    finally:
        conn.close()
    return ids


def request_links(database_url: str, companies: list[Company], *, chunk: int = 500) -> int:
    """A wanted link per company, committed in chunks (each request holds an advisory lock until commit)."""
    from l1nda_sync.registry.links import request_link

    conn = psycopg2.connect(database_url, options="-c timezone=UTC")
    try:
        for start in range(0, len(companies), chunk):
            with conn:
                for c in companies[start : start + chunk]:
                    request_link(conn, customer_ref=f"bench-customer-{c.id}", company_id=c.id, environment=None,
                                 actor="bench")
    finally:
        conn.close()
    return len(companies)


@dataclass(frozen=True)
class Churn:
    """How many companies a churn step ended, moved and added."""

    ended: int
    moved: int
    added: int

    @property
    def total(self) -> int:
        return self.ended + self.moved + self.added


def apply_churn(admin: SimAdmin, world: WorldIndex, *, share: float, rng: random.Random,
                linked: set[int]) -> Churn:
    """Change `share` of the companies: a third end, a third move to another debtor of the same office, a third
    are new companies of an existing debtor. Half of the ended and moved ones are linked companies, so the
    reconcile has links to suspend or fail over."""
    count = max(1, round(len(world.companies) * share))
    thirds = [count // 3, count // 3, count - 2 * (count // 3)]
    linked_pool = [c for c in world.companies if c.id in linked]
    other_pool = [c for c in world.companies if c.id not in linked]
    rng.shuffle(linked_pool)
    rng.shuffle(other_pool)
    picked: list[Company] = []
    for n in range(thirds[0] + thirds[1]):
        pool = linked_pool if (n % 2 == 0 and linked_pool) or not other_pool else other_pool
        picked.append(pool.pop())
    ended_ids: set[int] = set()
    moved = 0
    for n, company in enumerate(picked):
        others = [d for d in world.debtors_by_env[company.environment] if d != company.debtor_id]
        if n >= thirds[0] and others:
            admin.move_company(company.id, rng.choice(others))
            moved += 1
        else:
            admin.end_company(company.id)
            ended_ids.add(company.id)
    added = 0
    envs = sorted(world.debtors_by_env)
    for _ in range(thirds[2]):
        world.max_company_id += 1
        debtor = rng.choice(world.debtors_by_env[rng.choice(envs)])
        admin.add_company(debtor, id=world.max_company_id, number=world.max_company_id % 1_000_000,
                          name=f"Churn {world.max_company_id} B.V.")
        added += 1
    world.companies = [c for c in world.companies if c.id not in ended_ids]
    return Churn(len(ended_ids), moved, added)
