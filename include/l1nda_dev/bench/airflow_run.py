"""Airflow's own cost per task: one real `airflow dags test nmbrs_token_sync` at a small size.

A small world of its own (default 100 tokens) is swept once in-process to bring every token to 'unchanged',
then swept twice more unchanged: once in-process (the engine's time) and once as a real DAG run (`airflow dags
test`, forced, mails held). The run's span (from Airflow's metadata) minus the in-process time, divided by the
run's task instances, is what Airflow adds per task (task start, client build, XCom, state bookkeeping) with
`dags test`, which runs the tasks one after another in one process.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from l1nda_dev.bench.figures import FIXED_TASKS
from l1nda_dev.bench.world import index_world, register_tokens, simulator_process, write_scenario
from l1nda_dev.postgres import create_database

REPO_ROOT = Path(__file__).resolve().parents[3]
DAG_ID = "nmbrs_token_sync"
AIRFLOW_DB = "l1nda_bench_airflow"



def _when(value: str) -> datetime:
    stamp = datetime.fromisoformat(value)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _airflow(args: list[str], env: dict[str, str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def airflow_figures(opts: Any, tmp: str, *, server_url: str, env: dict[str, str], sweep: Any) -> dict[str, Any]:
    """Run the Airflow part; `sweep(database_url, base_url, force)` runs one in-process sweep (raw result)."""
    from l1nda_sync.registry import db, schema
    from l1nda_sync.settings import Settings
    from nmbrs_sim.generate import generate_world

    home = Path(tmp) / "airflow"
    home.mkdir()
    scenario = generate_world(tokens=opts.airflow_tokens, seed=opts.seed + 1)
    world = index_world(scenario)
    path = Path(tmp) / "airflow-world.json"
    write_scenario(scenario, path)
    url = create_database(server_url, AIRFLOW_DB, replace=True)
    conn = db.connect(url)
    try:
        schema.upgrade(conn)
    finally:
        conn.close()
    register_tokens(url, Settings.load(env, use_airflow=False), world.logins)
    with simulator_process(path) as sim:
        admin = sim.admin()
        admin.set_latency(opts.latency_ms)
        sweep(url, sim.base_url, force=False)  # every token new: discovery, outside the measurement
        in_process = sweep(url, sim.base_url, force=True)
        airflow_env = {
            **os.environ, **env,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW_CONN_L1NDA_REGISTRY": url,
            "AIRFLOW_CONN_NMBRS_SOAP": json.dumps({"conn_type": "http", "host": sim.base_url}),
            "L1NDA_NMBRS_WSDL_CACHE_DIR": str(Path(tmp) / "wsdl"),
            "L1NDA_NMBRS_MAX_CONCURRENCY": str(opts.concurrency),
            "L1NDA_NMBRS_CALLS_PER_SECOND": str(opts.calls_per_second),
            "L1NDA_BATCH_SIZE": str(opts.airflow_batch_size),
        }
        for key in ("L1NDA_DATABASE_URL", "L1NDA_NMBRS_BASE_URL"):
            airflow_env.pop(key, None)
        t = time.perf_counter()
        migrate = _airflow(["db", "migrate"], airflow_env, timeout=300)
        if migrate.returncode != 0:
            return {"error": f"airflow db migrate failed: {migrate.stderr[-1500:]}"}
        _airflow(["pools", "set", "nmbrs_api", "8", "Nmbrs API calls"], airflow_env, timeout=120)
        setup = time.perf_counter() - t
        t = time.perf_counter()
        run = _airflow(["dags", "test", DAG_ID, "-c", json.dumps({"force": True, "send_mails": False})], airflow_env,
                       timeout=900)
        dag_seconds = time.perf_counter() - t
    if run.returncode != 0:
        return {"error": f"airflow dags test failed (exit {run.returncode}): {run.stderr[-1500:]}"}
    with sqlite3.connect(home / "airflow.db") as meta:
        run_id, run_start, run_end, run_state = meta.execute(
            "SELECT run_id, start_date, end_date, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1",
            (DAG_ID,)).fetchone()
        states = dict(meta.execute("SELECT state, count(*) FROM task_instance WHERE dag_id = ? AND run_id = ? "
                                   "GROUP BY state", (DAG_ID, run_id)).fetchall())
        durations = [r[0] for r in meta.execute(
            "SELECT duration FROM task_instance WHERE dag_id = ? AND run_id = ? AND duration IS NOT NULL",
            (DAG_ID, run_id)).fetchall()]
    instances = sum(states.values())
    batches = in_process["batches"]
    span = (_when(run_end) - _when(run_start)).total_seconds()
    overhead = span - in_process["seconds"]
    return {
        "tokens": opts.airflow_tokens,
        "batch_size": opts.airflow_batch_size,
        "batches": batches,
        "task_instances": instances,
        "task_instances_expected": batches + FIXED_TASKS,
        "task_states": states,
        "dag_run_state": run_state,
        "dag_test_seconds": round(dag_seconds, 2),  # the CLI's wall time, Airflow's start-up included
        "dag_run_seconds": round(span, 2),  # the run's own span (start to end, from the metadata database)
        "in_process_seconds": round(in_process["seconds"], 2),
        "airflow_overhead_seconds": round(overhead, 2),
        "overhead_per_task_instance_s": round(overhead / instances, 2) if instances else None,
        "task_duration_sum_s": round(sum(durations), 2),
        "setup_seconds": round(setup, 1),
        "note": "`airflow dags test` runs the tasks one after another in one process; a Celery deployment "
                "runs mapped batches in parallel, each in its own worker process",
    }
