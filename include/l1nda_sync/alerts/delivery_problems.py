"""The operations problems about delivery, judged from what the two outboxes hold (run by the sweep).

- `outbox_stuck`: while any mail is 'uncertain' or 'failed' (until resent or dropped: `l1nda-sync outbox`).
- `webhook_failing`: while any webhook event is parked, or while the oldest pending event has been failing for
  `webhook_failing_after` seconds or more.

Both are read from the tables (`outbox`, `webhook_outbox`), so alerting needs nothing from the code that
delivers: webhook delivery may raise alerts, alerting never calls into webhook delivery.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from l1nda_sync.alerts.problems import Cause, Kind, Verb
from l1nda_sync.alerts.store import CAP
from l1nda_sync.alerts.tracker import track
from l1nda_sync.registry.db import fetch_one

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor

    from l1nda_sync.settings import Settings

STUCK_STATES = ("uncertain", "failed")


def stuck_cause(cur: Cursor) -> Cause:
    """outbox_stuck is there while any mail is 'uncertain' or 'failed' (until resent or dropped)."""
    cur.execute(
        """SELECT id, state, subject, recipients, attempts, last_error, count(*) OVER (),
                  count(*) FILTER (WHERE state = 'uncertain') OVER (), count(*) FILTER (WHERE state = 'failed') OVER ()
           FROM outbox WHERE state = ANY(%s) ORDER BY id LIMIT %s""",
        (list(STUCK_STATES), CAP),
    )
    rows = cur.fetchall()
    if not rows:
        return Cause.absent()
    entries = [{"id": r[0], "state": r[1], "subject": r[2], "recipients": list(r[3]), "attempts": r[4],
                "last_error": (r[5] or "")[:300]} for r in rows]
    return Cause(True, detail={"rows": rows[0][6], "uncertain": rows[0][7], "failed": rows[0][8],
                               "entries": entries, "more": max(0, rows[0][6] - len(entries))})


def webhook_failing_cause(cur: Cursor, now: datetime, settings: Settings) -> Cause:
    """webhook_failing is there while any event is parked, or while the oldest pending event has been failing
    for `webhook_failing_after` seconds or more."""
    cur.execute(
        """SELECT id, event, attempts, last_error, count(*) OVER () FROM webhook_outbox WHERE state = 'failed'
           ORDER BY id LIMIT %s""",
        (CAP,),
    )
    parked = cur.fetchall()
    cur.execute(
        """SELECT id, event, attempts, last_error, first_failed_at FROM webhook_outbox WHERE state = 'pending'
           ORDER BY id LIMIT 1""",
    )
    head = cur.fetchone()
    span = timedelta(seconds=float(settings.webhook_failing_after))
    stalled = head is not None and head[4] is not None and now - head[4] >= span
    if not parked and not stalled:
        return Cause.absent()
    detail: dict[str, Any] = {
        "parked": parked[0][4] if parked else 0,
        "entries": [{"id": r[0], "event": r[1], "attempts": r[2], "last_error": (r[3] or "")[:300]} for r in parked],
        "stalled": None,
    }
    detail["more"] = max(0, detail["parked"] - len(detail["entries"]))
    if stalled:
        assert head is not None
        cur.execute("SELECT count(*) FROM webhook_outbox WHERE state = 'pending'")
        detail["stalled"] = {"id": head[0], "event": head[1], "attempts": head[2],
                             "last_error": (head[3] or "")[:300],
                             "since": head[4].astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                             "waiting": fetch_one(cur)[0]}
    return Cause(True, detail=detail)


def track_delivery(conn: Connection, now: datetime, settings: Settings) -> Counter[str]:
    """Open, keep or clear the operations problems about delivery (`outbox_stuck`, `webhook_failing`) from what
    the outboxes hold now; reminders and the resolution after the quiet period are the sweep's usual steps.
    Returns counts per step taken."""
    with conn, conn.cursor() as cur:
        causes = {Kind.OUTBOX_STUCK: stuck_cause(cur), Kind.WEBHOOK_FAILING: webhook_failing_cause(cur, now, settings)}
        done = track(cur, None, causes, now=now, settings=settings)
    return Counter(action.verb.value for _kind, action in done if action.verb not in (Verb.NOTHING, Verb.SEEN))
