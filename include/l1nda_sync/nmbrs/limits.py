"""Process-wide fair use: a token bucket on calls per second and a cap on calls in flight, shared by threads.

Nmbrs' fair use is 150 calls/s per login (beyond it each call is delayed half a second). The bucket refills at
`rate` per second and holds at most `burst` tokens (default a tenth of a second's worth, at least 1), so over
any one-second window at most `rate + burst` calls start: 110 for the default 100/s. Waiting callers reserve
their slot in order (the bucket may go negative), so a busy process is served first come, first served.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from l1nda_sync.nmbrs.errors import TransientError


class TokenBucket:
    """A rate limit: `rate` calls per second on average, at most `burst` at once."""

    def __init__(self, rate: float, burst: float | None = None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be greater than 0 calls/s, got {rate}")
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(1.0, self.rate / 10)
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1 call, got {burst}")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._stamp = clock()

    def reserve(self, timeout: float | None = None) -> float:
        """Take one token; return how long the caller must wait before its call may start.

        Raises TransientError (taking nothing) when that wait is longer than `timeout`.
        """
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate
            if timeout is not None and wait > timeout:
                raise TransientError(f"the rate limit ({self.rate:g} calls/s) leaves no room within the deadline")
            self._tokens -= 1
            return wait

    def acquire(self, timeout: float | None = None) -> float:
        """Block until one call may start; return the seconds waited."""
        wait = self.reserve(timeout)
        if wait > 0:
            self._sleep(wait)
        return wait


class CallGate:
    """Rate limit plus concurrency limit; `with gate.slot(timeout): <one HTTP call>`."""

    def __init__(self, calls_per_second: float, max_concurrency: int, *, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be 1 or more, got {max_concurrency}")
        self.bucket = TokenBucket(calls_per_second, burst, clock=clock, sleep=sleep)
        self.max_concurrency = max_concurrency
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._lock = threading.Lock()
        self.in_flight = 0
        self.peak_in_flight = 0

    @contextmanager
    def slot(self, remaining: Callable[[], float] | None = None) -> Iterator[None]:
        """Hold a concurrency slot and one rate token; `remaining()` is the seconds left of the call's deadline."""
        timeout = None if remaining is None else max(0.0, remaining())
        if not self._slots.acquire(timeout=timeout):
            raise TransientError(f"all {self.max_concurrency} Nmbrs call slots stayed busy until the deadline")
        try:
            self.bucket.acquire(None if remaining is None else max(0.0, remaining()))
            with self._lock:
                self.in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                yield
            finally:
                with self._lock:
                    self.in_flight -= 1
        finally:
            self._slots.release()


_GATES: dict[tuple[float, int], CallGate] = {}
_GATES_LOCK = threading.Lock()


def shared_gate(calls_per_second: float, max_concurrency: int) -> CallGate:
    """The process's gate for these limits: every client built with the same settings shares one."""
    key = (float(calls_per_second), int(max_concurrency))
    with _GATES_LOCK:
        gate = _GATES.get(key)
        if gate is None:
            gate = _GATES[key] = CallGate(calls_per_second, max_concurrency)
        return gate
