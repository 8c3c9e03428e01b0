"""Retry policy: transient only, bounded attempts, full-jitter exponential backoff, one deadline per call."""

from __future__ import annotations

import itertools
import random

import pytest

from l1nda_sync.nmbrs.errors import CredentialInvalid, DataNotAllowed, OperationNotAllowed, TransientError
from l1nda_sync.nmbrs.retry import RetryPolicy, call_with_retry

from .fakes import FakeClock


def failing(errors: list[Exception], result: str = "ok", clock: FakeClock | None = None, cost: float = 0.0):
    calls: list[float] = []

    def attempt(deadline) -> str:
        calls.append(deadline.remaining())
        if clock is not None:  # like the transport, an attempt's read time-out is capped by the deadline
            clock.advance(min(cost, deadline.remaining()))
        if errors:
            raise errors.pop(0)
        return result

    return attempt, calls


def test_transient_faults_are_retried_until_success() -> None:
    clock = FakeClock()
    attempt, calls = failing([TransientError("1006"), TransientError("9999")])
    assert call_with_retry(attempt, RetryPolicy(attempts=4), clock=clock, sleep=clock.sleep) == "ok"
    assert len(calls) == 3
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize("error", [CredentialInvalid("1001"), OperationNotAllowed("1002"), DataNotAllowed("2004")])
def test_refusals_are_never_retried(error) -> None:
    clock = FakeClock()
    attempt, calls = failing([error])
    with pytest.raises(type(error)):
        call_with_retry(attempt, RetryPolicy(attempts=5), clock=clock, sleep=clock.sleep)
    assert len(calls) == 1
    assert clock.sleeps == []


def test_attempts_are_bounded_and_the_last_error_is_raised() -> None:
    clock = FakeClock()
    errors = [TransientError(f"try {i}") for i in range(10)]
    attempt, calls = failing(errors)
    with pytest.raises(TransientError, match="try 2"):
        call_with_retry(attempt, RetryPolicy(attempts=3), clock=clock, sleep=clock.sleep)
    assert len(calls) == 3


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0)
    assert [policy.backoff_cap(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    rng = random.Random(1)
    waits = [policy.backoff(3, rng) for _ in range(2000)]
    assert all(0 <= w <= 2.0 for w in waits)
    assert min(waits) < 0.1  # spread over the whole range, not a fixed delay
    assert max(waits) > 1.9
    clock = FakeClock()
    attempt, _ = failing([TransientError("x")] * 3)
    call_with_retry(attempt, RetryPolicy(attempts=4, base_delay=0.5, max_delay=3.0), clock=clock,
                    sleep=clock.sleep, rng=random.Random(2))
    assert [s <= c for s, c in zip(clock.sleeps, (0.5, 1.0, 2.0), strict=True)] == [True, True, True]


def test_the_deadline_ends_the_call_with_the_last_error() -> None:
    clock = FakeClock()
    attempt, calls = failing([TransientError(f"slow {i}") for i in range(100)], clock=clock, cost=4.0)
    with pytest.raises(TransientError, match="slow"):
        call_with_retry(attempt, RetryPolicy(attempts=100, deadline=10.0, base_delay=1.0, max_delay=1.0),
                        clock=clock, sleep=clock.sleep, rng=random.Random(0))
    assert clock.now - 1000.0 <= 10.0
    assert 2 <= len(calls) <= 3
    assert calls[0] == pytest.approx(10.0)
    assert all(later < earlier for earlier, later in itertools.pairwise(calls))


def test_on_retry_hears_each_retry() -> None:
    clock = FakeClock()
    heard: list[tuple[int, str]] = []
    attempt, _ = failing([TransientError("a"), TransientError("b")])
    call_with_retry(attempt, RetryPolicy(attempts=4), clock=clock, sleep=clock.sleep,
                    on_retry=lambda n, wait, err: heard.append((n, str(err))))
    assert heard == [(1, "a"), (2, "b")]


@pytest.mark.parametrize("kwargs", [{"attempts": 0}, {"deadline": 0}, {"base_delay": -1}])
def test_a_policy_refuses_nonsense(kwargs) -> None:
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kwargs)


def test_retry_after_sets_the_least_wait_and_a_wait_past_the_deadline_is_not_taken() -> None:
    waits: list[float] = []
    answers = iter([30.0, 2.0])

    def attempt(_deadline):
        error = TransientError("HTTP 429")
        error.retry_after = next(answers, None)
        raise error

    policy = RetryPolicy(attempts=5, deadline=10.0, base_delay=0.01, max_delay=0.01)
    clock = [0.0]
    with pytest.raises(TransientError) as caught:
        call_with_retry(attempt, policy, clock=lambda: clock[0], sleep=waits.append)
    assert caught.value.retry_after == 30.0  # 30 s > the 10 s deadline: raised at once
    assert waits == []
    answers = iter([2.0, 3.0])
    with pytest.raises(TransientError):
        call_with_retry(attempt, RetryPolicy(attempts=3, deadline=10.0, base_delay=0.01, max_delay=0.01),
                        clock=lambda: clock[0], sleep=waits.append)
    assert waits == [2.0, 3.0]


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), (" 0 ", 0.0), ("-3", 0.0), ("soon", None), ("", None),
                                                 (None, None), ("Mon, 01 Jun 2026 08:00:30 GMT", 30.0),
                                                 ("Mon, 01 Jun 2026 07:59:00 GMT", 0.0)])
def test_retry_after_header(header, seconds) -> None:
    from datetime import UTC, datetime

    from l1nda_sync.nmbrs.transport import retry_after_seconds

    assert retry_after_seconds(header, now=datetime(2026, 6, 1, 8, 0, tzinfo=UTC)) == seconds
