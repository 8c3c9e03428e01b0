"""Throughput micro-benchmark: `nmbrs-sim serve` in a subprocess pinned to one core, loaded by a concurrent
aiohttp client with DebtorService.List_GetAll for a master login that sees `debtors` debtors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from nmbrs_sim.catalog import namespace, soap_action

USERNAME = "bench@bench.example"
TOKEN = "0123456789abcdef0123456789abcdef"  # noqa: S105 - a fake token of the throw-away bench world
SUB_DOMAIN = "bench"


@dataclass(frozen=True)
class BenchResult:
    calls: int
    seconds: float
    errors: int
    debtors: int
    concurrency: int
    server_cpu: int | None

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


def bench_scenario(debtors: int) -> dict[str, Any]:
    return {"environments": [{
        "sub_domain": SUB_DOMAIN,
        "debtors": [{"id": 1000 + i, "number": f"D{i:04d}", "name": f"Bench debtor {i}", "tags": ["Bench"],
                     "companies": [{"id": 500_000 + i, "number": i, "name": f"Bench company {i}"}]}
                    for i in range(debtors)],
        "logins": [{"username": USERNAME, "level": "accountant", "token": TOKEN, "tag_filter": "all"}],
    }]}


def _envelope() -> bytes:
    ns = namespace("DebtorService")
    return (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
            f'<soap:Header><AuthHeaderWithDomain xmlns="{ns}"><Username>{USERNAME}</Username><Token>{TOKEN}</Token>'
            f"<Domain>{SUB_DOMAIN}</Domain></AuthHeaderWithDomain></soap:Header>"
            f'<soap:Body><List_GetAll xmlns="{ns}" /></soap:Body></soap:Envelope>').encode()


def _start_server(scenario_path: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "nmbrs_sim.cli", "serve", "--scenario", str(scenario_path),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    url = next((word for word in line.split() if word.startswith("http://")), None)
    if url is None:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise RuntimeError(f"the simulator did not start: {line.strip()} {err.strip()}")
    return proc, url


async def _load(url: str, seconds: float, concurrency: int, debtors: int) -> tuple[int, int, float]:
    body = _envelope()
    headers = {"Content-Type": "text/xml; charset=utf-8",
               "SOAPAction": f'"{soap_action("DebtorService", "List_GetAll")}"'}
    target = f"{url}DebtorService.asmx"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(target, data=body, headers=headers) as first:
            text = await first.text()
            if first.status != 200 or text.count("<Debtor>") != debtors:
                raise RuntimeError(f"unexpected answer from the simulator: HTTP {first.status} {text[:300]}")
        calls = errors = 0
        deadline = 0.0

        async def worker() -> None:
            nonlocal calls, errors
            while time.perf_counter() < deadline:
                async with session.post(target, data=body, headers=headers) as response:
                    await response.read()
                    if response.status == 200:
                        calls += 1
                    else:
                        errors += 1

        deadline = time.perf_counter() + min(0.5, seconds / 4)  # warm-up, not counted
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        calls = errors = 0
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return calls, errors, time.perf_counter() - started


def run_bench(*, seconds: float = 3.0, concurrency: int = 16, debtors: int = 100) -> BenchResult:
    """Start the server, pin it to one core (the client gets the others), load it and count answers."""
    with tempfile.TemporaryDirectory(prefix="nmbrs-sim-bench-") as tmp:
        path = Path(tmp) / "bench.json"
        path.write_text(json.dumps(bench_scenario(debtors)), encoding="utf-8")
        proc, url = _start_server(path)
        server_cpu = None
        own_cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        try:
            if own_cpus and len(own_cpus) > 1:
                server_cpu = min(own_cpus)
                os.sched_setaffinity(proc.pid, {server_cpu})
                os.sched_setaffinity(0, own_cpus - {server_cpu})
            calls, errors, elapsed = asyncio.run(_load(url, seconds, concurrency, debtors))
        finally:
            if own_cpus:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(0, own_cpus)
            proc.terminate()
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
    return BenchResult(calls, elapsed, errors, debtors, concurrency, server_cpu)
