"""Rate and concurrency limits measured against the simulator; one client shared by many threads."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from l1nda_sync.nmbrs.limits import CallGate

from .conftest import ALL_LOGINS, ENV, MASTER_HORECA


def test_threads_together_stay_under_the_rate_limit(sim, make_client) -> None:
    rate = 50.0
    gate = CallGate(rate, 16)
    client = make_client(gate=gate)
    client.warm_up()
    creds = MASTER_HORECA.creds(ENV)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: len(client.debtors(creds)), range(60)))
    elapsed = time.monotonic() - started
    served = sim.admin.call_count(username=MASTER_HORECA.username)
    assert results == [3] * 60
    assert served == 60
    measured = served / elapsed
    # the first burst (5 calls) is free, the other 55 come at 50/s: at least 1.1 s
    assert elapsed >= (60 - gate.bucket.burst) / rate * 0.95
    assert measured <= rate + gate.bucket.burst, f"{measured:.1f} calls/s"


def test_no_more_calls_in_flight_than_the_concurrency_limit(sim, make_client) -> None:
    gate = CallGate(10_000, 2)
    client = make_client(gate=gate)
    client.warm_up()
    sim.admin.set_latency(100)
    creds = MASTER_HORECA.creds(ENV)
    started = time.monotonic()
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda _: client.debtors(creds), range(12)))
    elapsed = time.monotonic() - started
    assert gate.peak_in_flight == 2
    assert elapsed >= 12 * 0.1 / 2 * 0.95


def test_one_client_serves_many_threads_and_tokens(sim, client) -> None:
    sequential = {login.username: client.probe(login.creds()) for login in ALL_LOGINS}
    with ThreadPoolExecutor(10) as pool:
        parallel = list(pool.map(lambda login: (login.username, client.probe(login.creds())), ALL_LOGINS * 4))
    for username, probe in parallel:
        expected = sequential[username]
        assert (probe.domain, probe.debtors, probe.companies) == (expected.domain, expected.debtors,
                                                                  expected.companies)
    assert sorted(client.build_seconds) == ["CompanyService", "DebtorService"]  # each WSDL parsed once
    assert client.wsdl_cache.fetches == 2
    assert client.calls_made == sim.admin.call_count()
