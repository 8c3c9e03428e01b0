"""`l1nda-sync sync run`: one sync run from the command line, the same steps the DAG runs, in one process.

For operators without the Airflow UI at hand (recheck a token after the customer sent a new one) and for
scripts. The DAG remains the scheduled path; both claim tokens the same way, so they never check a token twice.
"""

from __future__ import annotations

import argparse
from typing import Any

from l1nda_sync.cli.context import Context
from l1nda_sync.registry.errors import InvalidInput


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    group = commands.add_parser("sync", help="run a sync now (what the nmbrs_token_sync DAG runs)",
                                description="Check tokens, rediscover their reach, reconcile links, send alerts.")
    group.set_defaults(group_parser=group)
    sub = group.add_subparsers(dest="sync_command", metavar="ACTION")
    run = sub.add_parser(
        "run", parents=[common], help="check the due tokens (or the ones named) now",
        description="Check the tokens that are due, or exactly those given with --token (due or not), then "
                    "reconcile links and send the alert mails. --dry-run reports what would change and writes "
                    "nothing.",
    )
    run.add_argument("--token", dest="token_ids", metavar="ID", type=int, action="append", default=[],
                     help="check this token now (repeatable); default: every token that is due")
    run.add_argument("--force", action="store_true", help="check every token now, due or not")
    run.add_argument("--dry-run", action="store_true", help="probe and compute, write nothing, send nothing")
    run.add_argument("--no-notify", dest="notify", action="store_false",
                     help="record alerts but leave the mails in the outbox for the next drain")
    run.set_defaults(handler=run_sync)


def run_sync(ctx: Context) -> int:
    from l1nda_sync.alerts.hooks import AlertHooks
    from l1nda_sync.alerts.outbox import drain
    from l1nda_sync.alerts.sweep import sweep
    from l1nda_sync.engine.planning import PlanError
    from l1nda_sync.engine.sync import SyncEngine

    args = ctx.args
    if any(t <= 0 for t in args.token_ids):
        raise InvalidInput("--token", "a token id is a positive whole number; see `l1nda-sync tokens list`")
    ctx.connect()  # refuses a registry whose schema is behind, before anything is probed
    engine = SyncEngine(ctx.database_url(), settings=ctx.settings, hooks=AlertHooks(ctx.settings))
    try:
        report = engine.run_once(token_ids=args.token_ids, force=args.force or bool(args.token_ids),
                                 dry_run=args.dry_run)
    except PlanError as exc:
        raise InvalidInput("--token", str(exc).removeprefix("token_ids: ")) from None
    mails: dict[str, int] = {"sent": 0}
    if not args.dry_run:
        conn = ctx.connect()
        sweep(conn, engine.clock(), ctx.settings)
        if args.notify:
            mails = dict(drain(conn, engine.clock(), ctx.settings))
    data = {**report.to_dict(), "mails": mails}
    ctx.emit(data, lambda: report.table() + f"\nmails sent          {mails.get('sent', 0)}")
    return 0
