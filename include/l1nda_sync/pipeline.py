"""The one sync run: plan -> check batches -> apply checks -> sweep -> send -> close the report.

This module owns the run and is its composition root: it builds the engine with the alert hooks and the webhook
hooks, and it decides what each step's failure means. The DAG (`orchestration`, one step per Airflow task, the
batches on separate workers) and `l1nda-sync sync run` (`RunPipeline.run`, every step in one process) call it,
so both give the same result for the same world:

- bad input (a parameter, an unknown token id) or a registry whose schema is behind: nothing is written; the DAG's
  first task fails without retrying, the CLI exits 2 (bad input) or 1 (the schema);
- a check fails after the plan (every batch is still checked): the run is closed as failed and its claims are
  released (the DAG's close_run task after its retries, then the failed-run mail; the CLI at once, exit 1), and
  nothing is lost: stored checks stay pending;
- some checks cannot be applied (`ChecksNotApplied`): the others are applied and the links reconciled, the run
  fails without sending mails (the outbox DAG sends them), and the next run applies the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from l1nda_sync.engine.applying import AppliedCheck, tokens_applied
from l1nda_sync.engine.breaker import BreakerVerdict
from l1nda_sync.engine.link_rules import LinkChange
from l1nda_sync.engine.sync import EngineHooks, RunReport, SyncEngine
from l1nda_sync.registry.db import fetch_one
from l1nda_sync.settings import Settings

if TYPE_CHECKING:
    from psycopg2.extensions import cursor as Cursor

log = logging.getLogger(__name__)


class ChecksNotApplied(RuntimeError):
    """Some of the run's checks could not be applied; they stay pending and the next run applies them."""

    def __init__(self, report: RunReport) -> None:
        super().__init__(f"{report.apply_errors} check(s) could not be applied and stay pending; see the log")
        self.report = report


class CombinedHooks:
    """The engine's hooks: several `EngineHooks` called in order, in the engine's transaction, so an alert step or a
    webhook event commits together with the change it reports."""

    def __init__(self, *hooks: EngineHooks | None) -> None:
        self.hooks = [h for h in hooks if h is not None]

    def token_applied(self, cur: Cursor, applied: AppliedCheck, *, run_id: int | None, now: datetime) -> None:
        for hook in self.hooks:
            hook.token_applied(cur, applied, run_id=run_id, now=now)

    def tokens_applied(self, cur: Cursor, applied: Sequence[tuple[AppliedCheck, int | None]], *,
                       now: Callable[[], datetime]) -> None:
        """A bulk chunk: each hook takes the whole chunk in turn (per token in order, as `token_applied`), so the
        alert hook looks up the chunk's open problems once instead of once per token."""
        for hook in self.hooks:
            tokens_applied(hook, cur, applied, now=now)

    def breaker_judged(self, cur: Cursor, verdict: BreakerVerdict, *, run_id: int | None, now: datetime) -> None:
        for hook in self.hooks:
            hook.breaker_judged(cur, verdict, run_id=run_id, now=now)

    def links_changed(self, cur: Cursor, changes: list[LinkChange], *, run_id: int | None, now: datetime) -> None:
        for hook in self.hooks:
            hook.links_changed(cur, changes, run_id=run_id, now=now)


def compose_hooks(settings: Settings) -> CombinedHooks:
    """The hooks of every sync run: alerts always, webhook events while `l1nda_api` is configured."""
    from l1nda_sync.alerts.hooks import AlertHooks
    from l1nda_sync.webhook.delivery import webhook_enabled
    from l1nda_sync.webhook.hooks import WebhookHooks

    return CombinedHooks(AlertHooks(settings), WebhookHooks() if webhook_enabled() else None)


def build_engine(settings: Settings | None = None) -> SyncEngine:
    """The engine with its hooks, on a registry whose schema is current (else `SchemaError`, before any work)."""
    from l1nda_sync.registry.schema import require_current

    settings = settings or Settings.load()
    engine = SyncEngine(settings.require_database_url(), settings=settings, hooks=compose_hooks(settings))
    conn = engine.connect()
    try:
        require_current(conn)
    finally:
        conn.close()
    return engine


@dataclass(frozen=True)
class RunRequest:
    """What a run was asked to do (the DAG's params, the CLI's options)."""

    token_ids: tuple[int, ...] = ()
    force: bool = False
    dry_run: bool = False
    send_mails: bool = True  # off: alerts are recorded and their mails wait in the outbox
    # The cutover's preview instead of a run ('now', 'soap_end' or an ISO time): logs what the cutover would do
    # then (`migration.cutover.plan_cutover`, as `l1nda-sync migration preview`), writes nothing, checks nothing.
    cutover_preview_at: str | None = None


