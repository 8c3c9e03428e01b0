"""Throughput micro-benchmark: `nmbrs-sim serve` in a subprocess pinned to one core, loaded by a concurrent
aiohttp client, for SOAP (DebtorService.List_GetAll of a master login that sees `debtors` debtors) and for
REST (GET /api/debtors?pageSize=100 of a consent that reaches as many debtors, with a real access token)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp

from nmbrs_sim.catalog import namespace, soap_action

USERNAME = "bench@bench.example"
TOKEN = "0123456789abcdef0123456789abcdef"  # noqa: S105 - a fake token of the throw-away bench world
SUB_DOMAIN = "bench"
REST_USER = "client@bench.example"
REST_PASSWORD = "bench-pw"  # noqa: S105 - the throw-away bench world's
CLIENT_ID = "PartnerApp_Bench"
CLIENT_SECRET = "bench*Secret$1"  # noqa: S105 - the throw-away bench world's
CALLBACK = "http://127.0.0.1:9/callback"
SUBSCRIPTION_KEY = "0" * 32
PROTOCOLS = ("soap", "rest")


@dataclass(frozen=True)
class BenchResult:
    """Answers counted for one protocol in the measuring window."""

    calls: int
    seconds: float
    errors: int
    debtors: int
    concurrency: int
    server_cpu: int | None
    protocol: str = "soap"

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class _Target:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    answer_ok: Callable[[int, bytes], bool]


def bench_scenario(debtors: int) -> dict[str, Any]:
    return {"environments": [{
        "sub_domain": SUB_DOMAIN,
        "debtors": [{"id": 1000 + i, "number": f"D{i:04d}", "name": f"Bench debtor {i}", "tags": ["Bench"],
                     "companies": [{"id": 500_000 + i, "number": i, "name": f"Bench company {i}"}]}
                    for i in range(debtors)],
        "logins": [{"username": USERNAME, "level": "accountant", "token": TOKEN, "tag_filter": "all"},
                   {"username": REST_USER, "level": "client", "password": REST_PASSWORD,
                    "company_filter": [500_000 + i for i in range(debtors)]}],
    }], "rest": {"clients": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [CALLBACK],
                              "subscription_keys": [SUBSCRIPTION_KEY],
                              "scopes": ["offline_access", "company.info.read"]}]}}


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


def _soap_target(soap_url: str, debtors: int) -> _Target:
    headers = {"Content-Type": "text/xml; charset=utf-8",
               "SOAPAction": f'"{soap_action("DebtorService", "List_GetAll")}"'}
    return _Target("POST", f"{soap_url}DebtorService.asmx", headers, _envelope(),
                   lambda status, body: status == 200 and body.count(b"<Debtor>") == debtors)


async def _rest_target(session: aiohttp.ClientSession, root: str, debtors: int) -> _Target:
    """Consent through the admin API, exchange the code for an access token, aim at /api/debtors."""
    consent = {"username": REST_USER, "client_id": CLIENT_ID, "redirect_uri": CALLBACK,
               "scope": "offline_access company.info.read", "state": "bench"}
    async with session.post(f"{root}/_sim/rest/authorize", json=consent) as response:
        location = (await response.json())["location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    basic = base64.b64encode(f"{quote(CLIENT_ID, safe='')}:{quote(CLIENT_SECRET, safe='')}".encode()).decode()
    async with session.post(f"{root}/connect/token", headers={"Authorization": f"Basic {basic}"},
                            data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}
                            ) as response:
        access = (await response.json())["access_token"]
    headers = {"Authorization": f"Bearer {access}", "X-Subscription-Key": SUBSCRIPTION_KEY,
               "Accept": "application/json"}
    expected = min(debtors, 100)
    return _Target("GET", f"{root}/api/debtors?pageSize=100", headers, None,
                   lambda status, body: status == 200 and body.count(b'"debtorId"') == expected)


async def _load(protocol: str, url: str, seconds: float, concurrency: int, debtors: int
                ) -> tuple[int, int, float]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        root = url.split("/soap/", 1)[0]
        target = _soap_target(url, debtors) if protocol == "soap" else await _rest_target(session, root, debtors)
        async with session.request(target.method, target.url, data=target.body, headers=target.headers) as first:
            body = await first.read()
            if not target.answer_ok(first.status, body):
                raise RuntimeError(f"unexpected answer from the simulator: HTTP {first.status} {body[:300]!r}")
        calls = errors = 0
        deadline = 0.0

        async def worker() -> None:
            nonlocal calls, errors
            while time.perf_counter() < deadline:
                async with session.request(target.method, target.url, data=target.body,
                                           headers=target.headers) as response:
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


def run_bench(*, seconds: float = 3.0, concurrency: int = 16, debtors: int = 100,
              protocols: tuple[str, ...] = ("soap",)) -> list[BenchResult]:
    """Start the server, pin it to one core (the client gets the others), load it per protocol and count
    answers (one result per protocol, in the order asked)."""
    with tempfile.TemporaryDirectory(prefix="nmbrs-sim-bench-") as tmp:
        path = Path(tmp) / "bench.json"
        path.write_text(json.dumps(bench_scenario(debtors)), encoding="utf-8")
        proc, url = _start_server(path)
        server_cpu = None
        own_cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        results = []
        try:
            if own_cpus and len(own_cpus) > 1:
                server_cpu = min(own_cpus)
                os.sched_setaffinity(proc.pid, {server_cpu})
                os.sched_setaffinity(0, own_cpus - {server_cpu})
            for protocol in protocols:
                calls, errors, elapsed = asyncio.run(_load(protocol, url, seconds, concurrency, debtors))
                results.append(BenchResult(calls, elapsed, errors, debtors, concurrency, server_cpu, protocol))
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
    return results
