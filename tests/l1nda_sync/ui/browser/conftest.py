"""`make airflow`'s stack for the token health page's browser tests, and the customer page's headless Chromium.

The stack is started the way `make airflow` starts it: `python -m l1nda_dev.demo --airflow` in a subprocess
(free ports, a temporary var/), so the demo's own code sets up the world (embedded PostgreSQL, the simulator, the
registry with the demo's tokens and links) and runs Airflow's API server, scheduler and DAG processor with
SimpleAuthManager. Every process it starts inherits a marker; on teardown the demo gets SIGTERM (its Ctrl-C: a
background process may have SIGINT ignored) and no marked process may be left.

Before the tests, the fixture waits for the first scheduled `nmbrs_token_sync` run (every link its token reaches
becomes active), then changes the Nmbrs world as the banner suggests (debtor 2004, Fietsenwinkel Snel, loses the
tag Horeca that the Horeca office's token filters on) and rechecks that token through Airflow's API, so the demo
has a suspended link with a reason. The browser policy is the customer page's: without Chromium the tests skip
(the stack is not started), in CI they fail.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from l1nda_dev.demo.stack import UI_PASSWORD, UI_USER
from l1nda_sync.registry.db import fetch_all
from nmbrs_sim.admin import SimAdmin
from tests.l1nda_dev.demo.test_demo_run import _assert_nothing_left, _free_port, _marked, _read_until, _start
from tests.l1nda_sync.web.browser.conftest import (  # noqa: F401 - fixtures and the screenshot hook, reused
    Browser,
    browser,
    chromium,
    pytest_runtest_makereport,
    require_chromium,
)

DAG_ID = "nmbrs_token_sync"
START_TIMEOUT_S = 360.0  # the demo's set-up and Airflow healthy: about 80 s on a loaded 2-core machine
RUN_TIMEOUT_S = 240.0  # one nmbrs_token_sync run: 20-35 s here
STOP_TIMEOUT_S = 120.0
SUSPENDED_DEBTOR, SUSPENDED_TAG = 2004, "Horeca"  # Fietsenwinkel Snel; the Horeca office's token filters on it
SUSPENDED_COMPANY = 50401  # Fietsenwinkel Snel B.V. (CUST-SNEL), served by the Horeca office until then
HORECA = "Horeca office"


@dataclass
class DemoAirflow:
    """The running `make airflow` stack: Airflow's URL, the demo's environment, and Airflow's API as admin."""

    url: str
    sim_url: str
    env: dict[str, str]
    proc: subprocess.Popen[str]
    marker: str
    output: list[str] = field(default_factory=list)
    _jwt: str | None = None

    # -- Airflow's public API ------------------------------------------------------------------------------
    def jwt(self) -> str:
        """A JWT for the demo's user from SimpleAuthManager's `POST /auth/token`."""
        if self._jwt is None:
            answer = httpx.post(f"{self.url}/auth/token", json={"username": UI_USER, "password": UI_PASSWORD},
                                timeout=30)
            assert answer.status_code == 201, f"POST /auth/token: {answer.status_code} {answer.text[:300]}"
            self._jwt = str(answer.json()["access_token"])
        return self._jwt

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.jwt()}", **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def dag_runs(self) -> list[dict[str, Any]]:
        """Every run of nmbrs_token_sync, newest first (GET /api/v2/dags/<dag>/dagRuns)."""
        answer = self.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns", params={"order_by": "-run_after", "limit": 100})
        assert answer.status_code == 200, f"GET dagRuns: {answer.status_code} {answer.text[:300]}"
        runs: list[dict[str, Any]] = answer.json()["dag_runs"]
        return runs

    def trigger(self, conf: dict[str, Any]) -> str:
        answer = self.api("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
        assert answer.status_code == 200, f"POST dagRuns: {answer.status_code} {answer.text[:300]}"
        return str(answer.json()["dag_run_id"])

    def wait_for(self, condition: Callable[[], Any], what: str, timeout: float = RUN_TIMEOUT_S) -> Any:
        """Poll `condition` (about once a second) until it returns something truthy; fail naming `what`."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            found = condition()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout:.0f} s for {what}")
            time.sleep(1)

    def finished_run(self, run_id: str, timeout: float = RUN_TIMEOUT_S) -> dict[str, Any]:
        """The run once it has ended (success or failed), polled through the API with a deadline."""
        path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}"

        def ended() -> dict[str, Any] | None:
            answer = self.api("GET", path)
            assert answer.status_code == 200, f"GET {path}: {answer.status_code} {answer.text[:300]}"
            run: dict[str, Any] = answer.json()
            return run if run["state"] in ("success", "failed") else None

        run: dict[str, Any] = self.wait_for(ended, f"the run {run_id} to end", timeout)
        return run

    # -- the demo's registry and processes -----------------------------------------------------------------
    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return fetch_all(self.env["L1NDA_DATABASE_URL"], sql, *params)

    def token_id(self, label: str) -> int:
        rows = self.query("SELECT id FROM tokens WHERE label = %s AND removed_at IS NULL", label)
        assert len(rows) == 1, f"the demo registered no token {label!r}: {rows}"
        return int(rows[0][0])

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the demo exited with {self.proc.returncode}:\n{''.join(self.output[-30:])}")

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The end of one of the demo's logs (api-server, scheduler, dag-processor, demo): for failure messages."""
        path = Path(self.env["AIRFLOW_HOME"]).parent / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(line[:400] for line in text.splitlines()[-lines:])


def read_env_file(path: Path) -> dict[str, str]:
    """var/demo/demo.env (`K=shell-quoted value` lines) as a dict."""
    env = {}
    for line in path.read_text().splitlines():
        if line.strip():
            key, _, value = shlex.split(line)[0].partition("=")
            env[key] = value
    return env


def _drain(proc: subprocess.Popen[str], into: list[str]) -> None:
    """Keep reading the demo's output (a full pipe would block it) until it exits."""
    assert proc.stdout is not None
    for line in proc.stdout:
        into.append(line)


def _stop(demo: DemoAirflow, reader: threading.Thread | None) -> None:
    """SIGTERM (the demo's Ctrl-C), wait for its clean-up, then assert that it ended cleanly and nothing it
    started is left."""
    running = demo.proc.poll() is None
    if running:
        demo.proc.send_signal(signal.SIGTERM)
    try:
        demo.proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        demo.proc.kill()
        demo.proc.wait(10)
        raise AssertionError(f"the demo did not stop within {STOP_TIMEOUT_S:.0f} s of SIGTERM") from None
    finally:
        if reader is not None:
            reader.join(10)
    out = "".join(demo.output)
    assert running, f"the demo had exited ({demo.proc.returncode}) before the tests were done:\n{out[-3000:]}"
    assert demo.proc.returncode == 0, out[-3000:]
    assert "Airflow stopped: scheduler, dag-processor, api-server" in out, out[-3000:]
    _assert_nothing_left(demo.marker)


def _suspend_a_link(demo: DemoAirflow) -> None:
    """The first scheduled run activates the links; then Nmbrs changes and a recheck suspends one of them."""
    def scheduled_run_ended() -> dict[str, Any] | None:
        ended = [r for r in demo.dag_runs() if r["run_type"] == "scheduled" and r["state"] in ("success", "failed")]
        return ended[0] if ended else None

    first = demo.wait_for(scheduled_run_ended, "the first scheduled nmbrs_token_sync run")
    assert first["state"] == "success", f"{first['dag_run_id']} {first['state']}:\n{demo.log_tail('scheduler')}"
    assert demo.query("SELECT state FROM links WHERE company_id = %s", SUSPENDED_COMPANY) == [("active",)]
    admin = SimAdmin(demo.sim_url)
    try:
        admin.set_debtor_tags(SUSPENDED_DEBTOR, remove=[SUSPENDED_TAG])
    finally:
        admin.close()
    run = demo.finished_run(demo.trigger({"token_ids": [demo.token_id(HORECA)]}))
    assert run["state"] == "success", f"{run['dag_run_id']} {run['state']}:\n{demo.log_tail('scheduler')}"
    assert demo.query("SELECT state, reason FROM links WHERE company_id = %s", SUSPENDED_COMPANY) == [
        ("suspended", "tag_or_filter")]


@pytest.fixture(scope="module")
def demo_airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoAirflow]:
    """`make airflow` running on free ports, with one suspended link; stopped (nothing left) after the module."""
    require_chromium()
    tmp = tmp_path_factory.mktemp("make-airflow")
    port, web_port = _free_port(), _free_port()
    proc, marker = _start(tmp, "--airflow", "--port", str(port), "--web-port", str(web_port))
    demo = DemoAirflow(f"http://127.0.0.1:{port}", "", {}, proc, marker)
    reader: threading.Thread | None = None
    try:
        demo.output += _read_until(proc, r"Ctrl-C stops Airflow", timeout=START_TIMEOUT_S)
        assert _marked(marker), "the marker does not reach the demo's processes: the clean-up check would prove nothing"
        reader = threading.Thread(target=_drain, args=(proc, demo.output), daemon=True)
        reader.start()
        banner = "".join(demo.output)
        assert f"Airflow UI      {demo.url}/   login: {UI_USER} / {UI_PASSWORD}" in banner, banner[-2000:]
        assert f"Token health    {demo.url}/l1nda/ (the Airflow UI's nav: L1NDA token health)" in banner, banner[-2000:]
        sim = re.search(r"^Nmbrs simulator (http://\S+)/_sim/", banner, re.M)
        assert sim is not None, banner[-2000:]
        demo.sim_url = sim.group(1)
        demo.env = read_env_file(tmp / "var" / "demo" / "demo.env")
        _suspend_a_link(demo)
    except BaseException:
        with contextlib.suppress(Exception):  # the set-up's error is the one to see; still stop what started
            _stop(demo, reader)
        raise
    yield demo
    _stop(demo, reader)
