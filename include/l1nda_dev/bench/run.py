"""The bench's phases: world -> registry -> first sweep -> unchanged sweep -> 1% churn -> churn sweep -> figures.

Each sweep runs in a fresh child process (spawned, so its peak RSS is the sweep's own, not this process's copy
of the generated world). Where a target is missed, the phase behind it is run once more under cProfile and the
top of the profile is printed; those replays are not counted in the figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import psycopg2

from l1nda_dev.bench import figures as fig
from l1nda_dev.bench.rest import RestLogin, consent_connections, rest_env, token_calls
from l1nda_dev.bench.round_trip import round_trip_ms
from l1nda_dev.bench.sweep import SweepJob, run_sweep
from l1nda_dev.bench.world import apply_churn, generate_to, register_tokens, request_links, simulator_process
from l1nda_dev.postgres import create_database
from nmbrs_sim.rest_clients import RestSettings

QUICK_TOKENS = 200
REST_CONNECTIONS = 500
QUICK_REST_CONNECTIONS = 50
DB_NAME = "l1nda_bench"


@dataclass(frozen=True)
class Options:
    """The bench's knobs: world size, simulated latency, concurrency, batching, churn."""

    tokens: int = 2000
    latency_ms: float = 50.0
    concurrency: int = 32
    batch_size: int = 100
    parallel_batches: int = 8
    calls_per_second: float = 100_000.0
    link_share: float = 0.1
    churn_share: float = 0.01
    seed: int = 0
    out: Path = Path("var/bench.json")
    profile_on_miss: bool = True
    airflow_tokens: int = 0
    airflow_batch_size: int = 10
    rest_connections: int = 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m l1nda_dev.bench", description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=2000, help="tokens in the generated world (default 2000)")
    p.add_argument("--quick", action="store_true", help=f"a quick try-out: {QUICK_TOKENS} tokens, no Airflow run")
    p.add_argument("--latency-ms", type=float, default=50.0, help="per-call latency in the simulator (default 50)")
    p.add_argument("--concurrency", type=int, default=32, help="Nmbrs calls in flight (default 32)")
    p.add_argument("--batch-size", type=int, default=100, help="tokens per check batch (default 100)")
    p.add_argument("--parallel-batches", type=int, default=8,
                   help="batches checked at once, sharing the calls in flight (default 8: the DAG's "
                        "max_active_tis_per_dagrun)")
    p.add_argument("--calls-per-second", type=float, default=100_000.0,
                   help="the client's process-wide rate limit (default 100000: off; fair use is 150/s per login)")
    p.add_argument("--link-share", type=float, default=0.1, help="share of companies with a wanted link (0.1)")
    p.add_argument("--churn-share", type=float, default=0.01, help="share of companies changed (0.01)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("var/bench.json"), help="where to write the figures")
    p.add_argument("--no-profile", action="store_true", help="do not replay a missed phase under cProfile")
    p.add_argument("--airflow-tokens", type=int, default=None,
                   help="tokens for the one real `airflow dags test` run (default 100; 0 = skip; --quick: 0)")
    p.add_argument("--airflow-batch-size", type=int, default=10,
                   help="batch size in the Airflow run, so that it maps several batches (default 10)")
    p.add_argument("--rest-connections", type=int, default=None,
                   help=f"REST connections for the REST sweep (default {REST_CONNECTIONS}; --quick: "
                        f"{QUICK_REST_CONNECTIONS}; 0 = skip)")
    return p


def options_from(args: argparse.Namespace) -> Options:
    airflow = args.airflow_tokens if args.airflow_tokens is not None else (0 if args.quick else 100)
    rest = (args.rest_connections if args.rest_connections is not None
            else QUICK_REST_CONNECTIONS if args.quick else REST_CONNECTIONS)
    return Options(tokens=QUICK_TOKENS if args.quick else args.tokens, latency_ms=args.latency_ms,
                   concurrency=args.concurrency, batch_size=args.batch_size, parallel_batches=args.parallel_batches,
                   calls_per_second=args.calls_per_second, link_share=args.link_share, churn_share=args.churn_share,
                   seed=args.seed, out=args.out, profile_on_miss=not args.no_profile, airflow_tokens=airflow,
                   airflow_batch_size=args.airflow_batch_size, rest_connections=rest)


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Bench:
    """One bench run: the world, the sweeps and the Airflow run, with the figures they give."""

    def __init__(self, opts: Options, *, database_url: str, sim_base_url: str, env: dict[str, str],
                 wsdl_cache: str, round_trip_ms: float | None = None) -> None:
        self.opts = opts
        self.round_trip_ms = round_trip_ms
        self.database_url = database_url
        self.env = env
        self.settings_overrides = {
            "nmbrs_base_url": sim_base_url, "nmbrs_max_concurrency": opts.concurrency,
            "nmbrs_calls_per_second": opts.calls_per_second, "batch_size": opts.batch_size,
            "nmbrs_wsdl_cache_dir": wsdl_cache, "nmbrs_read_timeout": 120.0, "nmbrs_call_deadline": 300.0,
        }

    def sweep(self, *, force: bool, profile: bool = False, token_ids: Sequence[int] = (),
              access_clock_offset_s: float = 0.0) -> dict[str, Any]:
        job = SweepJob(self.database_url, self.settings_overrides, self.env, force=force,
                       parallel_batches=self.opts.parallel_batches, profile=profile, token_ids=tuple(token_ids),
                       access_clock_offset_s=access_clock_offset_s)
        before = self.server_rows_written()
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            raw = pool.submit(run_sweep, job).result()
        raw["server_rows_written"] = self.server_rows_written() - before
        return raw

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        conn = psycopg2.connect(self.database_url)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall()
        finally:
            conn.close()

    def server_rows_written(self) -> int:
        """Rows inserted, updated and deleted in the registry, from pg_stat_user_tables.

        Backends flush their counters when they exit, so wait until the sweep's connections are gone first.
        """
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.query(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'")[0][0]:
            time.sleep(0.05)
        return int(self.query("SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables")
                   [0][0])

    def calls_of(self, run_id: int) -> list[int]:
        return [r[0] for r in self.query("SELECT calls FROM checks WHERE run_id = %s", run_id)]

    def figures_of(self, raw: dict[str, Any]) -> dict[str, Any]:
        return fig.sweep_figures(raw, self.calls_of(raw["run_id"]), latency_ms=self.opts.latency_ms,
                                 concurrency=self.opts.concurrency, round_trip_ms=self.round_trip_ms)



def run(opts: Options) -> dict[str, Any]:
    """Every phase; returns the figures (also written to opts.out)."""
    from cryptography.fernet import Fernet

    from l1nda_dev.postgres import embedded_postgres
    from l1nda_sync.registry import db, schema
    from l1nda_sync.settings import Settings
    started = time.perf_counter()
    rng = random.Random(opts.seed)  # noqa: S311 - a reproducible benchmark world, not a secret
    env = {"L1NDA_FERNET_KEYS": Fernet.generate_key().decode("ascii")}
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="l1nda-bench-") as tmp:
        t = time.perf_counter()
        scenario_path = Path(tmp) / "world.json"
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            generated = pool.submit(generate_to, scenario_path, tokens=opts.tokens, seed=opts.seed,
                                    rest_connections=opts.rest_connections).result()
        summary, world, rest_users = generated.summary, generated.index, generated.rest_users
        generator_rss = generated.peak_rss_mb
        del generated
        timings["generate"] = time.perf_counter() - t
        say(f"world: {summary['logins']} tokens ({summary['accountant_logins']} accountant), "
            f"{summary['debtors']} debtors, {summary['companies']} companies ({timings['generate']:.1f} s)")
        with embedded_postgres() as pg, simulator_process(scenario_path) as sim:
            admin = sim.admin()
            admin.set_latency(opts.latency_ms)
            round_trip = round_trip_ms(sim.base_url, world.logins[0]["username"], world.logins[0]["token"])
            say(f"simulator at {sim.root_url} (pid {sim.proc.pid}, CPU {sim.cpu}), latency {opts.latency_ms:g} ms "
                f"(a bare call's round trip: {round_trip:.2f} ms); PostgreSQL pid {pg.pid}")
            url = create_database(pg.url, DB_NAME, replace=True)
            conn = db.connect(url)
            try:
                schema.upgrade(conn)
            finally:
                conn.close()
            env.update(rest_env(sim.root_url))  # L1NDA's Nmbrs REST app; no SOAP sweep has a connection to check
            settings = Settings.load(env, use_airflow=False)
            t = time.perf_counter()
            token_ids = register_tokens(url, settings, world.logins)
            timings["register"] = time.perf_counter() - t
            linked = sorted(rng.sample(world.companies, round(len(world.companies) * opts.link_share)),
                            key=lambda c: c.id)
            t = time.perf_counter()
            request_links(url, linked)
            timings["links"] = time.perf_counter() - t
            say(f"registered {len(token_ids)} tokens ({timings['register']:.1f} s), requested {len(linked)} links "
                f"({timings['links']:.1f} s)")

            bench = Bench(opts, database_url=url, sim_base_url=sim.base_url, env=env,
                          wsdl_cache=str(Path(tmp) / "wsdl"), round_trip_ms=round_trip)
            raws: dict[str, dict[str, Any]] = {}
            say("first sweep (every token new: full discovery)...")
            raws["first"] = bench.sweep(force=False)
            say(f"first sweep: {raws['first']['seconds']:.1f} s, {raws['first']['calls']} calls")
            say("unchanged sweep (forced, nothing changed)...")
            raws["unchanged"] = bench.sweep(force=True)
            say(f"unchanged sweep: {raws['unchanged']['seconds']:.1f} s, {raws['unchanged']['calls']} calls")
            t = time.perf_counter()
            churn = apply_churn(admin, world, share=opts.churn_share, rng=rng, linked={c.id for c in linked})
            timings["churn"] = time.perf_counter() - t
            say(f"churn: {churn.ended} ended, {churn.moved} moved, {churn.added} added ({timings['churn']:.1f} s); "
                "churn sweep...")
            raws["churn"] = bench.sweep(force=True)
            say(f"churn sweep: {raws['churn']['seconds']:.1f} s, reconcile (finish) "
                f"{raws['churn']['finish_seconds']:.2f} s")

            sweeps = {name: bench.figures_of(raw) for name, raw in raws.items()}
            process_rss = {"simulator": peak_rss_mb(sim.proc.pid), "world generator": generator_rss,
                           "bench": peak_rss_mb()}
            result: dict[str, Any] = {
                "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
                "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                            "simulator_cpu": sim.cpu, "simulator_round_trip_ms": round(round_trip, 3)},
                "world": {"tokens": summary["logins"], "accountant_tokens": summary["accountant_logins"],
                          "debtors": summary["debtors"], "companies": summary["companies"], "links": len(linked)},
                "setup_seconds": {k: round(v, 2) for k, v in timings.items()},
                "sweeps": sweeps,
                "tokens_per_second": {n: s["tokens_per_second"] for n, s in sweeps.items()},
                "churn": {"share": opts.churn_share, **asdict(churn), "companies_changed": churn.total},
                "reconcile_seconds": sweeps["churn"]["finish_seconds"],
                "peak_rss_mb": max(s["peak_rss_mb"] for s in sweeps.values()),
                # The other processes of the bench (the sweeps' is above): the simulator holds the whole world.
                "process_peak_rss_mb": {k: round(v, 1) for k, v in process_rss.items() if v is not None},
                "task_instances_per_sweep": {
                    "computed": fig.task_instances(summary["logins"], opts.batch_size),
                    "formula": f"ceil(tokens / batch_size) + {fig.FIXED_TASKS}",
                    "batch_size": opts.batch_size,
                },
            }
            targets = fig.judge_targets(result, concurrency=opts.concurrency)
            result["targets"] = [t.to_dict() for t in targets]
            result["diagnosis"] = fig.diagnosis(result, latency_ms=opts.latency_ms, concurrency=opts.concurrency)
            result["profiles"] = {}
            if opts.profile_on_miss:
                result["profiles"] = replay_missed(bench, admin, world, targets, opts, rng,
                                                   linked={c.id for c in linked})
            if rest_users:
                result["rest"] = rest_sweeps(bench, admin, url, settings, rest_users)
                rest_targets = fig.rest_targets(result["rest"], concurrency=opts.concurrency)
                result["targets"] += [t.to_dict() for t in rest_targets]
                if opts.profile_on_miss and any(t.key == "rest_bound_ratio" and t.ok is False for t in rest_targets):
                    say("profiling an unchanged REST sweep (a missed target)...")
                    rest = result["rest"]
                    result["profiles"]["rest_unchanged"] = bench.sweep(
                        force=True, profile=True, token_ids=rest["connection_ids"],
                        access_clock_offset_s=rest["clock_advanced_s"])["profile"]
            if opts.airflow_tokens:
                from l1nda_dev.bench.airflow_run import airflow_figures

                def in_process(database_url: str, base_url: str, *, force: bool) -> dict[str, Any]:
                    other = Bench(replace(opts, batch_size=opts.airflow_batch_size), database_url=database_url,
                                  sim_base_url=base_url, env=env, wsdl_cache=str(Path(tmp) / "wsdl"))
                    return other.sweep(force=force)

                say(f"Airflow: one `airflow dags test` of {opts.airflow_tokens} tokens "
                    f"(batch size {opts.airflow_batch_size})...")
                result["airflow"] = airflow_figures(opts, tmp, server_url=pg.url, env=env, sweep=in_process)
                tis = result["task_instances_per_sweep"]
                tis["airflow_run"] = result["airflow"].get("task_instances")
                tis["airflow_run_expected"] = result["airflow"].get("task_instances_expected")
            else:
                result["airflow"] = {"skipped": "--airflow-tokens 0"}
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    return result


def rest_sweeps(bench: Bench, admin: Any, url: str, settings: Any, logins: list[RestLogin]) -> dict[str, Any]:
    """Consent every REST login (no latency while setting up), then sweep the connections three times through
    the check and apply path: first (new connections: matching), unchanged (within the hour: no refresh), and
    after the simulated clock passed the access tokens' expiry (the engine's access-token clock moved on as far:
    one refresh per connection)."""
    opts = bench.opts
    admin.set_latency(0)
    t = time.perf_counter()
    ids = consent_connections(url, settings, admin, logins)
    consent_seconds = time.perf_counter() - t
    admin.set_latency(opts.latency_ms)
    say(f"REST: {len(ids)} connections consented through the simulator's admin API and stored "
        f"({consent_seconds:.1f} s)")
    raws: dict[str, dict[str, Any]] = {}
    expiry = float(RestSettings().access_token_seconds) + 120  # the bench world keeps the default lifetime
    for name, offset in (("rest_first", 0.0), ("rest_unchanged", 0.0), ("rest_expired", expiry)):
        if offset:
            admin.advance_clock(offset)
        before = token_calls(admin)
        raw = bench.sweep(force=True, token_ids=ids, access_clock_offset_s=offset)
        raw["token_calls"] = token_calls(admin) - before
        raws[name] = raw
        say(f"REST sweep {name}: {raw['seconds']:.2f} s, {raw['calls']} API calls, {raw['token_calls']} token calls")
    sweeps = {name: fig.rest_sweep_figures(raw, bench.calls_of(raw["run_id"]), token_calls=raw["token_calls"],
                                           latency_ms=opts.latency_ms, concurrency=opts.concurrency)
              for name, raw in raws.items()}
    for name, raw in raws.items():
        sweeps[name]["links_moved_to_rest"] = raw.get("links_moved_to_rest", 0)
    return {"connections": len(ids), "connection_ids": ids, "consent_seconds": round(consent_seconds, 2),
            "clock_advanced_s": expiry, "sweeps": sweeps}


def replay_missed(bench: Bench, admin: Any, world: Any, targets: list[fig.Target], opts: Options,
                  rng: random.Random, *, linked: set[int]) -> dict[str, str]:
    """Run the phase behind each missed time or statement target again under cProfile; return the top 20."""
    missed = {t.key for t in targets if t.ok is False}
    profiles: dict[str, str] = {}
    if missed & {"bound_ratio", "unchanged_calls", "unchanged_writes"}:
        say("profiling an unchanged sweep (a missed target)...")
        profiles["unchanged"] = bench.sweep(force=True, profile=True)["profile"]
    if "cpu_per_call" in missed and "unchanged" not in profiles:
        say("profiling an unchanged sweep (CPU per call missed)...")
        profiles["unchanged"] = bench.sweep(force=True, profile=True)["profile"]
    if missed & {"reconcile", "churn_bound_ratio"}:
        say("profiling a churn sweep (a missed target)...")
        apply_churn(admin, world, share=opts.churn_share, rng=rng, linked=linked)
        profiles["churn"] = bench.sweep(force=True, profile=True)["profile"]
    return profiles


def peak_rss_mb(pid: int | None = None) -> float | None:
    """A process's peak resident set (VmHWM) in MB; this process's when `pid` is None; None where /proc has none."""
    try:
        status = Path(f"/proc/{pid or 'self'}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def main(argv: Sequence[str] | None = None) -> int:
    opts = options_from(build_parser().parse_args(argv))
    if opts.tokens < 1 or opts.concurrency < 1 or opts.batch_size < 1 or opts.latency_ms < 0:
        print("bench: --tokens, --concurrency and --batch-size must be >= 1, --latency-ms >= 0", file=sys.stderr)
        return 2
    result = run(opts)
    print()
    print(fig.table(result))
    if result["diagnosis"] and any(t["key"] in ("bound_ratio", "cpu_per_call") and t["verdict"] == "MISS"
                                   for t in result["targets"]):
        print(f"\nwhy: {result['diagnosis']}")
    for name, text in result["profiles"].items():
        print(f"\n== where the time goes: {name} sweep (cProfile, all threads, top 20) ==\n{text}")
    af = result["airflow"]
    if "error" in af:
        print(f"\nAirflow: {af['error']}")
    elif "skipped" not in af:
        print(f"\nAirflow (`airflow dags test`, {af['tokens']} tokens, batch size {af['batch_size']}): run "
              f"{af['dag_run_state']}, {af['task_instances']} task instances (expected {af['task_instances_expected']}"
              f" = {af['batches']} batches + {fig.FIXED_TASKS}), run span {af['dag_run_seconds']:.1f} s "
              f"(CLI {af['dag_test_seconds']:.1f} s) vs {af['in_process_seconds']:.2f} s in-process: "
              f"{af['overhead_per_task_instance_s']} s per task instance")
    print(f"\nwrote {opts.out} ({result['total_seconds']:.0f} s in all)")
    return 0
