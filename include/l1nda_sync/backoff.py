"""The wait before a queued message is tried again: one rule for both outbox drains (mail and webhook).

After `attempts` failed attempts the next one waits 1 minute, doubling with each further failure, at most an
hour. A receiver that asks for more time (HTTP `Retry-After`, in seconds) gets it, up to the same hour: the
wait is the longer of the two, so a server's answer never shortens the backoff.

(The Nmbrs client's retries within one call are another matter: sub-second waits with jitter inside a call's
deadline, `l1nda_sync.nmbrs.retry`.)
"""

from __future__ import annotations

import math
from datetime import timedelta

FIRST_BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=1)
_MAX_DOUBLINGS = 20  # 2**20 minutes is far past the cap already; keeps the multiplication small


def backoff(attempts: int, *, retry_after: timedelta | None = None) -> timedelta:
    """The wait after `attempts` failed attempts (1 minute, 2, 4, ..., at most 1 hour), at least `retry_after`
    (itself capped at the hour)."""
    wait = min(FIRST_BACKOFF * (1 << max(0, min(attempts - 1, _MAX_DOUBLINGS))), MAX_BACKOFF)
    if retry_after is not None:
        wait = max(wait, min(max(retry_after, timedelta(0)), MAX_BACKOFF))
    return wait


def retry_after(value: object) -> timedelta | None:
    """An HTTP `Retry-After` header given in seconds, capped at `MAX_BACKOFF`; None when absent or unreadable.

    A negative or NaN value asks for no wait (0); an HTTP-date is not read (None).
    """
    try:
        seconds = float(str(value if value is not None else "").strip())
    except ValueError:
        return None
    if math.isnan(seconds) or seconds < 0:
        return timedelta(0)
    return min(timedelta(seconds=min(seconds, MAX_BACKOFF.total_seconds())), MAX_BACKOFF)
