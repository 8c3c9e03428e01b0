"""Posting queued webhook events through the Airflow HTTP connection `l1nda_api` (providers-http).

Order: one deliverer at a time (a session advisory lock); the oldest pending row goes first, and while it
waits for its retry nothing after it is sent, so the receiver sees events in the order they happened. Each
row: POST, mark it sent, commit. A crash after the POST
and before the commit sends that event again on the next drain: at least once, and the receiver drops the
repeat by its Idempotency-Key. A failed POST goes back to pending with exponential backoff (1 minute doubling,
at most 1 hour); after MAX_ATTEMPTS it is marked failed and logged.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

CONN_ID = "l1nda_api"
MAX_ATTEMPTS = 20
BATCH = 200
TIMEOUT = (5, 30)  # connect, read (seconds)
LOCK_KEY = 0x4C314E4457  # one deliverer at a time


def webhook_enabled(conn_id: str = CONN_ID) -> bool:
    """True when the Airflow connection exists (environment, secrets backend or metadata database)."""
    try:
        from airflow.sdk import BaseHook

        BaseHook.get_connection(conn_id)
    except Exception:
        return False
    return True


def _backoff(attempts: int) -> timedelta:
    return timedelta(minutes=min(60, 2 ** max(0, attempts - 1)))


def deliver(conn: Any, now: datetime, *, conn_id: str = CONN_ID, limit: int = BATCH) -> dict[str, int]:
    """Post the due events in id order; returns counts: sent, retry, failed."""
    counts: Counter[str] = Counter(dict.fromkeys(("sent", "retry", "failed"), 0))
    if not webhook_enabled(conn_id):
        return dict(counts)
    from airflow.providers.http.hooks.http import HttpHook

    hook = HttpHook(method="POST", http_conn_id=conn_id)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
        if not cur.fetchone()[0]:
            return {**counts, "busy": 1}
    try:
        _deliver_locked(conn, hook, now, limit, counts)
    finally:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return dict(counts)


def _deliver_locked(conn: Any, hook: Any, now: datetime, limit: int, counts: Counter[str]) -> None:
    for _ in range(limit):
        with conn, conn.cursor() as cur:
            cur.execute(
                """SELECT id, idempotency_key, event, payload, attempts, next_attempt_at FROM webhook_outbox
                   WHERE state = 'pending' ORDER BY id LIMIT 1 FOR UPDATE""",
            )
            row = cur.fetchone()
            if row is None or row[5] > now:
                break  # nothing pending, or the oldest is backing off: later events wait behind it
            row_id, key, event, payload, attempts, _due = row
            attempts += 1
            try:
                hook.run(endpoint=None, json={"event": event, "id": str(key), "data": payload},
                         headers={"Idempotency-Key": str(key), "Content-Type": "application/json"},
                         extra_options={"timeout": TIMEOUT})
            except Exception as exc:
                error = f"{type(exc).__name__}: {str(exc)[:300]}"
                failed = attempts >= MAX_ATTEMPTS
                cur.execute(
                    """UPDATE webhook_outbox SET attempts = %s, last_error = %s, state = %s,
                           next_attempt_at = %s WHERE id = %s""",
                    (attempts, error, "failed" if failed else "pending", now + _backoff(attempts), row_id),
                )
                counts["failed" if failed else "retry"] += 1
                log.warning("webhook event %s (%s) not delivered, attempt %d: %s", row_id, event, attempts, error)
                # Later rows would go out of order; stop and retry from here next time.
                break
            cur.execute(
                """UPDATE webhook_outbox SET attempts = %s, state = 'sent', sent_at = %s, last_error = NULL
                   WHERE id = %s""",
                (attempts, now, row_id),
            )
            counts["sent"] += 1
