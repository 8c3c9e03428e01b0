"""`l1nda-sync problems list|mute|unmute`: see what is open and silence a problem without losing it.

Muting keeps the problem and its state; it only stops mails (reminders and the recovery mail). Unmuting sends
no backlog: reminders resume one interval after the unmute. Exit codes: 0 ok, 2 bad input (unknown or
resolved problem), 1 anything else (e.g. the registry is unreachable).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from l1nda_sync.alerts import store
from l1nda_sync.alerts.problems import Kind
from l1nda_sync.alerts.store import ProblemRow


class ProblemInputError(ValueError):
    """Bad input: the message names the argument and the fix."""


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `problems` command to the `l1nda-sync` sub-parsers; dispatch with `args.handler(args)`."""
    parser = subparsers.add_parser("problems", help="list, mute and unmute alert problems",
                                   description="Alert problems: one per token and kind, mailed on open and resolve.")
    parser.add_argument("--database-url", default=argparse.SUPPRESS,
                        help="registry URL (default: L1NDA_DATABASE_URL or the Airflow connection l1nda_registry)")
    actions = parser.add_subparsers(dest="problems_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="show problems (open ones by default)")
    listing.add_argument("--state", choices=("open", "resolved", "all"), default="open")
    listing.add_argument("--kind", choices=[k.value for k in Kind])
    listing.add_argument("--token", type=int, metavar="TOKEN_ID")
    listing.add_argument("--limit", type=int, default=200)
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    for name, text in (("mute", "stop mails about an open problem (it stays open)"),
                       ("unmute", "mail about it again; no backlog, reminders resume one interval later")):
        action = actions.add_parser(name, help=text)
        action.add_argument("problem_id", type=int, metavar="PROBLEM_ID")
        action.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)
    return parser


def _connect(args: argparse.Namespace) -> Any:
    url = getattr(args, "database_url", None)
    if not url:
        from l1nda_sync.settings import Settings

        url = Settings.load().require_database_url()
    try:
        from l1nda_sync.registry.db import connect
    except ImportError:  # pragma: no cover - before the registry package lands
        import psycopg2

        return psycopg2.connect(url, application_name="l1nda-sync")
    return connect(url)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def _short(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else "-"


def _mail_counts(cur: Any, ids: list[int]) -> dict[int, dict[str, int]]:
    if not ids:
        return {}
    cur.execute("SELECT problem_id, state, count(*) FROM outbox WHERE problem_id = ANY(%s) GROUP BY 1, 2", (ids,))
    counts: dict[int, dict[str, int]] = {}
    for problem_id, state, n in cur.fetchall():
        counts.setdefault(problem_id, {})[state] = n
    return counts


def _labels(cur: Any, token_ids: list[int]) -> dict[int, str]:
    if not token_ids:
        return {}
    cur.execute("SELECT id, label FROM tokens WHERE id = ANY(%s)", (token_ids,))
    return dict(cur.fetchall())


def _as_dict(row: ProblemRow, label: str | None, mails: dict[str, int]) -> dict[str, Any]:
    return {
        "id": row.id, "kind": row.kind.value, "token_id": row.token_id, "token_label": label, "state": row.state,
        "stage": row.stage.value, "muted": row.muted, "opened_at": _iso(row.opened_at),
        "last_seen_at": _iso(row.last_seen_at), "cause_cleared_at": _iso(row.cause_cleared_at),
        "resolved_at": _iso(row.resolved_at), "escalated_at": _iso(row.escalated_at),
        "last_notified_at": _iso(row.last_notified_at), "mails": mails, "detail": row.detail,
    }


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("ID", "KIND", "TOKEN", "STATE", "OPENED (UTC)", "LAST SEEN", "CLEARED", "RESOLVED", "MUTED", "MAILS")
    body = []
    for r in rows:
        token = f"{r['token_id']} {r['token_label'] or ''}".strip() if r["token_id"] is not None else "(provider)"
        state = r["state"] if r["stage"] == "confirmed" else f"{r['state']} ({r['stage']})"
        mails = ", ".join(f"{n} {s}" for s, n in sorted(r["mails"].items())) or "none"
        body.append((str(r["id"]), r["kind"], token[:40], state,
                     *(_short(datetime.fromisoformat(r[k])) if r[k] else "-"
                       for k in ("opened_at", "last_seen_at", "cause_cleared_at", "resolved_at")),
                     "yes" if r["muted"] else "no", mails))
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in (head, *body)]
    return "\n".join(lines)


def list_command(conn: Any, args: argparse.Namespace, out: TextIO) -> int:
    if args.limit <= 0:
        raise ProblemInputError(f"--limit: must be a whole number greater than 0, got {args.limit}")
    with conn, conn.cursor() as cur:
        rows = store.list_problems(cur, state=None if args.state == "all" else args.state, kind=args.kind,
                                   token_id=args.token, limit=args.limit)
        labels = _labels(cur, sorted({r.token_id for r in rows if r.token_id is not None}))
        mails = _mail_counts(cur, [r.id for r in rows])
    shown = [_as_dict(r, labels.get(r.token_id) if r.token_id else None, mails.get(r.id, {})) for r in rows]
    if args.json:
        json.dump(shown, out, indent=2, default=str)
        out.write("\n")
    elif not shown:
        out.write(f"no {'' if args.state == 'all' else args.state + ' '}problems\n")
    else:
        out.write(_table(shown) + "\n")
    return 0


def set_muted(conn: Any, problem_id: int, muted: bool, now: datetime) -> tuple[ProblemRow, bool]:
    """Mute or unmute an open problem in one transaction; returns the row and whether anything changed."""
    verb = "mute" if muted else "unmute"
    with conn, conn.cursor() as cur:
        row = store.get_problem(cur, problem_id, lock=True)
        if row is None:
            raise ProblemInputError(f"PROBLEM_ID: no problem {problem_id}; see `l1nda-sync problems list`")
        if row.state != "open":
            raise ProblemInputError(f"PROBLEM_ID: problem {problem_id} is already resolved; only open problems "
                                    f"can be {verb}d")
        if row.muted == muted:
            return row, False
        values: dict[str, Any] = {"muted": muted}
        if not muted:
            values["unmuted_at"] = now
        return store.update_problem(cur, problem_id, **values), True


def run(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None,
        now: datetime | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        conn = _connect(args)
    except Exception as exc:
        err.write(f"l1nda-sync problems: {exc}\n")
        return 1
    try:
        if args.problems_command == "list":
            return list_command(conn, args, out)
        muted = args.problems_command == "mute"
        row, changed = set_muted(conn, args.problem_id, muted, now or datetime.now(UTC))
        if args.json:
            json.dump({"id": row.id, "muted": row.muted, "changed": changed}, out)
            out.write("\n")
        elif changed:
            done = "muted: no more mails about it" if muted else "unmuted"
            out.write(f"problem {row.id} ({row.kind.value}) {done}\n")
        else:
            out.write(f"problem {row.id} was already {'muted' if muted else 'not muted'}; nothing changed\n")
        return 0
    except ProblemInputError as exc:
        err.write(f"l1nda-sync problems {args.problems_command}: {exc}\n")
        return 2
    except Exception as exc:
        err.write(f"l1nda-sync problems {args.problems_command}: {type(exc).__name__}: {exc}\n")
        return 1
    finally:
        conn.close()
