"""`make airflow EXECUTOR=celery` end to end: compose's shape on one machine runs nmbrs_token_sync for real.

The stack is started as `make airflow EXECUTOR=celery` starts it (`python -m l1nda_dev.demo --airflow --executor
celery`, free ports, a temporary var/): Airflow's metadata on the embedded PostgreSQL, the CeleryExecutor on kombu's
SQLAlchemy transport, two Celery workers (w1@host, w2@host), scheduler, DAG processor, triggerer and API server,
against the Nmbrs simulator. After the first scheduled run, the pool nmbrs_api gets 3 slots (the workers have 2
each), the batch size is 1 (Airflow Variable l1nda_batch_size: one check task per token), the simulator answers
slowly, and a forced run is triggered; once a
check task runs, its worker's whole process group gets SIGKILL (a container killed). The run must still succeed:
Airflow fails the orphaned try on its missing heartbeat and retries it, the demo starts the worker again (compose's
`restart: always`), the retry converges, and no mail goes out twice. Every process started carries a marker; none
may be left after Ctrl-C (SIGTERM).

Opt-in (about 8 min here): `pytest -m celery tests/l1nda_dev/demo/test_celery_stack.py`.
"""

from __future__ import annotations

import contextlib
import email
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from email.policy import default as default_policy
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg2
import pytest

from l1nda_dev.demo import celery_shape
from l1nda_dev.demo.stack import UI_PASSWORD, UI_USER
from nmbrs_sim.admin import SimAdmin
from tests.l1nda_dev.demo.test_demo_run import MARKER, _assert_nothing_left, _free_port, _marked, _read_until, _start

pytestmark = [pytest.mark.slow, pytest.mark.celery, pytest.mark.timeout(1500)]

DAG_ID = "nmbrs_token_sync"
START_TIMEOUT_S = 480.0
RUN_TIMEOUT_S = 420.0
POOL_SLOTS = 3  # fewer than the workers' 4 task slots, more than one worker's 2: 3 checks at once are on both workers
LATENCY_MS = 1200  # per simulated Nmbrs call: a check task takes seconds, long enough to kill its worker


def _opted_in(config: pytest.Config) -> bool:
    return "celery" in (config.getoption("markexpr") or "")


@pytest.fixture(autouse=True)
def _opt_in(request: pytest.FixtureRequest) -> None:
    if not _opted_in(request.config):
        pytest.skip("starts the Celery stack (about 8 min): opt in with `pytest -m celery`")


class Stack:
    """The running stack: Airflow's API as the demo's admin, the registry, the demo's output."""

    def __init__(self, url: str, proc: subprocess.Popen[str], marker: str, var: Path) -> None:
        self.url, self.proc, self.marker, self.var = url, proc, marker, var
        self.output: list[str] = []
        self.env: dict[str, str] = {}
        # The workers' process groups seen: their main processes do not show the marker (see _worker_group), so
        # the clean-up check also asks that each group is gone.
        self.worker_groups: set[int] = set()
        self._jwt: str | None = None

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self._jwt is None:
            answer = httpx.post(f"{self.url}/auth/token", json={"username": UI_USER, "password": UI_PASSWORD},
                                timeout=30)
            assert answer.status_code == 201, f"POST /auth/token: {answer.status_code} {answer.text[:300]}"
            self._jwt = str(answer.json()["access_token"])
        return httpx.request(method, f"{self.url}{path}", headers={"Authorization": f"Bearer {self._jwt}"},
                             timeout=30, **kwargs)

    def get(self, path: str, **params: Any) -> Any:
        answer = self.api("GET", path, params=params)
        assert answer.status_code == 200, f"GET {path}: {answer.status_code} {answer.text[:300]}"
        return answer.json()

    def wait_for(self, condition: Callable[[], Any], what: str, timeout: float = RUN_TIMEOUT_S) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"the demo exited ({self.proc.returncode}):\n{''.join(self.output[-40:])}")
            found = condition()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout:.0f} s for {what}\n{self.log_tail('scheduler')}")
            time.sleep(1)

    def run_ended(self, run_id: str) -> dict[str, Any]:
        path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}"

        def ended() -> dict[str, Any] | None:
            run: dict[str, Any] = self.get(path)
            return run if run["state"] in ("success", "failed") else None

        run: dict[str, Any] = self.wait_for(ended, f"the run {run_id} to end")
        return run

    def check_tries(self, run_id: str) -> list[dict[str, Any]]:
        """Every try of every mapped `check` task of the run (TaskInstanceHistory and the current try)."""
        prefix = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        mapped = self.get(f"{prefix}/check/listMapped", limit=100)["task_instances"]
        tries: list[dict[str, Any]] = []
        for ti in mapped:
            tries += self.get(f"{prefix}/check/{ti['map_index']}/tries")["task_instances"]
        return tries

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        conn = psycopg2.connect(self.env["L1NDA_DATABASE_URL"])
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall())
        finally:
            conn.close()

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.var / "demo" / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return f"--- {name}.log\n" + "\n".join(line[:300] for line in text.splitlines()[-lines:])


