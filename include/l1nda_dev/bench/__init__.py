"""`make bench` (`python -m l1nda_dev.bench`): full sweeps at scale, measured against their physical bound.

A generated world (`nmbrs-sim generate`, default 2,000 tokens, ~41,000 companies) is served by `nmbrs-sim serve`
in its own process with an injected per-call latency; the registry is an embedded PostgreSQL. Each sweep runs
the code the DAG's tasks call (`SyncEngine.plan`, `check_batch` per batch, `finish`) in a fresh child process,
so its peak RSS is its own. See `run.py` for the phases and `figures.py` for the targets.
"""

from l1nda_dev.bench.run import main

__all__ = ["main"]
