"""`l1nda-sync companies unmatched|match`: REST companies whose SOAP counterpart an operator must name.

A company reached through SOAP (an integer id) and through REST (a UUID) is the same company when its debtor
number and company number match within the customer. What the sync cannot decide for sure (no candidate, or
several) is never guessed: it waits here, kept in the reach under a negative key that no link can use, until an
operator says which SOAP company it is (`--company ID`: a candidate, the same debtor number within the customer,
unless `--force`) or that it has none (`--new`).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from l1nda_sync.cli import output
from l1nda_sync.cli.context import Context
from l1nda_sync.cli.link_commands import company_arg
from l1nda_sync.registry import db, locks, rest_entities
from l1nda_sync.registry import validation as v
from l1nda_sync.registry.rest_entities import OpenEntity

if TYPE_CHECKING:
    from l1nda_sync.cli.context import Commands


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser("companies", help="match REST companies to SOAP companies",
                                description="REST companies the sync could not match to a SOAP company for sure.")
    group.set_defaults(group_parser=group)
    sub = group.add_subparsers(dest="companies_command", metavar="ACTION")

    unmatched = sub.add_parser("unmatched", parents=[common], help="list unmatched and ambiguous REST companies")
    unmatched.add_argument("--customer", metavar="REF", help="only this customer's companies")
    unmatched.set_defaults(handler=run_unmatched)

    match = sub.add_parser("match", parents=[common], help="say which SOAP company a REST company is",
                           description="Match a REST company (its UUID) to the SOAP company it is (--company ID), "
                                       "or say it has no SOAP counterpart (--new). The REST connections' reach moves "
                                       "to that key at once; links follow at the next sync run.")
    match.add_argument("uuid", metavar="UUID", help="the REST company id, as `companies unmatched` shows it")
    which = match.add_mutually_exclusive_group(required=True)
    which.add_argument("--company", metavar="ID", type=company_arg, help="the SOAP company id it is")
    which.add_argument("--new", action="store_true", help="it has no SOAP counterpart: give it a key of its own")
    match.add_argument("--force", action="store_true",
                       help="accept a SOAP company id that is no candidate (not under the same debtor number within "
                            "the customer)")
    match.set_defaults(handler=run_match)


def run_unmatched(ctx: Context) -> int:
    customer = v.customer_ref(ctx.args.customer) if ctx.args.customer else None
    conn = ctx.connect()
    found = rest_entities.list_open(conn, customer_ref=customer)
    ctx.emit(found, lambda: _unmatched_text(found))
    return 0


def _unmatched_text(found: list[OpenEntity]) -> str:
    if not found:
        return "no unmatched or ambiguous REST companies"
    rows = []
    for item in found:
        e = item.entity
        candidates = [f"{c.company_id} (#{c.number if c.number is not None else '?'} {c.name or ''}, debtor "
                      f"{c.debtor_number or '?'})".replace(" ,", ",") for c in item.candidates]
        rows.append((e.uuid, e.customer_ref, e.debtor_number, e.number, e.name, e.match, candidates or None,
                     item.reached_by or None, e.first_seen))
    return (output.table(("rest company", "customer", "debtor", "number", "name", "match", "candidates",
                          "connections", "since"), rows)
            + "\n\nDecide with `l1nda-sync companies match UUID --company ID` (the SOAP company it is) or --new.")


def run_match(ctx: Context) -> int:
    conn = ctx.connect()
    with db.transaction(conn) as cur:
        locks.lock_rest_entity_writes(cur)  # a check batch or consent storing entities goes first, or waits
        change = rest_entities.set_match(cur, ctx.args.uuid, company_id=ctx.args.company, new=ctx.args.new,
                                         actor=ctx.actor, force=ctx.args.force)
    e = change.entity
    what = f"SOAP company {e.key}" if e.match == "operator" else f"a key of its own ({e.key}, no SOAP counterpart)"
    ctx.emit(change, f"matched REST company {e.uuid} ({e.name or '-'}, customer {e.customer_ref}) to {what}; "
                     f"{output.count(change.reach_rows, 'reach row')} moved from key {change.old_key}; links follow "
                     "at the next sync run")
    return 0
