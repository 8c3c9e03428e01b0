"""The one backoff rule of both outbox drains (mail and webhook): 1 minute doubling, at most an hour, at least
what the receiver's Retry-After asks for (capped at the hour too)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from l1nda_sync.backoff import MAX_BACKOFF, backoff, retry_after

MIN = timedelta(minutes=1)


def test_one_minute_doubling_up_to_an_hour() -> None:
    assert [backoff(n) for n in range(1, 9)] == [MIN, 2 * MIN, 4 * MIN, 8 * MIN, 16 * MIN, 32 * MIN, MAX_BACKOFF,
                                                 MAX_BACKOFF]
    assert backoff(0) == MIN, "no failure yet counts as the first"
    assert backoff(10_000) == MAX_BACKOFF, "a long outage stays at the cap"


def test_retry_after_lengthens_but_never_shortens_the_wait() -> None:
    assert backoff(1, retry_after=timedelta(minutes=5)) == 5 * MIN
    assert backoff(4, retry_after=timedelta(seconds=10)) == 8 * MIN
    assert backoff(1, retry_after=timedelta(days=1)) == MAX_BACKOFF, "a receiver cannot park us past the hour"
    assert backoff(3, retry_after=None) == 4 * MIN


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ("120", timedelta(seconds=120)),
        (" 1.5 ", timedelta(seconds=1.5)),
        ("0", timedelta(0)),
        ("-3", timedelta(0)),
        ("nan", timedelta(0)),
        ("86400", MAX_BACKOFF),
        ("inf", MAX_BACKOFF),
        ("1e400", MAX_BACKOFF),
        ("", None),
        (None, None),
        ("soon", None),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),  # an HTTP-date is not read: the backoff alone applies
    ],
)
def test_retry_after_header(header: str | None, wait: timedelta | None) -> None:
    assert retry_after(header) == wait
