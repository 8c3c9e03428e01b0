"""Retries for transient faults only: bounded attempts, exponential backoff with full jitter, one deadline per call.

Full jitter: the n-th wait is uniform in [0, min(max_delay, base_delay * 2**(n-1))], so threads that failed
together do not come back together. A wait that would end past the deadline is not taken: the last error is
raised at once. 1001-1004 and 2003-2009 are never retried (their errors are not `retryable`). An error that
carries the server's `Retry-After` (HTTP 429 or 503) waits at least that long; when that wait would end past
the deadline, the error is raised at once instead of sleeping into a call that cannot finish in time.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from l1nda_sync.nmbrs.errors import NmbrsError, TransientError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long one call is tried (see the module docstring for the backoff)."""

    attempts: int = 4
    deadline: float = 120.0
    base_delay: float = 0.25
    max_delay: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be 1 or more, got {self.attempts}")
        if self.deadline <= 0:
            raise ValueError(f"RetryPolicy.deadline must be greater than 0, got {self.deadline}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy delays must be 0 or more")

    def backoff_cap(self, retry: int) -> float:
        """Upper bound of the wait before retry number `retry` (1 = the first retry)."""
        return min(self.max_delay, self.base_delay * (2.0 ** (retry - 1)))

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        return (rng or _RNG).uniform(0.0, self.backoff_cap(retry))


_RNG = random.Random()  # noqa: S311 - jitter, not cryptography


@dataclass(frozen=True, slots=True)
class Deadline:
    """When a call must be over, on a monotonic clock."""

    ends_at: float
    clock: Callable[[], float] = time.monotonic

    def remaining(self) -> float:
        return self.ends_at - self.clock()


def call_with_retry(
    attempt: Callable[[Deadline], T],
    policy: RetryPolicy,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    on_retry: Callable[[int, float, NmbrsError], None] | None = None,
) -> T:
    """Run `attempt(deadline)` until it succeeds, raises a non-retryable error, runs out of attempts or time."""
    deadline = Deadline(clock() + policy.deadline, clock)
    retry = 0
    while True:
        if deadline.remaining() <= 0:
            raise TransientError(f"no answer within the call deadline of {policy.deadline:g} s")
        try:
            return attempt(deadline)
        except NmbrsError as error:
            if not error.retryable:
                raise
            retry += 1
            if retry >= policy.attempts:
                raise
            wait = policy.backoff(retry, rng)
            if error.retry_after is not None:
                wait = max(wait, error.retry_after)
            if wait >= deadline.remaining():
                raise
            if on_retry is not None:
                on_retry(retry, wait, error)
            sleep(wait)
