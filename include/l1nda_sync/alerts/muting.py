"""Muting a problem: its mails stop (reminders and the recovery mail), it stays open; unmuting sends no backlog
(reminders resume one interval after the unmute). Shared by `l1nda-sync problems mute|unmute` and the Airflow
page."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from l1nda_sync.alerts import store
from l1nda_sync.alerts.store import ProblemRow
from l1nda_sync.registry.errors import Conflict, NotFound

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection


def set_muted(conn: Connection, problem_id: int, muted: bool, now: datetime) -> tuple[ProblemRow, bool]:
    """Mute or unmute an open problem in one transaction; returns the row and whether anything changed."""
    with conn, conn.cursor() as cur:
        row = store.get_problem(cur, problem_id, lock=True)
        if row is None:
            raise NotFound("ID", f"no problem {problem_id}; see `l1nda-sync problems list --state all`")
        if row.state != "open":
            raise Conflict("ID", f"problem {problem_id} is resolved; only open problems can be "
                                 f"{'muted' if muted else 'unmuted'}")
        if row.muted == muted:
            return row, False
        if muted:
            return store.update_problem(cur, problem_id, muted=True), True
        return store.update_problem(cur, problem_id, muted=False, unmuted_at=now), True