def _read_env(path: Path) -> dict[str, str]:
    import shlex

    env = {}
    for line in path.read_text().splitlines():
        if line.strip():
            key, _, value = shlex.split(line)[0].partition("=")
            env[key] = value
    return env


def _worker_group(marker: str, node: str) -> int:
    """The process group of the worker named `node` (the demo setsid()s each worker, so its main process leads it).
    Found through the worker's pool processes: Celery's setproctitle overwrites the main process's environment
    in /proc, so the main process no longer shows the marker."""
    needle, name = f"{MARKER}={marker}".encode(), f"{celery_shape.HOSTNAME_ENV}={node}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            env = (proc / "environ").read_bytes().split(b"\0")
            if needle in env and name in env:
                return os.getpgid(int(proc.name))
    raise AssertionError(f"no running worker {node}")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _max_overlap(tries: list[dict[str, Any]]) -> int:
    """The most tries that ran at one moment (start to end; a try without an end counts as still running)."""
    events = []
    for t in tries:
        if t["start_date"]:
            events.append((datetime.fromisoformat(t["start_date"]), 1))
            if t["end_date"]:
                events.append((datetime.fromisoformat(t["end_date"]), -1))
    running = peak = 0
    for _at, step in sorted(events):  # an end before a start at the same instant: -1 sorts first
        running += step
        peak = max(peak, running)
    return peak


def _drain(stack: Stack) -> None:
    assert stack.proc.stdout is not None
    for line in stack.proc.stdout:
        stack.output.append(line)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    port, web_port = _free_port(), _free_port()
    proc, marker = _start(tmp_path, "--airflow", "--executor", "celery", "--port", str(port),
                          "--web-port", str(web_port))
    s = Stack(f"http://127.0.0.1:{port}", proc, marker, tmp_path / "var")
    reader: threading.Thread | None = None
    try:
        s.output += _read_until(proc, r"Ctrl-C stops Airflow", timeout=START_TIMEOUT_S)
        assert _marked(marker), "the marker does not reach the demo's processes: the clean-up check proves nothing"
        reader = threading.Thread(target=_drain, args=(s,), daemon=True)
        reader.start()
        s.env = _read_env(tmp_path / "var" / "demo" / "demo.env")
        s.worker_groups = {_worker_group(marker, celery_shape.node_name(w)) for w in celery_shape.WORKERS}
        yield s
    finally:
        running = proc.poll() is None
        if running:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(180)
        finally:
            if proc.poll() is None:
                proc.kill()
            if reader is not None:
                reader.join(10)
    out = "".join(s.output)
    assert running, f"the demo had exited ({proc.returncode}):\n{out[-3000:]}"
    assert proc.returncode == 0, out[-3000:]
    assert "Airflow stopped: scheduler, dag-processor, triggerer, api-server, worker-w1, worker-w2" in out, out[-3000:]
    assert "not stopped" not in out, f"a component ignored SIGTERM (the workers' warm shutdown?):\n{out[-3000:]}"
    _assert_nothing_left(marker)
    assert not [g for g in s.worker_groups if _group_alive(g)], "a Celery worker outlived the stack"