@dataclass(frozen=True)
class PlannedRun:
    """The plan step's result; travels between the DAG's tasks as XCom (`to_xcom` / `from_xcom`): ids only."""

    run_id: int | None
    batches: tuple[tuple[int, ...], ...]
    dry_run: bool
    send_mails: bool
    dry_report: Mapping[str, Any] | None = None  # a dry run's counts: its plan step did all the work

    def to_xcom(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "batches": [list(b) for b in self.batches], "dry_run": self.dry_run,
                "send_mails": self.send_mails, **({"report": dict(self.dry_report)} if self.dry_report else {})}

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> PlannedRun:
        # `notify`: the name a plan written by the previous release carries (a run that spans the upgrade).
        send_mails = value.get("send_mails", value.get("notify", True))
        return cls(run_id=value.get("run_id"), batches=tuple(tuple(b) for b in value.get("batches", ())),
                   dry_run=bool(value.get("dry_run")), send_mails=bool(send_mails), dry_report=value.get("report"))


@dataclass
class Delivery:
    """What the delivery step did: problems swept, mails sent, webhook events posted, mails left waiting."""

    swept: dict[str, int] = field(default_factory=dict)
    mails: dict[str, int] = field(default_factory=lambda: {"sent": 0})
    webhook: dict[str, int] = field(default_factory=dict)
    waiting: int = 0
    held: bool = False  # mails were not sent because the run said so

    @property
    def sent(self) -> int:
        return int(self.mails.get("sent", 0))

    def counts(self) -> dict[str, int]:
        return {**self.mails, **{f"webhook_{k}": v for k, v in self.webhook.items()}, "waiting": self.waiting}


@dataclass
class RunOutcome:
    """A whole run done in one process (`RunPipeline.run`)."""

    report: RunReport
    delivery: Delivery | None  # None for a dry run: it sends nothing
    summary: dict[str, Any]


