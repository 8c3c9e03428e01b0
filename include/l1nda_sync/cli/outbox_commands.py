"""`l1nda-sync outbox list|resend|requeue|drop`: the alert mails and webhook events that need a person.

Mails are delivered at most once: a mail whose hand-over broke off is 'uncertain' (it may have arrived) and one
the server kept refusing is 'failed'; neither is sent again by itself. Webhook events are delivered at least
once: one the platform refused for good (a 4xx) is parked as 'failed'. Here an operator sees them, sends one
again (`resend` for a mail asks for confirmation, `--yes` skips it; `requeue` for either), or gives up on it
(`drop --reason`). IDs: `12` or `mail:12` for a mail, `webhook:7` for a webhook event (as `list` shows them).
Bad input exits 2 and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from l1nda_sync.registry.outbox_rows import drop, lock, resend

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection

    from l1nda_sync.cli.context import Commands, Context

MAIL_STATES = ("pending", "sending", "sent", "failed", "uncertain", "dropped")
WEBHOOK_STATES = ("pending", "sent", "failed", "dropped")
STATES = tuple(dict.fromkeys((*MAIL_STATES, *WEBHOOK_STATES)))
DEFAULT_STATES = ("uncertain", "failed")
REASON_MAX = 500


def _ref(value: str) -> tuple[str, int]:
    """'12' / 'mail:12' -> ('mail', 12); 'webhook:7' -> ('webhook', 7)."""
    kind, _, number = value.strip().rpartition(":")
    kind = kind.lower() or "mail"
    if kind not in ("mail", "webhook") or not number.isdigit() or int(number) < 1:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an outbox id: give 12 or mail:12 for a mail, webhook:7 for a webhook event")
    return kind, int(number)


def _states(value: str) -> tuple[str, ...]:
    chosen = tuple(s.strip() for s in value.split(",") if s.strip())
    if value.strip() == "all":
        return STATES
    wrong = [s for s in chosen if s not in STATES]
    if not chosen or wrong:
        raise argparse.ArgumentTypeError(f"unknown state(s) {', '.join(wrong) or value!r}: use a comma-separated "
                                         f"list of {', '.join(STATES)}, or all")
    return chosen


def _reason(value: str) -> str:
    text = " ".join(value.split())
    if not text:
        raise argparse.ArgumentTypeError("give a reason, e.g. --reason 'arrived, checked with the customer'")
    if len(text) > REASON_MAX:
        raise argparse.ArgumentTypeError(f"at most {REASON_MAX} characters, got {len(text)}")
    return text


def _limit(value: str) -> int:
    if not value.strip().isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of 1 or more")
    return int(value)


def register(commands: Commands, common: argparse.ArgumentParser | None = None) -> None:
    parents = [common] if common is not None else []
    group = commands.add_parser("outbox", help="alert mails and webhook events that need a person",
                                description=__doc__.split("\n\n")[1].replace("\n", " "))
    group.set_defaults(group_parser=group)
    sub = group.add_subparsers(dest="outbox_command", metavar="ACTION")

    lst = sub.add_parser("list", parents=parents, help="list rows (uncertain and failed unless --state says)")
    lst.add_argument("--state", type=_states, default=DEFAULT_STATES, metavar="STATE[,STATE]",
                     help=f"one or more of {', '.join(STATES)}, or all (default: uncertain,failed)")
    lst.add_argument("--kind", choices=("mail", "webhook", "all"), default="all")
    lst.add_argument("--limit", type=_limit, default=200, metavar="N", help="at most N rows of each kind")
    lst.set_defaults(handler=run_list)

    for name, text in (("resend", "send a mail (or webhook event) again; asks first, --yes skips that"),
                       ("requeue", "put a failed webhook event (or mail) back in line; asks first for a mail")):
        cmd = sub.add_parser(name, parents=parents, help=text)
        cmd.add_argument("id", metavar="ID", type=_ref, help="12 or mail:12, webhook:7")
        cmd.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        cmd.set_defaults(handler=run_resend)

    drop = sub.add_parser("drop", parents=parents, help="give up on a row, with the reason (kept on the row)")
    drop.add_argument("id", metavar="ID", type=_ref, help="12 or mail:12, webhook:7")
    drop.add_argument("--reason", required=True, type=_reason)
    drop.set_defaults(handler=run_drop)


# -- reading ------------------------------------------------------------------------------------------------

def list_rows(
    conn: Connection, *, states: tuple[str, ...], kind: str = "all", limit: int = 200
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with conn, conn.cursor() as cur:
        if kind in ("mail", "all"):
            cur.execute(
                """SELECT id, state, event, audience, recipients, subject, attempts, created_at, sent_at,
                          last_error, dropped_reason FROM outbox WHERE state = ANY(%s) ORDER BY id LIMIT %s""",
                ([s for s in states if s in MAIL_STATES], limit))
            for r in cur.fetchall():
                rows.append({"id": f"mail:{r[0]}", "kind": "mail", "state": r[1], "what": f"{r[2]} ({r[3]})",
                             "to": ", ".join(r[4]), "subject": r[5], "attempts": r[6], "created_at": r[7],
                             "sent_at": r[8], "last_error": r[9], "dropped_reason": r[10]})
        if kind in ("webhook", "all"):
            cur.execute(
                """SELECT id, state, event, idempotency_key::text, attempts, created_at, sent_at, last_error,
                          dropped_reason FROM webhook_outbox WHERE state = ANY(%s) ORDER BY id LIMIT %s""",
                ([s for s in states if s in WEBHOOK_STATES], limit))
            for r in cur.fetchall():
                rows.append({"id": f"webhook:{r[0]}", "kind": "webhook", "state": r[1], "what": r[2],
                             "to": "l1nda_api", "subject": f"Idempotency-Key {r[3]}", "attempts": r[4],
                             "created_at": r[5], "sent_at": r[6], "last_error": r[7], "dropped_reason": r[8]})
    return rows


def run_list(ctx: Context) -> int:
    from l1nda_sync.cli import output

    args = ctx.args
    rows = list_rows(ctx.connect(), states=args.state, kind=args.kind, limit=args.limit)

    def text() -> str:
        table = [(r["id"], r["state"], r["what"], r["to"], r["subject"], r["attempts"], r["created_at"],
                  (r["dropped_reason"] or r["last_error"] or "")[:80]) for r in rows]
        return output.table(("id", "state", "what", "to", "subject", "attempts", "created (UTC)", "note"), table,
                            empty=f"nothing {'/'.join(args.state)} in the outbox")

    ctx.emit(rows, text)
    return 0


# -- writing ------------------------------------------------------------------------------------------------

def _confirm(ctx: Context, question: str) -> bool:
    if ctx.args.yes:
        return True
    print(f"{question} [y/N] ", end="", file=ctx.err, flush=True)
    answer = sys.stdin.readline() if sys.stdin is not None else ""
    return answer.strip().lower() in ("y", "yes")


def run_resend(ctx: Context) -> int:
    kind, row_id = ctx.args.id
    conn = ctx.connect()
    with conn, conn.cursor() as cur:  # look first (no lock): a missing row or a wrong state fails before asking
        state, what = lock(cur, kind, row_id)
    if kind == "mail" and state in ("uncertain", "failed", "dropped"):
        warning = (" It may already have arrived (its hand-over broke off); check with the recipients first."
                   if state == "uncertain" else "")
        if not _confirm(ctx, f"Send mail {row_id} ({what}) again?{warning}"):
            ctx.note(f"mail {row_id} not sent again; nothing was written")
            return 1
    before = resend(conn, kind, row_id, datetime.now(UTC))
    ctx.emit({"id": f"{kind}:{row_id}", "was": before, "state": "pending"},
             f"{kind} {row_id} ({what}) was {before}; it is pending again and goes out with the next drain")
    return 0


def run_drop(ctx: Context) -> int:
    kind, row_id = ctx.args.id
    before = drop(ctx.connect(), kind, row_id, ctx.args.reason, ctx.actor, datetime.now(UTC))
    ctx.emit({"id": f"{kind}:{row_id}", "was": before, "state": "dropped", "reason": ctx.args.reason},
             f"{kind} {row_id} was {before}; dropped ({ctx.args.reason})")
    return 0


__all__ = ["drop", "list_rows", "register", "resend"]
