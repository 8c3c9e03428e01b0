"""`make airflow`: the demo's world with Airflow's API server (UI), scheduler and DAG processor until Ctrl-C.

The components run as child processes, each in its own session so that Ctrl-C reaches only the demo,
which then stops them in order: SIGTERM to each process group, SIGKILL to what is left after a grace period.
Each also gets SIGTERM from the kernel should the demo die without cleaning up (PR_SET_PDEATHSIG).
No triggerer with the local executor: nothing in these DAGs defers. `--executor celery` (`make airflow
EXECUTOR=celery`) runs compose's shape instead: PostgreSQL metadata, a triggerer and two Celery workers, which are
started again when they die, as compose restarts them (celery_shape).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l1nda_dev.demo import celery_shape
from l1nda_dev.demo.celery_shape import Spec
from l1nda_dev.demo.stack import SHORTENED, TOKENS, UI_PASSWORD, UI_USER, DemoError, DemoStack

COMPONENTS = ("scheduler", "dag-processor", "api-server")
START_TIMEOUT_S = 180.0
STOP_GRACE_S = 20.0


def _new_session_dying_with_parent() -> None:
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.setsid()


@dataclass
class Component:
    """One Airflow process the demo started, and its log."""

    spec: Spec
    proc: subprocess.Popen[bytes]
    log: Path
    restarts: int = 0

    @property
    def name(self) -> str:
        return self.spec.name

    def ready(self) -> bool:
        """Its ready line is in its log (always true for a component without one)."""
        line = self.spec.ready_line
        return line is None or (self.log.exists() and line in self.log.read_text(errors="replace"))

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.strip().splitlines()[-lines:])


def component_specs(stack: DemoStack, port: int) -> list[Spec]:
    if stack.executor == "celery":
        return celery_shape.specs(port)
    api = ("--host", "127.0.0.1", "--port", str(port), "--workers", "1")
    return [Spec(name, (name, *(api if name == "api-server" else ()))) for name in COMPONENTS]


def _popen(spec: Spec, stack: DemoStack, log: Path) -> subprocess.Popen[bytes]:
    airflow = Path(sys.executable).parent / "airflow"
    with open(log, "ab") as out:  # a restarted worker appends to its log
        return subprocess.Popen([str(airflow), *spec.argv], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, **stack.env, **spec.env},
                                preexec_fn=_new_session_dying_with_parent)


def start_components(stack: DemoStack, port: int) -> list[Component]:
    started: list[Component] = []
    try:
        for spec in component_specs(stack, port):
            log = stack.paths.work / f"{spec.name}.log"
            proc = _popen(spec, stack, log)
            started.append(Component(spec, proc, log))
            stack.console.say(f"airflow {' '.join(spec.argv[:2]) if spec.restart else spec.name} started as "
                              f"{spec.name} (pid {proc.pid}, log {log})")
    except BaseException:
        stop_components(started, stack)
        raise
    return started


def restart_if_allowed(c: Component, stack: DemoStack) -> None:
    """A component that died: started again when its spec says so (a Celery worker), else the demo fails."""
    if not c.spec.restart:
        raise DemoError(f"airflow {c.name} exited with {c.proc.returncode}:\n{c.tail()}")
    code = c.proc.returncode
    with contextlib.suppress(ProcessLookupError):
        os.killpg(c.proc.pid, signal.SIGKILL)  # what the dead worker left of its group (pool processes, tasks)
    c.proc = _popen(c.spec, stack, c.log)
    c.restarts += 1
    stack.console.say(f"{c.name} exited with {code}: started again (pid {c.proc.pid}), as compose's "
                      "`restart: always` would")


def _terminate(components: list[Component]) -> None:
    """SIGTERM to each component's process group, or to its main process only (a Celery worker: its warm shutdown
    stops its pool itself), then wait up to the grace period."""
    for c in reversed(components):
        with contextlib.suppress(ProcessLookupError):
            if c.spec.leader_only_term:
                os.kill(c.proc.pid, signal.SIGTERM)
            else:
                os.killpg(c.proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for c in components:
        with contextlib.suppress(subprocess.TimeoutExpired):
            c.proc.wait(max(0.1, deadline - time.monotonic()))


def stop_components(components: list[Component], stack: DemoStack) -> None:
    """Stop the Celery workers first (a task they finish still needs the API server, as compose stops the worker
    before the API server it depends on), then the rest; SIGKILL whatever remains of each process group."""
    workers = [c for c in components if c.spec.leader_only_term]
    for phase in (workers, [c for c in components if c not in workers]):
        _terminate(phase)
    hung = [c.name for c in components if c.proc.poll() is None]
    for c in components:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(c.proc.pid, signal.SIGKILL)  # workers the component left behind, or a component that hung
        with contextlib.suppress(subprocess.TimeoutExpired):
            c.proc.wait(5)
    if hung:
        stack.console.say(f"not stopped {STOP_GRACE_S:.0f} s after SIGTERM, killed: {', '.join(hung)}")
    if components:
        stack.console.say("Airflow stopped: " + ", ".join(c.name for c in components))


def health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=3) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _healthy(report: dict[str, Any] | None, *, triggerer: bool = False) -> bool:
    if not report:
        return False
    parts = ("metadatabase", "scheduler", "dag_processor", *(("triggerer",) if triggerer else ()))
    return all((report.get(p) or {}).get("status") == "healthy" for p in parts)


def wait_healthy(components: list[Component], stack: DemoStack, port: int) -> dict[str, Any]:
    """The API's health report once it says healthy and every component with a ready line has shown it."""
    deadline = time.monotonic() + START_TIMEOUT_S
    shown = 0.0
    while True:
        for c in components:
            if c.proc.poll() is not None:
                raise DemoError(f"airflow {c.name} exited with {c.proc.returncode}:\n{c.tail()}")
        report = health(port)
        waiting_for = [c.name for c in components if not c.ready()]
        if _healthy(report, triggerer=stack.executor == "celery") and not waiting_for:
            assert report is not None
            return report
        if time.monotonic() > deadline:
            raise DemoError(f"Airflow was not healthy within {START_TIMEOUT_S:.0f} s: {report}; "
                            f"not ready: {waiting_for}")
        if time.monotonic() - shown > 10:
            stack.console.say(f"waiting for Airflow to report healthy ({report or 'API server not up yet'})"
                              + (f"; not ready yet: {', '.join(waiting_for)}" if waiting_for else ""))
            shown = time.monotonic()
        time.sleep(1)


