"""The process's probe workers: one thread pool per call concurrency, shared by every batch the process checks.

A batch used to start a pool of its own (up to `nmbrs_max_concurrency` threads). Where one process checks
several batches at once (8 check batches sharing 32 calls in flight, as `make bench` models the DAG), that made
256 threads for 32 slots, and every batch drained at the same moment: the gate stood part-empty while the next
batches connected and loaded, and the answers of 32 calls waited for the GIL among 256 threads. A shared pool of
`threads + SPARE` workers serves the tokens first come, first served: a batch's tokens, submitted together, run
before those of batches that came later, so batches end one after another while the others keep the gate full,
and the process keeps about 40 probe threads whatever the number of batches. A process that checks one batch at
a time (a Celery or local worker running one check task) sees the same pool it had, plus the spares.

Workers outlive the batch (idle, blocked on the pool's queue) and end with the process. A child made by `fork`
does not inherit them: it starts pools of its own (`os.register_at_fork`).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

SPARE = 8  # workers beyond the calls in flight: the next tokens are decrypted and built while every slot is busy

_pools: dict[int, ThreadPoolExecutor] = {}
_lock = threading.Lock()


def probe_pool(threads: int) -> ThreadPoolExecutor:
    """The process's pool for `threads` calls in flight (`threads + SPARE` workers, started as work comes)."""
    with _lock:
        pool = _pools.get(threads)
        if pool is None:
            pool = _pools[threads] = ThreadPoolExecutor(max_workers=max(1, threads) + SPARE,
                                                        thread_name_prefix=f"probe{threads}")
        return pool


def _forget_after_fork() -> None:
    """In a forked child: the parent's workers do not exist here, and the lock may have been held at the fork."""
    global _lock
    _lock = threading.Lock()
    _pools.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
