"""The process-wide token bucket and concurrency limit."""

from __future__ import annotations

import threading
import time

import pytest

from l1nda_sync.nmbrs.errors import TransientError
from l1nda_sync.nmbrs.limits import CallGate, TokenBucket, shared_gate

from .fakes import FakeClock


def test_a_burst_is_free_then_calls_are_spaced_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=3, clock=clock, sleep=clock.sleep)
    waits = [bucket.acquire() for _ in range(6)]
    assert waits[:3] == [0, 0, 0]
    assert waits[3:] == pytest.approx([0.1, 0.1, 0.1])
    clock.advance(5)  # idle: refills to the burst, not beyond
    assert [bucket.acquire() for _ in range(4)] == pytest.approx([0, 0, 0, 0.1])


def test_no_one_second_window_holds_more_than_rate_plus_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100, clock=clock, sleep=clock.sleep)
    assert bucket.burst == 10
    starts = []
    for _ in range(1000):
        bucket.acquire()
        starts.append(clock.now)
        clock.advance(0.001)
    starts.sort()
    j = 0
    worst = 0
    for i, t in enumerate(starts):
        while starts[j] <= t - 1.0:
            j += 1
        worst = max(worst, i - j + 1)
    assert worst <= 110
    assert len(starts) / (starts[-1] - starts[0]) == pytest.approx(100, rel=0.05)


def test_a_wait_longer_than_the_timeout_raises_and_takes_nothing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1, burst=1, clock=clock, sleep=clock.sleep)
    assert bucket.acquire() == 0
    with pytest.raises(TransientError, match="rate limit"):
        bucket.acquire(timeout=0.5)
    assert bucket.acquire(timeout=1.0) == pytest.approx(1.0)


def test_the_bucket_holds_across_threads() -> None:
    bucket = TokenBucket(400, burst=4)
    stamps: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(25):
            bucket.acquire()
            with lock:
                stamps.append(time.monotonic())

    started = time.monotonic()
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert len(stamps) == 200
    assert elapsed >= (200 - 4) / 400 * 0.95  # 0.49 s at least: 8 threads did not outrun the bucket


def test_the_gate_caps_calls_in_flight() -> None:
    gate = CallGate(10_000, 3)
    release = threading.Event()
    inside = threading.Semaphore(0)

    def work() -> None:
        with gate.slot():
            inside.release()
            release.wait(5)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for _ in range(3):
        assert inside.acquire(timeout=5)
    assert not inside.acquire(timeout=0.2)  # the fourth waits for a slot
    assert gate.in_flight == 3
    release.set()
    for t in threads:
        t.join()
    assert (gate.in_flight, gate.peak_in_flight) == (0, 3)


def test_a_slot_not_freed_before_the_deadline_is_transient() -> None:
    gate = CallGate(10_000, 1)
    with gate.slot(), pytest.raises(TransientError, match="slots"), gate.slot(lambda: 0.05):
        pass
    with gate.slot(lambda: 0.05):  # released after the failure: usable again
        pass


def test_one_gate_per_process_for_the_same_limits() -> None:
    assert shared_gate(100, 32) is shared_gate(100.0, 32)
    assert shared_gate(100, 32) is not shared_gate(50, 32)