def banner(stack: DemoStack, port: int) -> str:
    sim = stack.sim.root_url
    horeca = next(t for t in TOKENS if t.level == "accountant").username
    lines = [
        "",
        f"Airflow UI      http://127.0.0.1:{port}/   login: {UI_USER} / {UI_PASSWORD}",
        f"Token health    http://127.0.0.1:{port}/l1nda/ (the Airflow UI's nav: L1NDA token health), the plugin in "
        "plugins/",
        "DAGs            nmbrs_token_sync (unpaused, every 10 min; Trigger with params token_ids, force, dry_run,",
        "                notify) and nmbrs_alert_outbox (every 5 min)",
        f"Mails           {stack.paths.mail}/*.eml (one file per mail; open with any mail client)",
        f"Customer page   {stack.page.url}/ (`l1nda-sync web`); invite a customer and open the link in the mail:",
        "                .venv/bin/l1nda-sync invite --customer CUST-DEGRAAF --contact salaris@bakkerij-degraaf.example"
        " --purpose rest",
        "                (on the simulator's consent page: salaris@bakkerij-degraaf.example / degraaf-demo-pw)",
        f"CLI             set -a; . {stack.env_file}; set +a   (the registry, keys and connections), then",
        "                .venv/bin/l1nda-sync tokens list; .venv/bin/l1nda-sync links list; ... problems list",
        f"Nmbrs simulator {sim}/_sim/ (admin API); change the world, then trigger a run:",
        f"                curl -X POST {sim}/_sim/logins/{horeca}/reset-token",
        f"                curl -X POST {sim}/_sim/debtors/2001/tags -H 'Content-Type: application/json' "
        "-d '{\"remove\": [\"Horeca\"]}'",
        f"Shortened       {', '.join(f'{k}={v} s' for k, v in SHORTENED.items())} (600 s each by default)",
        f"Logs            {stack.paths.work}/*.log",
        *(_celery_lines(stack) if stack.executor == "celery" else []),
        "",
        "Ctrl-C stops Airflow, the simulator, the mail sink and PostgreSQL.",
    ]
    return "\n".join(lines)


def _celery_lines(stack: DemoStack) -> list[str]:
    nodes = ", ".join(celery_shape.node_name(w) for w in celery_shape.WORKERS)
    return [
        f"Executor        CeleryExecutor: workers {nodes} ({celery_shape.WORKER_CONCURRENCY} slots each; a worker that "
        "dies is started again)",
        f"Databases       PostgreSQL 127.0.0.1:{stack.pg.port}: {celery_shape.METADATA_DATABASE} (Airflow, Celery's "
        f"results), {celery_shape.BROKER_DATABASE} (the broker), registry",
        "Shortened       " + ", ".join(f"{k.split('__')[-1].lower()}={v} s"
                                       for k, v in celery_shape.SHORTENED_RECOVERY.items()),
    ]


def run(stack: DemoStack, *, stop: threading.Event | None = None) -> int:
    """Set up, start Airflow, wait for Ctrl-C (or `stop`), stop Airflow. Returns the exit code."""
    port = stack.ui_port or 8080
    if health(port) is not None:
        raise DemoError(f"something already answers on 127.0.0.1:{port}; stop it or use --port")
    stack.register()
    stack.create_pool()
    components = start_components(stack, port)
    try:
        report = wait_healthy(components, stack, port)
        stack.console.say(f"Airflow is healthy: {', '.join(k for k, v in report.items() if v)}")
        stack.console.raw(banner(stack, port))
        waiter = stop or threading.Event()
        try:
            while not waiter.wait(1):
                for c in components:
                    if c.proc.poll() is not None:
                        restart_if_allowed(c, stack)
        except KeyboardInterrupt:  # the way to end `make airflow`: not an error
            stack.console.say("Ctrl-C: stopping")
        return 0
    finally:
        stop_components(components, stack)