def test_celery_stack_runs_the_sync_on_both_workers_within_the_pool_and_survives_a_killed_worker(
    stack: Stack,
) -> None:
    nodes = {celery_shape.node_name(w) for w in celery_shape.WORKERS}
    banner = "".join(stack.output)
    assert "Executor        CeleryExecutor: workers " + ", ".join(sorted(nodes)) in banner, banner[-2000:]

    # 1. The first scheduled run, as Airflow starts it on its own.
    def first_scheduled() -> dict[str, Any] | None:
        runs = stack.get(f"/api/v2/dags/{DAG_ID}/dagRuns", order_by="-run_after", limit=10)["dag_runs"]
        ended = [r for r in runs if r["run_type"] == "scheduled" and r["state"] in ("success", "failed")]
        return ended[0] if ended else None

    first = stack.wait_for(first_scheduled, "the first scheduled run")
    assert first["state"] == "success", stack.log_tail("scheduler") + stack.log_tail("worker-w1")
    tis = stack.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(first['dag_run_id'], safe='')}/taskInstances",
                    limit=100)["task_instances"]
    ran = {t["task_id"]: t["hostname"] for t in tis if t["start_date"]}
    assert {"plan", "apply", "deliver"} <= set(ran), ran  # (no check task: `tokens add` checked every token)
    assert set(ran.values()) <= nodes, ran

    # 2. Several batches, a pool smaller than the workers' slots, slow answers; a forced run.
    answer = stack.api("PATCH", "/api/v2/pools/nmbrs_api", params={"update_mask": "slots"},
                       json={"name": "nmbrs_api", "slots": POOL_SLOTS, "include_deferred": False})
    assert answer.status_code == 200, answer.text[:300]
    # Batch size 1: one check task per token. link_pending_after 1 s: the link no token reaches (CUST-KOK) opens a
    # link_pending problem in this run, whose mail must go out exactly once although a worker dies mid-run.
    for key, value in (("l1nda_batch_size", "1"), ("l1nda_link_pending_after", "1")):
        answer = stack.api("POST", "/api/v2/variables", json={"key": key, "value": value})
        assert answer.status_code == 201, answer.text[:300]
    assert stack.query("SELECT count(*) FROM problems WHERE kind = 'link_pending'") == [(0,)]
    sim_url = stack.env["L1NDA_NMBRS_REST_API_BASE_URL"]
    admin = SimAdmin(sim_url)
    try:
        admin.set_latency(LATENCY_MS)
    finally:
        admin.close()
    mails_before = sorted((stack.var / "mail").glob("*.eml"))
    answer = stack.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": {"force": True}})
    assert answer.status_code == 200, answer.text[:300]
    run_id = str(answer.json()["dag_run_id"])

    # 3. Once a check task runs, its worker dies the way a killed container does: SIGKILL to the whole group.
    def running_check() -> dict[str, Any] | None:
        running = [t for t in stack.check_tries(run_id) if t["state"] == "running" and t["hostname"] in nodes]
        return running[0] if running else None

    victim = stack.wait_for(running_check, "a running check task")
    killed_node = victim["hostname"]
    os.killpg(_worker_group(stack.marker, killed_node), signal.SIGKILL)
    killed_at = time.monotonic()

    # 4. The run succeeds: the orphaned try failed on its missing heartbeat and was retried.
    run = stack.run_ended(run_id)
    recovered_in = time.monotonic() - killed_at
    tail = stack.log_tail("scheduler") + stack.log_tail("worker-w1") + stack.log_tail("worker-w2")
    assert run["state"] == "success", tail
    tries = stack.check_tries(run_id)
    batches = {t["map_index"] for t in tries}
    assert len(batches) >= 4, f"one batch per token: {sorted(batches)}"
    victim_tries = sorted((t for t in tries if t["map_index"] == victim["map_index"]), key=lambda t: t["try_number"])
    assert victim_tries[0]["hostname"] == killed_node, victim_tries
    assert victim_tries[0]["state"] != "success", victim_tries
    assert len(victim_tries) >= 2, victim_tries
    assert victim_tries[-1]["state"] == "success", victim_tries
    # Both workers ran checks (the killed one until it died, the other one at least the retry).
    assert {t["hostname"] for t in tries} == nodes, [(t["map_index"], t["try_number"], t["hostname"]) for t in tries]
    # The pool held the checks to its slots, though the workers had room for more; and it was full at least once,
    # with more checks at once than one worker has slots, so both workers ran checks at the same time.
    assert _max_overlap(tries) <= POOL_SLOTS < celery_shape.WORKER_CONCURRENCY * len(celery_shape.WORKERS)
    assert _max_overlap(tries) == POOL_SLOTS > celery_shape.WORKER_CONCURRENCY, "the cap was not exercised"
    out = "".join(stack.output)
    stack.worker_groups |= {_worker_group(stack.marker, n) for n in nodes}  # the restarted one's too
    assert f"worker-{killed_node.split('@')[0]} exited with -9: started again" in out, out[-2000:]

    # 5. The rerun converged: every token checked and applied in this run, nothing left pending.
    (registry_run,) = stack.query("SELECT id FROM runs WHERE dag_run_id = %s", run_id)
    tokens = stack.query("SELECT count(*) FROM tokens WHERE removed_at IS NULL")[0][0]
    applied = stack.query("SELECT count(DISTINCT token_id) FROM checks WHERE run_id = %s AND applied_at IS NOT NULL",
                          registry_run[0])[0][0]
    assert applied == tokens, f"{applied} of {tokens} tokens applied in run {registry_run[0]}"
    assert stack.query("SELECT count(*) FROM checks WHERE applied_at IS NULL") == [(0,)]

    # 6. No mail twice: the run's link_pending mail went out once; one file per sent outbox row, every Message-ID
    # once.
    mails = sorted((stack.var / "mail").glob("*.eml"))
    ids = [str(email.message_from_bytes(p.read_bytes(), policy=default_policy)["Message-ID"]) for p in mails]
    assert len(ids) == len(set(ids)), ids
    pending = stack.query("SELECT o.message_id, o.state FROM outbox o JOIN problems p ON p.id = o.problem_id "
                          "WHERE p.kind = 'link_pending'")
    assert len(pending) == 1, pending
    assert pending[0][1] == "sent", pending
    assert ids.count(pending[0][0]) == 1, (pending, ids)
    sent = stack.query("SELECT count(*) FROM outbox WHERE state = 'sent'")[0][0]
    assert sent == len(mails), f"{sent} sent outbox rows, {len(mails)} mails ({len(mails_before)} before the run)"
    admin = SimAdmin(sim_url)
    try:
        admin.set_latency(0)  # a scheduled run that is under way at the stop finishes within the workers' grace
    finally:
        admin.close()
    print(f"celery stack: killed {killed_node}; the run ended {recovered_in:.0f} s later; "
          f"{len(batches)} batches, {len(tries)} tries, peak {_max_overlap(tries)} checks at once; {len(mails)} mails")

