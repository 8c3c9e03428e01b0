"""One sweep in a child process: plan -> check every batch -> finish, exactly the calls the DAG's tasks make.

The child counts the database statements and the rows they wrote on its own connections (client side, so the
figures belong to the sweep alone), and reports its peak RSS. With `profile` it runs under cProfile in every
thread (the probes run in pool threads) and returns the top of the merged profile.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import re
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import psycopg2
import psycopg2.extensions

from l1nda_sync.settings import Settings

WRITE_VERBS = ("INSERT", "UPDATE", "DELETE")
WRITING_CTE = re.compile(r"\b(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)


class Counter:
    """Statements sent and rows written, by phase; shared by every thread of the child."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.phase = "plan"
        self.statements: dict[str, int] = {}
        self.rows: dict[str, int] = {}

    def count(self, sql: Any, rowcount: int) -> None:
        text = sql.decode() if isinstance(sql, bytes) else str(sql)
        verb = text.lstrip().split(None, 1)[0].upper() if text.strip() else ""
        with self.lock:
            self.statements[self.phase] = self.statements.get(self.phase, 0) + 1
            writes = verb in WRITE_VERBS or (verb == "WITH" and WRITING_CTE.search(text) is not None)
            if writes and rowcount > 0:
                self.rows[self.phase] = self.rows.get(self.phase, 0) + rowcount


COUNTER = Counter()


class CountingCursor(psycopg2.extensions.cursor):
    """A cursor that counts the statements and rows of each phase (COUNTER)."""

    def execute(self, query: Any, vars: Any = None) -> None:
        super().execute(query, vars)
        COUNTER.count(query, self.rowcount)

    def executemany(self, query: Any, vars_list: Any) -> None:
        super().executemany(query, vars_list)
        COUNTER.count(query, self.rowcount)


@dataclass(frozen=True)
class SweepJob:
    """What one sweep in a child process runs against: the registry, settings, options."""

    database_url: str
    settings: dict[str, Any]  # Settings fields that differ from the loaded defaults
    env: dict[str, str] = field(repr=False)  # L1NDA_* variables (the Fernet key)
    force: bool = False
    parallel_batches: int = 2
    profile: bool = False
    profile_rows: int = 20
    token_ids: tuple[int, ...] = ()  # only these (a REST sweep: the connections); naming them forces
    access_clock_offset_s: float = 0.0  # REST access tokens judged this much later (the simulated clock moved on)


def _engine(job: SweepJob) -> Any:
    from l1nda_sync.alerts.hooks import AlertHooks
    from l1nda_sync.engine.sync import SyncEngine, utcnow

    offset = timedelta(seconds=job.access_clock_offset_s)

    class CountingEngine(SyncEngine):
        def connect(self) -> Any:
            return psycopg2.connect(self.database_url, application_name="l1nda-bench",
                                    cursor_factory=CountingCursor)

        @property
        def rest(self) -> Any:
            """As the engine's, with the access tokens' clock moved on by the job's offset (when it has one)."""
            checking = super().rest
            if checking is None or not offset:
                return checking
            return replace(checking, clock=lambda: utcnow() + offset)

    settings = replace(Settings.load(job.env, use_airflow=False), **job.settings)
    return CountingEngine(job.database_url, settings=settings, hooks=AlertHooks(settings))


class _ThreadProfiles:
    """cProfile in every thread started while installed (pool threads), plus the calling thread."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self.lock = threading.Lock()

    def _start_in_thread(self, *_: Any) -> None:
        profile = cProfile.Profile()
        with self.lock:
            self.profiles.append(profile)
        profile.enable()  # replaces this hook for the rest of the thread

    def __enter__(self) -> _ThreadProfiles:
        threading.setprofile(self._start_in_thread)
        self._start_in_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        threading.setprofile(None)
        for profile in self.profiles:
            profile.disable()

    def top(self, rows: int) -> str:
        stats = pstats.Stats(self.profiles[0])
        for profile in self.profiles[1:]:
            stats.add(profile)
        out = io.StringIO()
        stats.stream = out  # type: ignore[attr-defined]
        stats.sort_stats("tottime").print_stats(rows)
        out.write("\n-- by cumulative time --\n")
        stats.sort_stats("cumulative").print_stats(rows)
        return out.getvalue()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _warm_up_rest(engine: Any) -> None:
    """What a REST check builds on first use (the app, the client, the grant store, the OAuth2 modules), so
    that the sweep's time is the sweep's, as the SOAP client's warm-up is kept out of it."""
    import l1nda_sync.engine.rest_resolution
    import l1nda_sync.nmbrs.rest.grants
    import l1nda_sync.nmbrs.rest.oauth
    import l1nda_sync.nmbrs.rest.probe  # noqa: F401

    engine.rest  # noqa: B018 - the property builds and keeps them


def run_sweep(job: SweepJob) -> dict[str, Any]:
    """Child-process entry point: returns times, counts and peak RSS (never a secret)."""
    engine = _engine(job)
    built = time.perf_counter()
    engine.client.warm_up()  # a per-process fixed cost (WSDLs from the disk cache), reported on its own
    if job.token_ids:  # a REST sweep: the app, its client and the grant store, built once per process
        _warm_up_rest(engine)
    built = time.perf_counter() - built
    profiles = _ThreadProfiles() if job.profile else None
    if profiles is not None:
        profiles.__enter__()
    try:
        started = time.perf_counter()
        COUNTER.phase = "plan"
        plan = engine.plan(force=job.force, token_ids=job.token_ids)
        planned = time.perf_counter()
        cpu_before = _cpu()
        COUNTER.phase = "check"
        calls = 0
        with ThreadPoolExecutor(max_workers=max(1, job.parallel_batches), thread_name_prefix="batch") as pool:
            for counts in pool.map(lambda batch: engine.check_batch(plan.run_id, batch), plan.batches):
                calls += counts["calls"]
        checked = time.perf_counter()
        check_cpu = _cpu() - cpu_before
        COUNTER.phase = "finish"
        report = engine.apply_checks(plan.run_id)
        finished = time.perf_counter()
    finally:
        if profiles is not None:
            profiles.__exit__()
    engine.client.close()
    return {
        "run_id": plan.run_id,
        "tokens": len(plan.token_ids),
        "batches": len(plan.batches),
        "calls": calls,
        "seconds": finished - started,
        "client_build_seconds": built,
        "check_cpu_seconds": check_cpu,
        "plan_seconds": planned - started,
        "check_seconds": checked - planned,
        "finish_seconds": finished - checked,
        "statements": dict(COUNTER.statements),
        "rows_written": dict(COUNTER.rows),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "outcomes": report.outcomes,
        "reach_gained": report.reach_gained,
        "reach_lost": report.reach_lost,
        "links_activated": report.links_activated,
        "links_failed_over": report.links_failed_over,
        "links_suspended": report.links_suspended,
        "links_moved_to_rest": getattr(report, "links_moved_to_rest", 0),
        "profile": profiles.top(job.profile_rows) if profiles is not None else None,
    }
