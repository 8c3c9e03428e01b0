"""Posting queued webhook events through the Airflow HTTP connection `l1nda_api` (providers-http).

Guarantee: AT LEAST ONCE, in order, and nothing dropped silently.
- One deliverer at a time (a session advisory lock). The oldest pending row goes first; each row: POST, mark
  it, commit. A crash after the POST and before the commit sends that event again on the next drain; the
  receiver drops the repeat by its Idempotency-Key.
- A 2xx answer: sent.
- A 4xx answer other than 408 and 429: the receiver refuses this event for good (retrying cannot help). It is
  parked ('failed', with the answer in last_error) and later events go on. Operations get a `webhook_failing`
  problem while any event is parked; `l1nda-sync outbox requeue|drop` settles it.
- 5xx, 408, 429, a redirect that was not followed, a time-out or a network error: the event stays pending and
  is retried with backoff (`l1nda_sync.backoff`: 1 minute doubling, at most 1 hour; a 429's Retry-After is
  honoured up to an hour),
  for as long as it takes. Nothing after it is sent meanwhile, so the receiver sees events in order. After
  `webhook_failing_after` (default 1 hour) of failing, operations get the same `webhook_failing` problem; it
  clears when delivery resumes.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from l1nda_sync.backoff import backoff, retry_after
from l1nda_sync.registry import locks

if TYPE_CHECKING:
    import requests
    from airflow.providers.http.hooks.http import HttpHook
    from psycopg2.extensions import connection as Connection

log = logging.getLogger(__name__)

CONN_ID = "l1nda_api"
BATCH = 200
TIMEOUT = (5, 30)  # connect, read (seconds)
RETRIED_4XX = frozenset({408, 429})  # request time-out, too many requests: the event itself is fine


def webhook_enabled(conn_id: str = CONN_ID) -> bool:
    """True when the Airflow connection exists (environment, secrets backend or metadata database)."""
    try:
        from airflow.sdk import BaseHook

        BaseHook.get_connection(conn_id)
    except Exception:
        return False
    return True


def _retry_after(response: requests.Response) -> timedelta | None:
    headers = response.headers
    return retry_after(headers.get("Retry-After") if headers else None)


def _post(hook: HttpHook, key: str, event: str, payload: Any) -> tuple[str, str | None, timedelta | None]:
    """One POST: ('sent' | 'park' | 'retry', error text, wait the receiver asked for). `payload`: the event's
    JSON data as stored."""
    try:
        response: requests.Response = hook.run(endpoint=None, json={"event": event, "id": key, "data": payload},
                            headers={"Idempotency-Key": key, "Content-Type": "application/json"},
                            extra_options={"timeout": TIMEOUT, "check_response": False})
    except Exception as exc:  # connection refused, reset, time-out, DNS: the receiver never answered
        return "retry", f"{type(exc).__name__}: {str(exc)[:300]}", None
    status = int(response.status_code)
    if 200 <= status < 300:
        return "sent", None, None
    body = (response.text or "").strip().replace("\n", " ")[:200]
    error = f"HTTP {status} {response.reason or ''}".rstrip() + (f": {body}" if body else "")
    if 400 <= status < 500 and status not in RETRIED_4XX:
        return "park", error, None
    return "retry", error, _retry_after(response) if status == 429 else None


def deliver(conn: Connection, now: datetime, *, conn_id: str = CONN_ID, limit: int = BATCH) -> dict[str, int]:
    """Post the due events in id order; returns counts: sent, retry, failed (parked for good)."""
    counts: Counter[str] = Counter(dict.fromkeys(("sent", "retry", "failed"), 0))
    if not webhook_enabled(conn_id):
        return dict(counts)
    from airflow.providers.http.hooks.http import HttpHook

    hook = HttpHook(method="POST", http_conn_id=conn_id)
    with conn, conn.cursor() as cur:
        if not locks.try_lock_webhook_delivery(cur):
            return {**counts, "busy": 1}
    try:
        _deliver_locked(conn, hook, now, limit, counts)
    finally:
        with conn, conn.cursor() as cur:
            locks.unlock_webhook_delivery(cur)
    return dict(counts)


def _deliver_locked(conn: Connection, hook: HttpHook, now: datetime, limit: int, counts: Counter[str]) -> None:
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
            outcome, error, wait = _post(hook, str(key), event, payload)
            if outcome == "sent":
                cur.execute(
                    """UPDATE webhook_outbox SET attempts = %s, state = 'sent', sent_at = %s, last_error = NULL,
                           first_failed_at = NULL WHERE id = %s""",
                    (attempts, now, row_id),
                )
                counts["sent"] += 1
                continue
            if outcome == "park":
                cur.execute(
                    """UPDATE webhook_outbox SET attempts = %s, last_error = %s, state = 'failed',
                           first_failed_at = coalesce(first_failed_at, %s) WHERE id = %s""",
                    (attempts, error, now, row_id),
                )
                counts["failed"] += 1
                log.error("webhook event %s (%s) refused for good, parked (later events go on): %s",
                          row_id, event, error)
                continue
            cur.execute(
                """UPDATE webhook_outbox SET attempts = %s, last_error = %s, next_attempt_at = %s,
                       first_failed_at = coalesce(first_failed_at, %s) WHERE id = %s""",
                (attempts, error, now + backoff(attempts, retry_after=wait), now, row_id),
            )
            counts["retry"] += 1
            log.warning("webhook event %s (%s) not delivered, attempt %d, retried later: %s", row_id, event,
                        attempts, error)
            break  # later rows would go out of order; retry from here next time
