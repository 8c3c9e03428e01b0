"""`l1nda-sync sync run`: one sync run from the command line, the same steps the DAG runs, in one process.

For operators without the Airflow UI at hand (recheck a token after the customer sent a new one) and for
scripts. The DAG remains the scheduled path; both claim tokens the same way, so they never check a token twice.
"""

from __future__ import annotations

import argparse
from typing import Any

from l1nda_sync.cli.context import Context
from l1nda_sync.registry import validation as v
from l1nda_sync.registry.errors import InvalidInput, RegistryError

LIMIT_MAX = 1000
RUN_ID_MAX = 2**63 - 1


class SyncRunFailed(RegistryError):
    """A `sync run` that failed after it opened a run (exit 1); the message says what was and was not written."""


def _arg(check: Any) -> Any:
    """An argparse type from a validation function: bad values exit 2 with the message, before anything runs."""
    def parse(value: str) -> Any:
        try:
            return check(value)
        except InvalidInput as exc:
            raise argparse.ArgumentTypeError(exc.message) from None
    return parse


token_arg = _arg(lambda value: v.positive_id(value, "--token"))
limit_arg = _arg(lambda value: v.whole_number(value, "--limit", low=1, high=LIMIT_MAX, example="20"))
run_id_arg = _arg(lambda value: v.whole_number(value, "ID", low=1, high=RUN_ID_MAX))


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
    run.add_argument("--token", dest="token_ids", metavar="ID", type=token_arg, action="append", default=[],
                     help="check this token now (repeatable); default: every token that is due")
    run.add_argument("--force", action="store_true", help="check every token now, due or not")
    run.add_argument("--dry-run", action="store_true", help="probe and compute, write nothing, send nothing")
    run.add_argument("--no-notify", dest="notify", action="store_false",
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
    from l1nda_sync.engine.planning import PlanError
    from l1nda_sync.engine.sync import SyncEngine
    from l1nda_sync.webhook.hooks import sync_hooks

    args = ctx.args
    conn = ctx.connect()  # refuses a registry whose schema is behind, before anything is probed

    engine = SyncEngine(ctx.database_url(), settings=ctx.settings, hooks=sync_hooks(ctx.settings))
    try:
        report = (engine.run_once(token_ids=args.token_ids, force=args.force, dry_run=True) if args.dry_run
                  else _run_steps(engine, args.token_ids, args.force))
    except PlanError as exc:
        raise InvalidInput("--token", str(exc).removeprefix("token_ids: ")) from None
    mails: dict[str, int] = {"sent": 0}
    data = report.to_dict()
    if not args.dry_run:
        try:
            data, mails = _after_run(ctx, conn, engine, report, data)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SyncRunFailed(f"sync run {report.run_id} checked and applied its tokens, but sending the alerts "
                                f"failed: {first}; the mails wait in the outbox for the nmbrs_alert_outbox DAG or "
                                "the next `sync run`") from None
    ctx.emit({**data, "mails": mails}, report.table)
    return 0


def _run_steps(engine: Any, token_ids: list[int], force: bool) -> Any:
    """plan, check every batch, finish: what `SyncEngine.run_once` does, but a run that fails after its plan is
    closed at once (`SyncEngine.abort`: state failed, claims released) and the message says what was written."""
    import time

    started = time.monotonic()
    plan = engine.plan(token_ids=token_ids, force=force)
    stored = 0
    step = "checking"
    try:
        calls = 0
        for batch in plan.batches:
            counts = engine.check_batch(plan.run_id, batch)
            calls += counts.get("calls", 0)
            stored += counts.get("checked", 0)
        step = "applying"
        report = engine.finish(plan.run_id)
    except (Exception, KeyboardInterrupt) as exc:
        why = str(exc) or type(exc).__name__
        released = engine.abort(plan.run_id, f"{step}: {why}")
        closed = (f"run {plan.run_id} is marked failed and its claims on {released} token(s) are released, so "
                  "the next run checks them")
        if step == "checking" and not stored and not _stored_checks(engine, plan.run_id):
            written = "nothing else was written"
        elif step == "checking":
            written = "the checks it stored stay pending and the next run applies them"
        else:
            written = "some checks may already be applied; the next run applies the rest"
        message = f"sync run {plan.run_id} failed while {step}: {why}; {closed}; {written}"
        if isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt(message) from None
        raise SyncRunFailed(message) from None
    report.calls = report.calls or calls
    report.skipped = [{"token_id": t, "run_id": r} for t, r in getattr(plan, "skipped", ())]
    report.seconds = time.monotonic() - started
    return report


def _stored_checks(engine: Any, run_id: int) -> int:
    conn = engine.connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM checks WHERE run_id = %s", (run_id,))
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def _after_run(ctx: Context, conn: Any, engine: Any, report: Any, data: dict[str, Any]) -> tuple[dict, dict]:
    """What the DAG's notify and report tasks do after a run: sweep problems, send mails and webhook events."""
    from l1nda_sync.alerts.outbox import drain
    from l1nda_sync.alerts.sweep import sweep
    from l1nda_sync.webhook import deliver

    args = ctx.args
    mails: dict[str, int] = {"sent": 0}
    sweep(conn, engine.clock(), ctx.settings)
    if args.notify:
        mails = dict(drain(conn, engine.clock(), ctx.settings))
        deliver(conn, engine.clock())
    report.mails_sent = mails.get("sent", 0)
    data = {**data, **engine.close_report(report.run_id, {"mails_sent": report.mails_sent})}
    report.problems_opened = data.get("problems_opened", 0)
    report.problems_resolved = data.get("problems_resolved", 0)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM outbox WHERE state = 'pending'")
        waiting = cur.fetchone()[0]
    if waiting:
        why = "--no-notify" if not args.notify else "SMTP failed; see the log"
        ctx.note(f"{waiting} mail(s) wait in the outbox ({why}); "
                 "the nmbrs_alert_outbox DAG or the next `sync run` sends them")
    data["mails_waiting"] = waiting
    return data, mails


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
        known = {k: v for k, v in summary.items() if k in RunReport.__dataclass_fields__}
        known["run_id"] = run["id"]
        lines = [f"run {run['id']} ({run['state']}), started {run['started_at']}, "
                 f"finished {run['finished_at'] or '-'}; Airflow run {run['dag_run_id'] or '-'}",
                 RunReport(**{"dry_run": False, **known}).table()]
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
