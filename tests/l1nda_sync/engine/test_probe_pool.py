"""The process's probe workers (`probe_pool`): batches checked at once share `threads + SPARE` workers, tokens are
started first come, first served (a batch submitted first ends first), and a forked child gets workers of its
own. Through `probe_all` with a prober that only records which worker asked when."""

from __future__ import annotations

import os
import signal
import threading
from datetime import UTC, datetime

from l1nda_sync.engine.checking import TokenToCheck, probe_all
from l1nda_sync.engine.probe_pool import SPARE, probe_pool
from l1nda_sync.engine.token_state import Outcome
from l1nda_sync.masking import Secret
from l1nda_sync.nmbrs import Credentials, Probe

AT = datetime(2026, 12, 3, 9, tzinfo=UTC)
THREADS = 3  # a concurrency no other test uses: this module's pool is its own


class Recorder:
    """A prober that notes (worker, token) in start order; `gate`, when set, holds every probe until opened."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.started: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.gate = gate

    def probe(self, credentials: Credentials, previous: Probe | None = None, /) -> Probe:
        with self.lock:
            self.started.append((threading.current_thread().name, credentials.username))
        if self.gate is not None:
            assert self.gate.wait(30)
        return Probe(None, "env", (), (), 1, AT, True, None)


def batch(name: str, size: int) -> list[TokenToCheck]:
    return [TokenToCheck(n, f"{name}{n}", None, None, "ciphertext") for n in range(size)]


def check(tokens: list[TokenToCheck], prober: Recorder) -> list[Outcome]:
    records = probe_all(tokens, reveal=Secret, client=prober, now=lambda: AT, threads=THREADS)
    return [r.outcome for r in records]


def test_batches_checked_at_once_share_the_process_workers_first_come_first_served() -> None:
    gate = threading.Event()
    prober = Recorder(gate)
    outcomes: dict[str, list[Outcome]] = {}
    first = threading.Thread(target=lambda: outcomes.setdefault("a", check(batch("a", 20), prober)))
    first.start()
    while len(prober.started) < THREADS + SPARE:  # every worker holds one of a's tokens
        assert first.is_alive()
    second = threading.Thread(target=lambda: outcomes.setdefault("b", check(batch("b", 20), prober)))
    second.start()
    gate.set()
    first.join(30)
    second.join(30)
    assert outcomes == {"a": [Outcome.VALID] * 20, "b": [Outcome.VALID] * 20}
    order = [user for _, user in prober.started]
    assert order.index("b0") > max(order.index(f"a{n}") for n in range(20)), "a's tokens all started before b's"
    workers = {worker for worker, _ in prober.started}
    assert len(workers) <= THREADS + SPARE, "two batches, one pool"
    assert probe_pool(THREADS) is probe_pool(THREADS)


def test_a_forked_child_probes_on_workers_of_its_own() -> None:
    assert check(batch("parent", 4), Recorder()) == [Outcome.VALID] * 4  # the parent's pool has workers now
    pid = os.fork()
    if pid == 0:  # the child: the parent's workers do not exist here; a pool it inherited would never run a token
        code = 1
        try:
            signal.alarm(30)  # such a hang ends the child (SIGALRM), and the parent sees it
            code = 0 if check(batch("child", 4), Recorder()) == [Outcome.VALID] * 4 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
