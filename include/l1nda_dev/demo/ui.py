"""`make airflow`: the demo's world with Airflow's API server (UI), scheduler and DAG processor until Ctrl-C.

The three components run as child processes, each in its own session so that Ctrl-C reaches only the demo,
which then stops them in order: SIGTERM to each process group, SIGKILL to what is left after a grace period.
Each also gets SIGTERM from the kernel should the demo die without cleaning up (PR_SET_PDEATHSIG).
No triggerer: nothing in these DAGs defers.
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

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.strip().splitlines()[-lines:])


def start_components(stack: DemoStack, port: int) -> list[Component]:
    airflow = Path(sys.executable).parent / "airflow"
    started: list[Component] = []
    try:
        for name in COMPONENTS:
            argv = [str(airflow), name]
            if name == "api-server":
                argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
            log = stack.paths.work / f"{name}.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        env={**os.environ, **stack.env}, preexec_fn=_new_session_dying_with_parent)
            started.append(Component(name, proc, log))
            stack.console.say(f"airflow {name} started (pid {proc.pid}, log {log})")
    except BaseException:
        stop_components(started, stack)
        raise
    return started


def stop_components(components: list[Component], stack: DemoStack) -> None:
    """SIGTERM every component's process group, wait, then SIGKILL whatever remains of each group."""
    for c in reversed(components):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(c.proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for c in components:
        with contextlib.suppress(subprocess.TimeoutExpired):
            c.proc.wait(max(0.1, deadline - time.monotonic()))
    for c in components:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(c.proc.pid, signal.SIGKILL)  # workers the component left behind, or a component that hung
        with contextlib.suppress(subprocess.TimeoutExpired):
            c.proc.wait(5)
    if components:
        stack.console.say("Airflow stopped: " + ", ".join(c.name for c in components))


def health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=3) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _healthy(report: dict[str, Any] | None) -> bool:
    if not report:
        return False
    parts = ("metadatabase", "scheduler", "dag_processor")
    return all((report.get(p) or {}).get("status") == "healthy" for p in parts)


def wait_healthy(components: list[Component], stack: DemoStack, port: int) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT_S
    shown = 0.0
    while True:
        for c in components:
            if c.proc.poll() is not None:
                raise DemoError(f"airflow {c.name} exited with {c.proc.returncode}:\n{c.tail()}")
        report = health(port)
        if _healthy(report):
            assert report is not None
            return report
        if time.monotonic() > deadline:
            raise DemoError(f"Airflow was not healthy within {START_TIMEOUT_S:.0f} s: {report}")
        if time.monotonic() - shown > 10:
            stack.console.say(f"waiting for Airflow to report healthy ({report or 'API server not up yet'})")
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
        "",
        "Ctrl-C stops Airflow, the simulator, the mail sink and PostgreSQL.",
    ]
    return "\n".join(lines)


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
                        raise DemoError(f"airflow {c.name} exited with {c.proc.returncode}:\n{c.tail()}")
        except KeyboardInterrupt:  # the way to end `make airflow`: not an error
            stack.console.say("Ctrl-C: stopping")
        return 0
    finally:
        stop_components(components, stack)