class RunPipeline:
    """The steps of a sync run over one engine. Each step opens its own connections, so the DAG can run them in
    separate tasks on separate workers; `run` runs them all here."""

    def __init__(self, engine: SyncEngine) -> None:
        self.engine = engine
        self.settings = engine.settings

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> RunPipeline:
        return cls(build_engine(settings))

    # -- the steps ------------------------------------------------------------------------------------------------
    def plan(self, request: RunRequest, *, dag_run_id: str | None = None) -> PlannedRun:
        """Claim the due tokens, open a run and cut batches. A dry run does all its work here and writes nothing."""
        if request.cutover_preview_at is not None:
            return PlannedRun(None, (), True, False, self.preview_cutover(request.cutover_preview_at))
        if request.dry_run:
            report = self.engine.run_once(token_ids=request.token_ids, force=request.force, dry_run=True)
            log.info("dry run, nothing written:\n%s", report.table())
            for change in report.state_changes:
                log.info("would move %(kind)s %(token_id)s (%(label)s) from %(from)s to %(to)s", change)
            for change in report.link_changes:
                log.info("would move link %(link_id)s from %(from)s to %(to)s (%(kind)s %(token)s, %(reason)s)",
                         change)
            return PlannedRun(None, (), True, False, report.counts())
        plan = self.engine.plan(token_ids=request.token_ids, force=request.force, dag_run_id=dag_run_id)
        log.info("run %s: %d token(s) due in %d batch(es)", plan.run_id, len(plan.token_ids), len(plan.batches))
        return PlannedRun(plan.run_id, tuple(tuple(b) for b in plan.batches), False, request.send_mails)

    def preview_cutover(self, at_text: str) -> dict[str, Any]:
        """Log what the cutover would do at `at_text` ('now', 'soap_end' or ISO) and return its counts; reads only."""
        from l1nda_sync.migration.report import preview_text
        from l1nda_sync.migration.running import preview
        from l1nda_sync.settings import parse_moment

        soap_end = self.settings.soap_end
        at = (self.engine.clock() if at_text == "now" else soap_end if at_text == "soap_end"
              else parse_moment(at_text))
        conn = self.engine.connect()
        try:
            with conn, conn.cursor() as cur:
                plan = preview(cur, at=at, soap_end=soap_end)
        finally:
            conn.close()
        log.info("cutover preview, nothing written:\n%s", preview_text(plan))
        for customer, links in plan.per_customer().items():
            log.info("customer %s: stay on REST %s, move to REST %s, suspend %s", customer, links["stay_on_rest"],
                     links["move_to_rest"], links["suspend"])
        return {"cutover_preview": True, "retire": len(plan.retire), "moved_to_rest": len(plan.to_rest),
                "suspend": len(plan.suspended), "notices": len(plan.notices)}

    def check(self, run_id: int | None, batch: Sequence[int]) -> dict[str, int]:
        """Probe one batch and store its checks (pending until the apply step)."""
        counts = self.engine.check_batch(run_id, list(batch))
        log.info("batch of %d token(s): %s", len(batch), counts)
        return counts

    def apply(self, planned: PlannedRun) -> RunReport:
        """Apply the checks, reconcile the links, store the report; `ChecksNotApplied` when some stay pending."""
        report = self.engine.apply_checks(planned.run_id)
        log.info("\n%s", report.table())
        if report.apply_errors:
            raise ChecksNotApplied(report)
        return report

    def deliver(self, *, send_mails: bool) -> Delivery:
        """Resolve quiet problems and queue reminders (the sweep), then send the outbox's mails and webhook
        events, unless the run holds the mails for the next drain."""
        from l1nda_sync.alerts.outbox import drain
        from l1nda_sync.alerts.sweep import sweep
        from l1nda_sync.webhook import deliver

        delivery = Delivery()
        conn = self.engine.connect()
        try:
            delivery.swept = dict(sweep(conn, self.engine.clock(), self.settings))
            if send_mails:
                delivery.mails = dict(drain(conn, self.engine.clock(), self.settings))
                delivery.webhook = dict(deliver(conn, self.engine.clock()))
                if any(delivery.webhook.values()):
                    log.info("webhook events: %s", delivery.webhook)
            else:
                delivery.held = True
            with conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM outbox WHERE state = 'pending'")
                delivery.waiting = int(fetch_one(cur)[0])
            if delivery.waiting:
                why = "the run holds its mails" if delivery.held else "SMTP failed or they are not due; see the log"
                log.info("%s mail(s) wait in the outbox (%s); the nmbrs_alert_outbox DAG sends them",
                         delivery.waiting, why)
            return delivery
        finally:
            conn.close()

    def close(self, planned: PlannedRun, applied: Mapping[str, Any], delivery: Mapping[str, Any]) -> RunReport:
        """Complete the run's stored summary (problems opened and resolved, mails sent) and log it."""
        report = RunReport.from_summary(self._closed_summary(planned, applied, delivery), run_id=planned.run_id,
                                        dry_run=planned.dry_run)
        log.info("run summary:\n%s", report.table())
        return report

    def _closed_summary(self, planned: PlannedRun, applied: Mapping[str, Any], delivery: Mapping[str, Any]
                        ) -> dict[str, Any]:
        summary: dict[str, Any] = {**applied, "mails_sent": int(delivery.get("sent", 0))}
        if planned.run_id is not None:
            summary = {**summary, **self.engine.close_report(planned.run_id, {"mails_sent": summary["mails_sent"]})}
        return summary

    # -- the whole run in this process (`l1nda-sync sync run`) ------------------------------------------------------
    def run(self, request: RunRequest, *, dag_run_id: str | None = None) -> RunOutcome:
        """Every step here, with the DAG's outcomes: see the module docstring. Raises `RunAborted` (a step after
        the plan failed), `ChecksNotApplied`, or `DeliveryFailed` (also when closing the report failed)."""
        if request.dry_run:
            report = self.engine.run_once(token_ids=request.token_ids, force=request.force, dry_run=True)
            return RunOutcome(report, None, report.to_dict())
        report = self.engine.run_once(token_ids=request.token_ids, force=request.force, dag_run_id=dag_run_id)
        if report.apply_errors:  # as the DAG's apply task: the others are applied, the claims released
            raise ChecksNotApplied(report)
        try:
            delivery = self.deliver(send_mails=request.send_mails)
            planned = PlannedRun(report.run_id, (), False, request.send_mails)
            summary = self._closed_summary(planned, report.to_dict(), {"sent": delivery.sent})
        except Exception as exc:
            raise DeliveryFailed(report.run_id, exc) from exc
        # What only this process knows: the tokens skipped at plan time and the run's whole duration.
        summary = {**summary, "skipped": report.skipped, "seconds": report.seconds}
        return RunOutcome(RunReport.from_summary(summary, run_id=report.run_id), delivery, summary)


class DeliveryFailed(RuntimeError):
    """The run checked and applied its tokens, but the sweep or sending failed; the mails wait in the outbox."""

    def __init__(self, run_id: int | None, cause: BaseException) -> None:
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        super().__init__(f"sync run {run_id} checked and applied its tokens, but sending the alerts (or closing the "
                         f"run's report) failed: "
                         f"{first}; the mails wait in the outbox for the nmbrs_alert_outbox DAG or the next "
                         "`sync run`")
