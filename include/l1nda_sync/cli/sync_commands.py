"""`l1nda-sync sync run`: one sync run from the command line: the run pipeline the DAG runs, in one process.

For operators without the Airflow UI at hand (recheck a token after the customer sent a new one) and for
scripts. The DAG remains the scheduled path; both claim tokens the same way, so they never check a token twice.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from l1nda_sync.cli.context import Context
from l1nda_sync.registry import validation as v
from l1nda_sync.registry.errors import InvalidInput, RegistryError

if TYPE_CHECKING:
    from l1nda_sync.cli.context import Commands

LIMIT_MAX = 1000
RUN_ID_MAX = 2**63 - 1


class SyncRunFailed(RegistryError):
    """A `sync run` that failed after it opened a run (exit 1); the message says what was and was not written."""


def _arg(check: Callable[[str], int]) -> Callable[[str], int]:
    """An argparse type from a validation function: bad values exit 2 with the message, before anything runs."""
    def parse(value: str) -> int:
        try:
            return check(value)
        except InvalidInput as exc:
            raise argparse.ArgumentTypeError(exc.message) from None
    return parse


token_arg = _arg(lambda value: v.positive_id(value, "--token"))
limit_arg = _arg(lambda value: v.whole_number(value, "--limit", low=1, high=LIMIT_MAX, example="20"))
run_id_arg = _arg(lambda value: v.whole_number(value, "ID", low=1, high=RUN_ID_MAX))


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
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
    run.add_argument("--token", dest="token_ids", metavar="ID", type=token_arg, action="append", default=[],
                     help="check this token now (repeatable); default: every token that is due")
    run.add_argument("--force", action="store_true", help="check every token now, due or not")
    run.add_argument("--dry-run", action="store_true", help="probe and compute, write nothing, send nothing")
    run.add_argument("--hold-mails", "--no-notify", dest="send_mails", action="store_false",
                     help="record alerts but leave the mails in the outbox for the next drain")
    run.set_defaults(handler=run_sync)

    runs = commands.add_parser("runs", help="past sync runs and their summaries",
                               description="The runs the DAG (or `sync run`) made, newest first.")
    runs.set_defaults(group_parser=runs)
    runs_sub = runs.add_subparsers(dest="runs_command", metavar="ACTION")
    listing = runs_sub.add_parser("list", parents=[common], help="the latest runs, a line each")
    listing.add_argument("--limit", type=limit_arg, default=20, metavar="N",
                         help=f"how many (1 to {LIMIT_MAX}, default 20)")
    listing.set_defaults(handler=run_list)
    show = runs_sub.add_parser("show", parents=[common], help="one run's report: counts, token and link changes")
    show.add_argument("id", type=run_id_arg, metavar="ID", help="the run id (from `l1nda-sync runs list`)")
    show.set_defaults(handler=run_show)


def run_sync(ctx: Context) -> int:
    """The run pipeline in this process; the exit status follows the DAG's run state (see `l1nda_sync.pipeline`)."""
    from l1nda_sync.engine.checking import KeysCannotDecrypt
    from l1nda_sync.engine.planning import PlanError
    from l1nda_sync.engine.sync import RunAborted
    from l1nda_sync.pipeline import ChecksNotApplied, DeliveryFailed, RunPipeline, RunRequest, build_engine

    args = ctx.args
    ctx.connect()  # refuses a registry whose schema is behind, before anything is probed
    # The registry the command was pointed at (--database-url wins over the environment), as every command.
    pipeline = RunPipeline(build_engine(dataclasses.replace(ctx.settings, database_url=ctx.database_url())))
    request = RunRequest(token_ids=tuple(args.token_ids), force=args.force, dry_run=args.dry_run,
                         send_mails=args.send_mails)
    try:
        outcome = pipeline.run(request)
    except PlanError as exc:
        raise InvalidInput("--token", str(exc).removeprefix("token_ids: ")) from None
    except RunAborted as exc:
        if exc.interrupted:
            raise KeyboardInterrupt(str(exc)) from None
        raise SyncRunFailed(str(exc)) from None
    except KeysCannotDecrypt as exc:  # a dry run's probe (a real run's is a RunAborted)
        raise SyncRunFailed(str(exc)) from None
    except ChecksNotApplied as exc:
        ctx.note(exc.report.table())
        raise SyncRunFailed(f"sync run {exc.report.run_id}: {exc}; the other tokens were applied and the links "
                            "reconciled; no mail was sent (the nmbrs_alert_outbox DAG sends them); the next run "
                            "applies the rest") from None
    except DeliveryFailed as exc:
        raise SyncRunFailed(str(exc)) from None
    data = dict(outcome.summary)
    delivery = outcome.delivery
    if delivery is not None:
        data["mails_waiting"] = delivery.waiting
        if delivery.waiting:
            why = "--hold-mails" if delivery.held else "SMTP failed; see the log"
            ctx.note(f"{delivery.waiting} mail(s) wait in the outbox ({why}); "
                     "the nmbrs_alert_outbox DAG or the next `sync run` sends them")
    ctx.emit({**data, "mails": delivery.mails if delivery else {"sent": 0}}, outcome.report.table)
    return 0


RUN_COLUMNS = "id, dag_run_id, started_at, finished_at, forced, state, summary"


def run_list(ctx: Context) -> int:
    from l1nda_sync.cli import output

    conn = ctx.connect()
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT {RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT %s", (ctx.args.limit,))
        rows = [dict(zip(RUN_COLUMNS.split(", "), r, strict=True)) for r in cur.fetchall()]

    def text() -> str:
        return output.table(
            ("id", "started", "state", "checked", "outcomes", "links +/-", "mails", "airflow run"),
            [(r["id"], r["started_at"], r["state"], r["summary"].get("checked", r["summary"].get("planned")),
              ", ".join(f"{k} {v}" for k, v in sorted((r["summary"].get("outcomes") or {}).items())),
              f"{r['summary'].get('links_activated', 0)}/{r['summary'].get('links_suspended', 0)}",
              r["summary"].get("mails_sent", ""), r["dag_run_id"] or "")
             for r in rows],
            empty="(no runs yet)",
        )

    ctx.emit(rows, text)
    return 0


def run_show(ctx: Context) -> int:
    from l1nda_sync.cli import output
    from l1nda_sync.engine.sync import RunReport
    from l1nda_sync.registry.errors import NotFound

    conn = ctx.connect()
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = %s", (ctx.args.id,))
        row = cur.fetchone()
    if row is None:
        raise NotFound("ID", f"no run with id {ctx.args.id}; see `l1nda-sync runs list`")
    run = dict(zip(RUN_COLUMNS.split(", "), row, strict=True))
    summary = run["summary"]

    def text() -> str:
        lines = [f"run {run['id']} ({run['state']}), started {run['started_at']}, "
                 f"finished {run['finished_at'] or '-'}; Airflow run {run['dag_run_id'] or '-'}",
                 RunReport.from_summary({**summary, "run_id": run["id"]}).table()]
        if summary.get("mails_sent") is not None:
            lines.append(f"mails sent: {summary['mails_sent']}")
        if summary.get("state_changes"):
            lines += ["", "token state changes:", output.table(
                ("token", "label", "from", "to"),
                [(c["token_id"], c["label"], c["from"], c["to"]) for c in summary["state_changes"]])]
        if summary.get("link_changes"):
            lines += ["", "link changes:", output.table(
                ("link", "from", "to", "token", "reason"),
                [(c["link_id"], c["from"], c["to"], c["token"], c["reason"]) for c in summary["link_changes"]])]
        return "\n".join(lines)

    ctx.emit(run, text)
    return 0
