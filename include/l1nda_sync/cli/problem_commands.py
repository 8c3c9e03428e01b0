"""`l1nda-sync problems list|mute|unmute`: see what is open, and silence a problem without losing it.

Follows the `l1nda-sync` conventions (l1nda_sync.cli): `register(commands, common)` adds the group, each
handler takes the command `Context`; bad input raises InvalidInput (exit 2, nothing written).
Muting keeps the problem and its state and stops its mails (reminders and the recovery mail). Unmuting sends
no backlog: reminders resume one interval after the unmute.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from l1nda_sync.alerts import store
from l1nda_sync.alerts.muting import set_muted
from l1nda_sync.alerts.problems import Kind
from l1nda_sync.alerts.store import ProblemRow
from l1nda_sync.registry import validation as v
from l1nda_sync.registry.errors import InvalidInput

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor

    from l1nda_sync.cli.context import Commands, Context


def _id(value: str) -> int:
    try:
        return v.positive_id(value, "ID")
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _limit(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {number}")
    return number


def register(commands: Commands, common: argparse.ArgumentParser | None = None) -> None:
    """Add `problems` to the `l1nda-sync` sub-commands."""
    parents = [common] if common is not None else []
    group = commands.add_parser("problems", help="list, mute and unmute alert problems",
                                description="Alert problems: one per token and kind, mailed when they open, "
                                            "escalate and resolve, and as a reminder while open.")
    group.set_defaults(group_parser=group)
    sub = group.add_subparsers(dest="problems_command", metavar="ACTION")

    lst = sub.add_parser("list", parents=parents, help="list problems (open ones unless --state says otherwise)")
    lst.add_argument("--state", choices=("open", "resolved", "all"), default="open")
    lst.add_argument("--kind", choices=[k.value for k in Kind])
    lst.add_argument("--token", metavar="ID", type=_id, help="only this token's problems")
    lst.add_argument("--limit", metavar="N", type=_limit, default=200, help="at most N rows (default 200)")
    lst.set_defaults(handler=run_list)

    mute = sub.add_parser("mute", parents=parents, help="stop mails about an open problem (it stays open)")
    mute.add_argument("id", metavar="ID", type=_id)
    mute.set_defaults(handler=run_mute)

    unmute = sub.add_parser("unmute", parents=parents,
                            help="mail about it again (no backlog; reminders resume one interval later)")
    unmute.add_argument("id", metavar="ID", type=_id)
    unmute.set_defaults(handler=run_unmute)


def _mail_counts(cur: Cursor, ids: list[int]) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {}
    if ids:
        cur.execute("SELECT problem_id, state, count(*) FROM outbox WHERE problem_id = ANY(%s) GROUP BY 1, 2", (ids,))
        for problem_id, state, n in cur.fetchall():
            counts.setdefault(problem_id, {})[state] = n
    return counts


def _labels(cur: Cursor, token_ids: list[int]) -> dict[int, str]:
    if not token_ids:
        return {}
    cur.execute("SELECT id, label FROM tokens WHERE id = ANY(%s)", (token_ids,))
    return dict(cur.fetchall())


def _shown(row: ProblemRow, label: str | None, mails: dict[str, int]) -> dict[str, Any]:
    return {
        "id": row.id, "kind": row.kind.value, "token_id": row.token_id, "token_label": label, "state": row.state,
        "stage": row.stage.value, "muted": row.muted, "opened_at": row.opened_at, "last_seen_at": row.last_seen_at,
        "cause_cleared_at": row.cause_cleared_at, "resolved_at": row.resolved_at, "escalated_at": row.escalated_at,
        "last_notified_at": row.last_notified_at, "mails": mails, "detail": row.detail,
    }


def list_problems(conn: Connection, *, state: str = "open", kind: str | None = None, token_id: int | None = None,
                  limit: int = 200) -> list[dict[str, Any]]:
    with conn, conn.cursor() as cur:
        rows = store.list_problems(cur, state=None if state == "all" else state, kind=kind, token_id=token_id,
                                   limit=limit)
        labels = _labels(cur, sorted({r.token_id for r in rows if r.token_id is not None}))
        mails = _mail_counts(cur, [r.id for r in rows])
    return [_shown(r, labels.get(r.token_id) if r.token_id else None, mails.get(r.id, {})) for r in rows]


def run_list(ctx: Context) -> int:
    from l1nda_sync.cli import output

    args = ctx.args
    shown = list_problems(ctx.connect(), state=args.state, kind=args.kind, token_id=args.token, limit=args.limit)

    def text() -> str:
        rows = [
            (p["id"], p["kind"] if p["stage"] == "confirmed" else f"{p['kind']} ({p['stage']})",
             f"{p['token_id']} {p['token_label']}" if p["token_id"] else "(provider)", p["state"],
             p["opened_at"], p["last_seen_at"], p["cause_cleared_at"], p["resolved_at"], p["muted"], p["mails"])
            for p in shown
        ]
        return output.table(("id", "kind", "token", "state", "opened (UTC)", "last seen", "cleared", "resolved",
                             "muted", "mails"), rows,
                            empty="no problems" if args.state == "all" else f"no {args.state} problems")

    ctx.emit(shown, text)
    return 0


def _run_set(ctx: Context, muted: bool) -> int:
    row, changed = set_muted(ctx.connect(), ctx.args.id, muted, datetime.now(UTC))
    if changed:
        text = (f"problem {row.id} ({row.kind.value}) muted: it stays open, no more mails about it" if muted else
                f"problem {row.id} ({row.kind.value}) unmuted: no backlog is sent; reminders resume one interval "
                "from now")
    else:
        text = f"problem {row.id} was already {'muted' if muted else 'unmuted'}; nothing changed"
    ctx.emit({"id": row.id, "kind": row.kind.value, "muted": row.muted, "changed": changed}, text)
    return 0


def run_mute(ctx: Context) -> int:
    return _run_set(ctx, True)


def run_unmute(ctx: Context) -> int:
    return _run_set(ctx, False)
