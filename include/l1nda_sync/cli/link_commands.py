"""`l1nda-sync links request|list|cancel`: the company links L1NDA wants kept alive."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from l1nda_sync.cli import output
from l1nda_sync.cli.context import Context
from l1nda_sync.cli.token_commands import id_arg
from l1nda_sync.registry import db, links, tokens
from l1nda_sync.registry import validation as v
from l1nda_sync.registry.errors import InvalidInput

if TYPE_CHECKING:
    from l1nda_sync.cli.context import Commands


def company_arg(value: str) -> int:
    try:
        return v.positive_id(value, "--company")
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser("links", help="request, list and cancel company links",
                                description="Company links: pending until a valid token reaches the company.")
    group.set_defaults(group_parser=group)
    sub = group.add_subparsers(dest="links_command", metavar="ACTION")

    req = sub.add_parser("request", parents=[common], help="ask for a company to be linked",
                         description="Record that L1NDA wants this company linked; the next sync run activates it "
                                     "as soon as an active token reaches the company.")
    req.add_argument("--customer", required=True, metavar="REF", help="L1NDA's customer reference")
    req.add_argument("--company", required=True, metavar="ID", type=company_arg, help="the Nmbrs company id")
    req.add_argument("--environment", metavar="SUB", help="the Nmbrs sub-domain, when company ids could clash")
    req.set_defaults(handler=run_request)

    lst = sub.add_parser("list", parents=[common], help="list links")
    lst.add_argument("--state", choices=v.LINK_STATES, help="only links in this state")
    lst.add_argument("--token", metavar="ID", type=id_arg, help="only links served by this token")
    lst.set_defaults(handler=run_list)

    cancel = sub.add_parser("cancel", parents=[common], help="stop wanting a link")
    cancel.add_argument("id", metavar="ID", type=id_arg)
    cancel.set_defaults(handler=run_cancel)


def run_request(ctx: Context) -> int:
    customer = v.customer_ref(ctx.args.customer)
    environment = v.subdomain(ctx.args.environment, "--environment")
    conn = ctx.connect()
    with db.transaction(conn):
        link = links.request_link(conn, customer_ref=customer, company_id=ctx.args.company, environment=environment,
                                  actor=ctx.actor)
    reached_by = links.reachers(conn, link.company_id, link.environment)

    def text() -> str:
        head = f"requested link {link.id}: customer {link.customer_ref}, company {link.company_id}" + (
            f" in {link.environment}" if link.environment else "") + "; state pending"
        active = [r for r in reached_by if r.state == "active"]
        if active:
            return head + f"\nreached now by token {', '.join(f'{r.token_id} ({r.label})' for r in active)}: " \
                          "the next sync run activates it"
        return head + "\nno active token reaches this company yet: it activates once one does " \
                      "(add the customer's token with `l1nda-sync tokens add`)"

    ctx.emit({"link": link, "reached_by": reached_by}, text)
    return 0


def run_list(ctx: Context) -> int:
    conn = ctx.connect()
    if ctx.args.token is not None:
        tokens.get_token(conn, ctx.args.token)  # an unknown id is bad input, not "no links"
    found = links.list_links(conn, state=ctx.args.state, token_id=ctx.args.token)
    with db.reading(conn) as cur:
        why = links.pending_reasons(cur, [lk.id for lk in found if lk.state == "pending"])
    rows = [(lk.id, lk.customer_ref, lk.environment, lk.company_id, lk.debtor_id, lk.state, lk.token_id,
             why.get(lk.id, lk.reason), lk.updated_at) for lk in found]
    ctx.emit([{**output.to_jsonable(lk), "why_pending": why.get(lk.id)} for lk in found], lambda: output.table(
        ("id", "customer", "environment", "company", "debtor", "state", "token", "reason", "updated"), rows,
        empty="no links" + (f" in state {ctx.args.state}" if ctx.args.state else "")))
    return 0


def run_cancel(ctx: Context) -> int:
    conn = ctx.connect()
    with db.transaction(conn):
        link, changed = links.cancel_link(conn, ctx.args.id, actor=ctx.actor)
    text = (f"cancelled link {link.id} (customer {link.customer_ref}, company {link.company_id})" if changed
            else f"link {link.id} was already cancelled; nothing changed")
    ctx.emit({"link": link, "changed": changed}, text)
    return 0
