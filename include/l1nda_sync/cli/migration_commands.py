"""`l1nda-sync migration status|preview`: who is ready for the end of SOAP, and what the cutover will do.

`status` shows each wanted link's readiness (`soap_only`, `rest_ready`, `ambiguous`) with its customer's invitation
state, grouped per customer and per accountant (master) token, and the countdown to `soap_end` (table, `--json`,
`--csv`). `preview [--at DATE]` shows what the cutover does at that time (default: soap_end, or now once it
passed), from the same pure plan the cutover carries out. Both only read. `status --at DATE` is the clock hook: the
readiness, invitation states and countdown as at that time (a simulated clock: the demo, the stories), default now.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from l1nda_sync.cli.context import Context
from l1nda_sync.migration import world
from l1nda_sync.migration.readiness import assess
from l1nda_sync.migration.report import preview_text, status_csv, status_data, status_text
from l1nda_sync.migration.running import preview
from l1nda_sync.registry import db
from l1nda_sync.registry import validation as v
from l1nda_sync.registry.errors import InvalidInput
from l1nda_sync.settings import parse_moment

if TYPE_CHECKING:
    from l1nda_sync.cli.context import Commands


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser("migration", help="the move from SOAP to REST before soap_end",
                                description="Readiness for the end of Nmbrs' SOAP API and the cutover's preview.")
    group.set_defaults(group_parser=group)
    sub = group.add_subparsers(dest="migration_command", metavar="ACTION")
    status = sub.add_parser("status", parents=[common], help="each link's readiness, per customer and accountant")
    status.add_argument("--customer", metavar="REF", help="only this customer's links")
    status.add_argument("--csv", action="store_true", help="one CSV row per link instead of the tables")
    status.add_argument("--at", metavar="DATE", help="as at this time (default now): YYYY-MM-DD or "
                                                     "YYYY-MM-DDTHH:MM (Amsterdam time unless an offset is given)")
    status.set_defaults(handler=run_status)
    preview = sub.add_parser("preview", parents=[common], help="what the cutover would do at a time",
                             description="What the cutover does at --at (default: soap_end, or now once it "
                                         "passed): links that stay or move to REST, links that suspend, notices.")
    preview.add_argument("--at", metavar="DATE", help="YYYY-MM-DD or YYYY-MM-DDTHH:MM (Amsterdam time unless an "
                                                      "offset is given)")
    preview.set_defaults(handler=run_preview)
    contact = sub.add_parser("contact", parents=[common], help="a debtor's contact for the campaign's invitations",
                             description="Record who at a customer may consent (an accountant's debtor has no "
                                         "contact of its own): the campaign invites them while its links are "
                                         "soap_only.")
    contact.add_argument("--customer", metavar="REF", required=True, help="L1NDA's customer reference")
    contact.add_argument("--contact", metavar="EMAIL", required=True, help="who may consent in Nmbrs")
    contact.add_argument("--language", metavar="LANG", help="en or nl (default: the default_language setting)")
    contact.set_defaults(handler=run_contact)


def _now() -> datetime:
    return datetime.now(UTC)


def _at(text: str | None) -> datetime | None:
    """`--at` parsed (aware), or None when not given; bad input names `--at`."""
    try:
        return parse_moment(text) if text else None
    except ValueError as exc:
        raise InvalidInput("--at", str(exc)) from None


def run_status(ctx: Context) -> int:
    if ctx.args.csv and ctx.json:
        raise InvalidInput("--csv", "choose one of --csv and --json")
    customer = v.customer_ref(ctx.args.customer) if ctx.args.customer else None
    now = _at(ctx.args.at) or _now()
    conn = ctx.connect()
    with db.transaction(conn) as cur:
        current, _ = world.load(cur, customer_ref=customer)
    data = status_data(assess(current, now), now=now, soap_end=ctx.settings.soap_end)
    if ctx.args.csv:
        print(status_csv(data), file=ctx.out)
        return 0
    ctx.emit(data, lambda: status_text(data))
    return 0


def run_preview(ctx: Context) -> int:
    soap_end = ctx.settings.soap_end
    at = _at(ctx.args.at) or max(_now(), soap_end)
    conn = ctx.connect()
    with db.transaction(conn) as cur:
        plan = preview(cur, at=at, soap_end=soap_end)
    ctx.emit(plan.to_dict(), lambda: preview_text(plan))
    return 0


def run_contact(ctx: Context) -> int:
    customer = v.customer_ref(ctx.args.customer)
    contact = v.email(ctx.args.contact, "--contact")
    language = v.language(ctx.args.language) if ctx.args.language else None
    conn = ctx.connect()
    with db.transaction(conn) as cur:
        cur.execute("""INSERT INTO customer_contacts (customer_ref, contact, language, added_by, added_at)
                       VALUES (%s, %s, %s, 'cli', %s) ON CONFLICT (customer_ref, contact)
                       DO UPDATE SET language = coalesce(EXCLUDED.language, customer_contacts.language)""",
                    (customer, contact, language, _now()))
    ctx.emit({"customer_ref": customer, "contact": contact, "language": language},
             lambda: f"{customer}: contact {contact} recorded; the campaign invites them while its links are soap_only")
    return 0
