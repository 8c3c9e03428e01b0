"""Stuck outbox rows by hand: send a mail or webhook event again, or give up on it (moved here from the CLI's
`outbox` commands so the Airflow page does the same thing). Each is one transaction that locks the row first."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from l1nda_sync.registry.errors import Conflict, NotFound

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor

KINDS = ("mail", "webhook")
_TABLES = {"mail": "outbox", "webhook": "webhook_outbox"}


def lock(cur: Cursor, kind: str, row_id: int) -> tuple[str, str]:
    """(state, what) of the row, locked; NotFound naming ID."""
    if kind == "mail":
        cur.execute("SELECT state, subject FROM outbox WHERE id = %s FOR UPDATE", (row_id,))
    else:
        cur.execute("SELECT state, event FROM webhook_outbox WHERE id = %s FOR UPDATE", (row_id,))
    found = cur.fetchone()
    if found is None:
        raise NotFound("ID", f"no {kind} {row_id} in the outbox; see `l1nda-sync outbox list --state all`")
    state: str = found[0]
    what: str = found[1]
    return state, what


def resend(conn: Connection, kind: str, row_id: int, now: datetime) -> str:
    """Back to pending, due now (the mail keeps its Message-ID, the event its Idempotency-Key)."""
    with conn, conn.cursor() as cur:
        state, _what = lock(cur, kind, row_id)
        allowed = ("uncertain", "failed", "dropped") if kind == "mail" else ("failed", "dropped")
        if state not in allowed:
            raise Conflict("ID", f"{kind} {row_id} is {state}; only {', '.join(allowed)} rows can be sent again")
        if kind == "mail":
            cur.execute("""UPDATE outbox SET state = 'pending', next_attempt_at = %s, attempts = 0,
                               handover_at = NULL, claimed_until = NULL, dropped_at = NULL, dropped_reason = NULL,
                               dropped_by = NULL, last_error = %s WHERE id = %s""",
                        (now, f"was {state}; sent again by hand", row_id))
        else:
            cur.execute("""UPDATE webhook_outbox SET state = 'pending', next_attempt_at = %s, attempts = 0,
                               first_failed_at = NULL, dropped_at = NULL, dropped_reason = NULL, dropped_by = NULL,
                               last_error = %s WHERE id = %s""",
                        (now, f"was {state}; requeued by hand", row_id))
    return state


def drop(conn: Connection, kind: str, row_id: int, reason: str, actor: str, now: datetime) -> str:
    with conn, conn.cursor() as cur:
        state, _what = lock(cur, kind, row_id)
        if state in ("sent", "dropped", "sending"):
            raise Conflict("ID", f"{kind} {row_id} is {state}; only rows still waiting or stuck can be dropped")
        cur.execute(f"""UPDATE {_TABLES[kind]} SET state = 'dropped', dropped_at = %s, dropped_reason = %s,
                            dropped_by = %s WHERE id = %s""", (now, reason, actor, row_id))
    return state
