"""Micro-benchmark of the Nmbrs client against the local simulator: `python -m l1nda_dev.bench.nmbrs_client`.

Prints the WSDL parse time (cold: fetched over HTTP; warm: from the disk cache), the client build time, and,
for master tokens reaching 1, 50 and 500 debtors (2 companies each), the time and Nmbrs calls of a first probe,
an unchanged probe and a full refresh. The simulator runs in this process (its own thread), so the times include
its share of the CPU; `--latency-ms` adds a per-call network delay like a real round trip to Nmbrs.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from l1nda_sync.masking import Secret
from l1nda_sync.nmbrs.client import SERVICES, NmbrsClient
from l1nda_sync.nmbrs.limits import CallGate
from l1nda_sync.nmbrs.records import Credentials, Probe
from l1nda_sync.settings import Settings

SUB_DOMAIN = "bench-office"
USERNAME = "master@bench-office.example"
TOKEN = "0123456789abcdef0123456789abcdef"  # noqa: S105 - a made-up token that only opens the local simulator


def world(debtors: int, companies_per_debtor: int = 2) -> dict[str, Any]:
    """A scenario dict: one office with `debtors` debtors, each with its companies, and one 'all' master login."""
    return {
        "settings": {"seed": 1},
        "environments": [{
            "sub_domain": SUB_DOMAIN,
            "product": "accountant",
            "tags": [{"number": 1, "name": "Horeca", "color": "#E4572E"}, {"number": 2, "name": "Retail"}],
            "debtors": [
                {"id": 10_000 + d, "number": f"D{d:04d}", "name": f"Debtor {d}",
                 "tags": ["Horeca" if d % 2 else "Retail"],
                 "companies": [{"id": 1_000_000 + d * 100 + c, "number": d * 100 + c, "name": f"Company {d}.{c}",
                                "period": "Month"} for c in range(companies_per_debtor)]}
                for d in range(debtors)
            ],
            "logins": [{"username": USERNAME, "level": "accountant", "token": TOKEN, "tag_filter": "all"}],
        }],
    }


def _settings(base_url: str, cache_dir: str) -> Settings:
    return Settings(nmbrs_base_url=base_url, nmbrs_wsdl_cache_dir=cache_dir, nmbrs_calls_per_second=1000.0)


def _timed_build(base_url: str, cache_dir: str) -> tuple[NmbrsClient, float, dict[str, float]]:
    started = time.perf_counter()
    client = NmbrsClient(settings=_settings(base_url, cache_dir), gate=CallGate(1000.0, 32))
    per_service = client.warm_up()
    return client, time.perf_counter() - started, per_service


def _probe(client: NmbrsClient, previous: Probe | None = None) -> tuple[Probe, float]:
    started = time.perf_counter()
    probe = client.probe(Credentials(USERNAME, Secret(TOKEN), previous.domain if previous else None), previous)
    return probe, time.perf_counter() - started


def run(sizes: Sequence[int], latency_ms: float, repeat: int) -> None:
    from nmbrs_sim.testing import running_simulator

    with running_simulator(world(1)) as sim, tempfile.TemporaryDirectory(prefix="l1nda-wsdl-") as cache_dir:
        cold, cold_total, cold_parts = _timed_build(sim.base_url, cache_dir)
        cold.close()
        warm = [_timed_build(sim.base_url, cache_dir) for _ in range(repeat)]
        for client, _, _ in warm:
            client.close()
        print(f"Nmbrs client micro-benchmark (simulator in-process; probes see {latency_ms:g} ms latency per call)")
        print("WSDL load + parse per service (cold = fetched over HTTP, warm = disk cache; median of warm runs):")
        for name in SERVICES:
            warm_s = statistics.median(parts[name] for _, _, parts in warm)
            print(f"  {name:<16} cold {cold_parts[name] * 1000:7.1f} ms   warm {warm_s * 1000:7.1f} ms")
        print(f"client build (NmbrsClient + both services): cold {cold_total * 1000:.1f} ms, "
              f"warm {statistics.median(total for _, total, _ in warm) * 1000:.1f} ms")
        print()
        print(f"{'debtors':>8} {'companies':>9} | {'first probe':>18} | {'unchanged':>16} | {'full refresh':>18}")
        for size in sizes:
            sim.admin.load_world(world(size))  # replaces the latency too: set it again
            sim.admin.set_latency(latency_ms)
            client, _, _ = _timed_build(sim.base_url, cache_dir)
            try:
                first, first_s = _probe(client)
                unchanged, unchanged_s = _probe(client, first)
                stale = dataclasses.replace(first, mapping_refreshed_at=first.mapping_refreshed_at.replace(year=2000))
                full, full_s = _probe(client, stale)
            finally:
                client.close()
            if len(first.debtors) != size or not unchanged.mapping_reused or full.mapping_reused:
                raise RuntimeError(f"the {size}-debtor world was not probed as expected")
            print(f"{size:>8} {len(first.companies):>9} | {first_s * 1000:8.1f} ms {first.calls:>4} calls | "
                  f"{unchanged_s * 1000:6.1f} ms {unchanged.calls:>3} calls | "
                  f"{full_s * 1000:8.1f} ms {full.calls:>4} calls")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m l1nda_dev.bench.nmbrs_client", description=__doc__.splitlines()[0])
    parser.add_argument("--debtors", type=int, nargs="+", default=[1, 50, 500],
                        help="world sizes: debtors reached by the probed master token (default: 1 50 500)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="simulated network latency per call")
    parser.add_argument("--repeat", type=int, default=5, help="warm client builds to take the median of")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.debtors) or args.repeat < 1 or args.latency_ms < 0:
        parser.error("--debtors and --repeat must be 1 or more, --latency-ms 0 or more")
    run(args.debtors, args.latency_ms, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
