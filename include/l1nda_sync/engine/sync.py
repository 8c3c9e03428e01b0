"""The sync engine's steps, as the run pipeline calls them: plan -> check batches -> apply checks -> close report.

Each step opens its own connections and passes only ids and counts onward, so the steps can run in separate
Airflow tasks on separate workers. A dry run is an explicit argument: every step then works in one transaction
that is rolled back.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import psycopg2

from l1nda_sync.engine.applying import AppliedCheck, ApplyHooks, ApplySummary, apply_pending, unit_of_work
from l1nda_sync.engine.checking import KeysCannotDecrypt, Prober, load_tokens, probe_all, store_checks
from l1nda_sync.engine.early_apply import applied_in_batch, apply_in_batch, candidates
from l1nda_sync.engine.link_rules import LinkChange, LinkState, Reason
from l1nda_sync.engine.planning import (
    Plan,
    claim_tokens,
    claimed_elsewhere,
    due_tokens,
    plan_batches,
    release_claims,
    rest_left_out,
    validate_token_ids,
)
from l1nda_sync.engine.reconciling import LinkHooks, reconcile_all
from l1nda_sync.engine.rest_checking import RestAppMissing, RestChecking, RestProber, finish_rest
from l1nda_sync.engine.token_state import CredentialKind, StatePolicy
from l1nda_sync.registry.db import fetch_one
from l1nda_sync.settings import Settings

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor

    from l1nda_sync.masking import Secret
    from l1nda_sync.nmbrs.rest.config import RestApp
    from l1nda_sync.nmbrs.rest.grants import GrantStore

log = logging.getLogger(__name__)


class EngineHooks(ApplyHooks, LinkHooks, Protocol):
    """Everything the engine calls inside its transactions: a token applied, the breaker judged, links changed.
    The run pipeline composes them (alerts, webhook events); the engine never imports those."""

# A run still 'running' after this long has died (the DAG's run time-out is 50 minutes).
ABANDONED_AFTER = timedelta(hours=1)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunReport:
    """What one run did; stored on the run (runs.summary) and logged as a table."""

    run_id: int | None
    dry_run: bool
    checked: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    reach_gained: int = 0
    reach_lost: int = 0
    links_activated: int = 0
    links_failed_over: int = 0
    links_suspended: int = 0
    links_moved_to_rest: int = 0  # active links that a SOAP token served, now served by a REST connection
    state_changes: list[dict[str, Any]] = field(default_factory=list)
    link_changes: list[dict[str, Any]] = field(default_factory=list)
    suspected: list[dict[str, Any]] = field(default_factory=list)  # seen once, not confirmed: nobody mailed
    skipped: list[dict[str, Any]] = field(default_factory=list)  # asked for, but another run is checking them
    rest_left_out: list[int] = field(default_factory=list)  # REST connections due, not checked: no REST app
    breaker_tripped: bool = False
    breaker_failure: str | None = None
    apply_errors: int = 0
    problems_opened: int = 0
    problems_resolved: int = 0
    mails_sent: int | None = None  # known after the delivery step
    checks_pruned: int = 0
    seconds: float = 0.0

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any], *, run_id: int | None = None,
                     dry_run: bool = False) -> RunReport:
        """The report stored on a run (runs.summary) or carried as XCom counts, read back; unknown keys (the
        plan's `planned`, an abort's `error`) are left out, missing ones take their defaults."""
        known = {k: v for k, v in summary.items() if k in _REPORT_FIELDS}
        known.setdefault("run_id", run_id)
        known.setdefault("dry_run", dry_run)
        return cls(**known)

    @classmethod
    def of_apply(cls, summary: ApplySummary, changes: Sequence[LinkChange], *, run_id: int | None,
                 dry_run: bool, in_batch: Mapping[str, int] | None = None) -> RunReport:
        """The report of an apply step: its applied checks (`ApplySummary`), the run's checks its batches applied
        (`in_batch`, counts by outcome: each moved only its token's clock) and link changes (`LinkChange`)."""
        counted = Counter(in_batch or {})
        report = cls(run_id=run_id, dry_run=dry_run, checked=len(summary.applied) + counted.total(),
                     outcomes=dict(summary.outcomes() + counted), breaker_tripped=summary.breaker_open,
                     breaker_failure=summary.verdict.failure if summary.breaker_open else None,
                     apply_errors=len(summary.failed))
        for applied in summary.applied:
            report._count_check(applied)
        for change in changes:
            report._count_link_change(change)
        return report

    def _count_check(self, a: AppliedCheck) -> None:
        self.reach_gained += a.companies_gained
        self.reach_lost += a.companies_lost
        suspected = a.transition.after.suspected
        if suspected == "invalid" and a.kind is CredentialKind.REST_CONNECTION:
            suspected = "consent_revoked"  # a connection's refusal runs in the 1001 streak; say what it is
        if suspected is not None:
            self.suspected.append({"token_id": a.token_id, "label": a.label, "suspected": suspected})
        if a.transition.changed_state:
            self.state_changes.append({"token_id": a.token_id, "label": a.label, "kind": a.kind.value,
                                       "from": a.transition.before.state.value, "to": a.transition.after.state.value})

    def _count_link_change(self, c: LinkChange) -> None:
        if c.to_state is LinkState.SUSPENDED:
            self.links_suspended += 1
        elif c.reason == Reason.MOVED_TO_REST:
            self.links_moved_to_rest += 1
        elif c.from_state is LinkState.ACTIVE:
            self.links_failed_over += 1
        else:
            self.links_activated += 1
        self.link_changes.append({"link_id": c.link_id, "from": c.from_state.value, "to": c.to_state.value,
                                  "token": c.to_token, "reason": str(c.reason),
                                  "kind": c.to_kind.value if c.to_kind is not None else None,
                                  "from_kind": c.from_kind.value if c.from_kind is not None else None})

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def counts(self) -> dict[str, Any]:
        """Everything but the per-token and per-link lists: what may travel as XCom."""
        return {k: v for k, v in self.__dict__.items() if not isinstance(v, list)}

    def table(self) -> str:
        rows = [
            ("run", "dry run: nothing written" if self.dry_run else str(self.run_id)),
            ("tokens checked", str(self.checked)),
            *((f"  {k}", str(v)) for k, v in sorted(self.outcomes.items())),
            ("Nmbrs calls", str(self.calls)),
            ("reach gained / lost", f"{self.reach_gained} / {self.reach_lost}"),
            ("links activated / failed over / suspended",
             f"{self.links_activated} / {self.links_failed_over} / {self.links_suspended}"),
            *([("links moved to REST connections", str(self.links_moved_to_rest))] if self.links_moved_to_rest
              else []),
            ("token state changes", str(len(self.state_changes))),
            *([("suspected, not yet confirmed", ", ".join(f"token {s['token_id']} {s['suspected']}"
                                                          for s in self.suspected[:10])
                + (" ..." if len(self.suspected) > 10 else ""))] if self.suspected else []),
            *([("skipped (another run checks them)", ", ".join(str(s["token_id"]) for s in self.skipped))]
              if self.skipped else []),
            *([("WARNING: REST connections NOT checked", ", ".join(map(str, self.rest_left_out))
                + " (no Nmbrs REST app configured: set the L1NDA_NMBRS_REST_* settings or the Airflow connection "
                "nmbrs_rest)")] if self.rest_left_out else []),
            ("problems opened / resolved", f"{self.problems_opened} / {self.problems_resolved}"),
            *([("mails sent", str(self.mails_sent))] if self.mails_sent is not None else []),
            ("circuit breaker", f"TRIPPED (provider incident: {self.breaker_failure or 'failures'})"
             if self.breaker_tripped else "closed"),
            *([("checks NOT applied (see log)", str(self.apply_errors))] if self.apply_errors else []),
            ("duration", f"{self.seconds:.1f} s"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


_REPORT_FIELDS = frozenset(f.name for f in fields(RunReport))


class RunAborted(RuntimeError):
    """A run failed after its plan; it was closed at once (state failed, claims released). The message says in
    which step and what was and was not written, so the operator knows whether anything moved."""

    def __init__(self, run_id: int, step: str, cause: BaseException, *, released: int, stored: int) -> None:
        why = str(cause) or type(cause).__name__
        if step == "checking" and not stored:
            written = "nothing else was written"
        elif step == "checking":
            written = "the checks it stored stay pending and the next run applies them"
        else:
            written = "some checks may already be applied; the next run applies the rest"
        super().__init__(f"sync run {run_id} failed while {step}: {why}; run {run_id} is marked failed and its "
                         f"claims on {released} token(s) are released, so the next run checks them; {written}")
        self.run_id = run_id
        self.step = step
        self.interrupted = isinstance(cause, KeyboardInterrupt)


class SyncEngine:
    """Binds settings, the registry connection, the Nmbrs client and the alert hooks together."""

    def __init__(
        self,
        database_url: str,
        *,
        settings: Settings | None = None,
        client: Prober | None = None,
        reveal: Callable[[str], Secret] | None = None,
        hooks: EngineHooks | None = None,
        clock: Callable[[], datetime] = utcnow,
        rest_app: RestApp | None = None,
        rest_client: RestProber | None = None,
        grant_store: GrantStore | None = None,
    ) -> None:
        self.database_url = database_url
        self.settings = settings or Settings.load()
        self._client = client
        self._reveal = reveal
        self._rest_app = rest_app
        self._rest_client = rest_client
        self._grant_store = grant_store
        self._rest: RestChecking | None = None
        self.hooks = hooks
        self.clock = clock
        self.policy = StatePolicy.from_settings(self.settings)

    # -- parts built lazily, so a plan or a report never builds a SOAP client -----------------------------
    @property
    def client(self) -> Prober:
        if self._client is None:
            from l1nda_sync.nmbrs import get_client

            self._client = get_client(self.settings)
        return self._client

    @property
    def reveal(self) -> Callable[[str], Secret]:
        if self._reveal is None:
            from l1nda_sync.registry.crypto import TokenCipher

            self._reveal = TokenCipher.from_settings(self.settings).decrypt
        return self._reveal

    @property
    def rest_configured(self) -> bool:
        """Whether L1NDA's Nmbrs REST app is configured (without building the REST client)."""
        return self._rest is not None or (self._rest_app or self.settings.rest_app()) is not None

    @property
    def rest(self) -> RestChecking | None:
        """What checking a REST connection needs (L1NDA's app, the REST client, the registry's grant store), or
        None when no REST app is configured (`Settings.rest_app()`); built on first use, so SOAP-only runs never
        build it."""
        if self._rest is None:
            app = self._rest_app or self.settings.rest_app()
            if app is None:
                return None
            client = self._rest_client
            if client is None:
                from l1nda_sync.nmbrs.rest.client import RestClient

                client = self._rest_client = RestClient(app, self.settings)
            store = self._grant_store
            if store is None:
                from l1nda_sync.registry.crypto import TokenCipher
                from l1nda_sync.registry.grant_store import RegistryGrantStore

                store = RegistryGrantStore.for_url(self.database_url, TokenCipher.from_settings(self.settings))
            self._rest = RestChecking(app, client, store, self.clock, self.reveal)
        return self._rest

    def connect(self) -> Connection:
        return psycopg2.connect(self.database_url, application_name="l1nda-sync")

    # -- the steps -------------------------------------------------------------------------------------------
    def plan(
        self, *, token_ids: Sequence[int] = (), force: bool = False, dag_run_id: str | None = None,
        dry_run: bool = False,
    ) -> Plan:
        """Validate the request, claim the due tokens, open a run, cut the ids into batches.

        Naming tokens means checking them now: `token_ids` implies `force`.
        """
        force = force or bool(token_ids)
        now = self.clock()
        # From soap_end no SOAP token is claimed, checked or named (Nmbrs ended SOAP), and the cutover runs first.
        rest_only = self.settings.soap_over(now)
        conn = self.connect()
        try:
            with conn, conn.cursor() as cur:
                validate_token_ids(cur, token_ids, soap_ended=self.settings.soap_end if rest_only else None)
                skipped = tuple(claimed_elsewhere(cur, now, token_ids))
                # Without L1NDA's REST app no connection can be checked: they are left out (and reported), so the
                # run's SOAP checks are still made and applied.
                soap_only = not self.rest_configured
                left_out = tuple(rest_left_out(cur, now, token_ids=token_ids, force=force)) if soap_only else ()
                if left_out:
                    log.warning("%s", RestAppMissing(left_out))
                if dry_run:
                    ids = due_tokens(cur, now, token_ids=token_ids, force=force, soap_only=soap_only,
                                     rest_only=rest_only)
                    return Plan(None, tuple(ids), plan_batches(cur, ids, self.settings.batch_size), skipped,
                                rest_left_out=left_out)
                # The run's id first (no row yet), so that the claims can name it; the run row is written once.
                cur.execute("SELECT nextval(pg_get_serial_sequence('runs', 'id'))")
                run_id = fetch_one(cur)[0]
                ids = claim_tokens(cur, now, token_ids=token_ids, force=force, run_id=run_id,
                                   witnesses=self.settings.breaker_min_tokens, soap_only=soap_only,
                                   rest_only=rest_only)
                cur.execute(
                    """INSERT INTO runs (id, dag_run_id, started_at, dry_run, forced, state, summary)
                       VALUES (%s, %s, %s, false, %s, 'running', %s::jsonb)""",
                    (run_id, dag_run_id, now, force,
                     json.dumps({"planned": len(ids),
                                 "skipped": [{"token_id": t, "run_id": r} for t, r in skipped],
                                 **({"rest_left_out": list(left_out)} if left_out else {})})),
                )
                if rest_only:
                    self._cutover(cur, now, run_id)
                batches = plan_batches(cur, ids, self.settings.batch_size)
            plan = Plan(run_id, tuple(ids), batches, skipped, rest_left_out=left_out)
            if plan.skipped:
                log.info("%s", plan.skipped_message())
            return plan
        finally:
            conn.close()

    def _cutover(self, cur: Cursor, now: datetime, run_id: int) -> None:
        """SOAP ended: retire the SOAP tokens, move or suspend their links and tell their customers, once
        (`migration.running`; a no-op once done). In the plan's transaction: a failure fails the plan, nothing
        written."""
        from l1nda_sync.migration.running import run_cutover

        plan = run_cutover(cur, now=now, settings=self.settings, hooks=self.hooks, run_id=run_id)
        if plan.retire or plan.changes:
            cur.execute("UPDATE runs SET summary = summary || %s::jsonb WHERE id = %s",
                        (json.dumps({"cutover": {"retired": len(plan.retire), "moved_to_rest": len(plan.to_rest),
                                                 "suspended": len(plan.suspended),
                                                 "notices": len(plan.notices)}}), run_id))

    def abort(self, run_id: int, reason: str) -> int:
        """A run that fails before it checked anything: mark it failed and release its claims at once."""
        conn = self.connect()
        try:
            with conn, conn.cursor() as cur:
                released = release_claims(cur, run_id)
                cur.execute(
                    """UPDATE runs SET state = 'failed', finished_at = %s,
                           summary = coalesce(summary, '{}'::jsonb) || %s::jsonb
                       WHERE id = %s AND state = 'running'""",
                    (self.clock(), json.dumps({"error": reason[:500]}), run_id),
                )
            return released
        finally:
            conn.close()

    def check_batch(self, run_id: int | None, token_ids: Sequence[int], *, dry_run: bool = False,
                    conn: Connection | None = None) -> dict[str, int]:
        """Probe a batch in a thread pool and store the results as pending checks. Returns counts only.

        A dry run stores them on `conn`, uncommitted: the caller rolls that connection back when it is done.
        Tokens the configured keys cannot decrypt are not checked and nothing about them is stored; after the
        others are stored, `KeysCannotDecrypt` names them and the setting to fix (a deployment fault, never
        blamed on Nmbrs). REST connections while no REST app is configured are left out by the plan (and reported);
        should this worker lack the app all the same, they are logged (`RestAppMissing`) and not checked, the
        others are.
        A REST connection's UUIDs are resolved to L1NDA keys in the transaction that stores its check."""
        _require_rollback_conn(dry_run, conn)
        own = conn is None
        conn = conn or self.connect()
        try:
            # Every check is dated when its secret was read, not when its probe began: a `tokens replace` after the
            # read (while earlier probes of the batch run) then always supersedes the old secret's answer.
            loaded_at = self.clock()
            with unit_of_work(conn, dry_run=dry_run) as cur:
                tokens = load_tokens(cur, token_ids)
            soap = [t for t in tokens if t.kind != "rest_connection"]
            rest = self.rest if len(soap) < len(tokens) else None
            try:
                records = probe_all(tokens, reveal=self.reveal if soap else _no_reveal,
                                    client=self.client if soap else _NO_PROBER, now=lambda: loaded_at,
                                    threads=self.settings.nmbrs_max_concurrency, policy=self.policy, rest=rest)
            finally:
                if rest is not None:
                    rest.release()  # the batch is the unit of concurrency: no connection outlives it
            unreadable = [r.token_id for r in records if r.undecryptable]
            no_app = [r.token_id for r in records if r.no_rest_app]
            records = [r for r in records if not (r.undecryptable or r.no_rest_app)]
            with unit_of_work(conn, dry_run=dry_run) as cur:
                records = finish_rest(cur, records, tokens, policy=self.policy, dry_run=dry_run)
                stored = store_checks(cur, run_id, records)
                if run_id is not None and not dry_run:
                    # A check that moves only its token's clock is applied now; the apply step does the rest.
                    apply_in_batch(cur, candidates(stored, records), policy=self.policy, hooks=self.hooks,
                                   now=self.clock)
            if no_app:
                # This worker has no REST app (the plan's had one): those connections are not checked and their
                # claims end, but the batch's SOAP checks stand and the run is applied.
                log.warning("%s", RestAppMissing(no_app))
                if not dry_run:
                    with unit_of_work(conn, dry_run=dry_run) as cur:
                        cur.execute("UPDATE tokens SET claimed_by = NULL, claimed_until = NULL WHERE id = ANY(%s)",
                                    (list(no_app),))
            if unreadable:
                raise KeysCannotDecrypt(unreadable)
            counts = Counter(r.outcome.value for r in records)
            return {"checked": len(records), "calls": sum(r.calls for r in records), **counts}
        finally:
            if own:
                conn.close()

    def apply_checks(self, run_id: int | None, *, dry_run: bool = False,
                     conn: Connection | None = None) -> RunReport:
        """Apply the run's checks (and any a crashed run left), reconcile links, and store the report.

        A dry run works on `conn`, uncommitted, and the caller rolls it back (see `check_batch`)."""
        _require_rollback_conn(dry_run, conn)
        started = time.monotonic()
        own = conn is None
        conn = conn or self.connect()
        try:
            summary = apply_pending(
                conn, policy=self.policy, now=self.clock, run_id=None,
                breaker_share=self.settings.breaker_share,
                breaker_window=timedelta(seconds=self.settings.breaker_window), hooks=self.hooks, dry_run=dry_run,
                for_run=run_id,
            )
            with unit_of_work(conn, dry_run=dry_run) as cur:
                changes = reconcile_all(cur, now=self.clock, run_id=run_id, breaker_open=summary.frozen,
                                        hooks=self.hooks)
                in_batch = applied_in_batch(cur, run_id, [a.check_id for a in summary.applied])
            report = RunReport.of_apply(summary, changes, run_id=run_id, dry_run=dry_run, in_batch=in_batch)
            with unit_of_work(conn, dry_run=dry_run) as cur:
                if run_id is not None:
                    cur.execute("SELECT coalesce(sum(calls), 0) FROM checks WHERE run_id = %s", (run_id,))
                    report.calls = int(fetch_one(cur)[0])
                report.seconds = time.monotonic() - started
                if not dry_run:
                    self._close_run(cur, report)
            return report
        finally:
            if own:
                conn.close()

    def _close_run(self, cur: Cursor, report: RunReport) -> None:
        """Store the report on its run, release its claims, prune old checks, close runs that died."""
        run_id = report.run_id
        if run_id is not None:
            release_claims(cur, run_id)  # a check that could not be applied must not block its token
            stored = report.to_dict()
            if not report.skipped:
                stored.pop("skipped")  # the plan stored them; this step does not know them
            if not report.rest_left_out:
                stored.pop("rest_left_out")  # idem
            cur.execute(
                """UPDATE runs SET finished_at = %s, state = %s,
                       summary = coalesce(summary, '{}'::jsonb) || %s::jsonb WHERE id = %s""",
                (self.clock(), "failed" if report.apply_errors else "success", json.dumps(stored, default=str),
                 run_id),
            )
        if self.settings.check_retention > 0:
            report.checks_pruned = prune_checks(
                cur, before=self.clock() - timedelta(seconds=self.settings.check_retention))
        # Runs that died (a killed worker, a timed-out DAG run) never finish themselves; their checks were applied
        # above. Close them once they are older than any run may take.
        cur.execute(
            """UPDATE runs SET state = 'abandoned', finished_at = %s
               WHERE state = 'running' AND started_at < %s AND id IS DISTINCT FROM %s""",
            (self.clock(), self.clock() - ABANDONED_AFTER, run_id),
        )

    def close_report(self, run_id: int, extra: dict[str, Any]) -> dict[str, Any]:
        """Add what happened after the apply step (problems opened and resolved since the run began, mails
        sent) to the run's stored summary; returns the whole summary."""
        conn = self.connect()
        try:
            with conn, conn.cursor() as cur:
                cur.execute(
                    """SELECT (SELECT count(*) FROM problems WHERE opened_at >= r.started_at),
                              (SELECT count(*) FROM problems WHERE resolved_at >= r.started_at)
                       FROM runs r WHERE r.id = %s""",
                    (run_id,),
                )
                row = cur.fetchone()
                if row is None:
                    return dict(extra)
                counts = {"problems_opened": int(row[0]), "problems_resolved": int(row[1]), **extra}
                cur.execute(
                    """UPDATE runs SET summary = coalesce(summary, '{}'::jsonb) || %s::jsonb WHERE id = %s
                       RETURNING summary""",
                    (json.dumps(counts, default=str), run_id),
                )
                return dict(fetch_one(cur)[0])
        finally:
            conn.close()

    def run_once(
        self, *, token_ids: Sequence[int] = (), force: bool = False, dry_run: bool = False,
        dag_run_id: str | None = None,
    ) -> RunReport:
        """plan -> check every batch -> apply, in this process (the run pipeline's `run`, tests, benchmarks).

        A dry run does it all on one connection that is rolled back: nothing is written. A run that fails after
        its plan is closed at once (`abort`) and `RunAborted` says what was written."""
        started = time.monotonic()
        plan = self.plan(token_ids=token_ids, force=force, dag_run_id=dag_run_id, dry_run=dry_run)
        conn = self.connect() if dry_run else None
        try:
            report = self._check_and_apply(plan, dry_run=dry_run, conn=conn)
        finally:
            if conn is not None:
                conn.rollback()
                conn.close()
        report.skipped = [{"token_id": t, "run_id": r} for t, r in plan.skipped]
        report.rest_left_out = list(plan.rest_left_out)
        report.seconds = time.monotonic() - started
        return report

    def _check_and_apply(self, plan: Plan, *, dry_run: bool, conn: Connection | None) -> RunReport:
        """Every batch is checked even when one fails (as the DAG's mapped check tasks are); a failure then closes
        the run before anything is applied, as the DAG's close_run task does."""
        calls = 0
        failure: BaseException | None = None
        step = "checking"
        try:
            for batch in plan.batches:
                try:
                    calls += self.check_batch(plan.run_id, batch, dry_run=dry_run, conn=conn).get("calls", 0)
                except Exception as exc:
                    if dry_run or plan.run_id is None:
                        raise
                    log.warning("run %s: a batch of %d token(s) failed: %s", plan.run_id, len(batch), exc)
                    failure = failure or exc
            if failure is not None:
                raise failure
            step = "applying"
            report = self.apply_checks(plan.run_id, dry_run=dry_run, conn=conn)
        except (Exception, KeyboardInterrupt) as exc:
            if dry_run or plan.run_id is None:
                raise
            released = self.abort(plan.run_id, f"{step}: {str(exc) or type(exc).__name__}")
            stored = self._stored_checks(plan.run_id)
            raise RunAborted(plan.run_id, step, exc, released=released, stored=stored) from exc
        report.calls = report.calls or calls
        return report

    def _stored_checks(self, run_id: int) -> int:
        conn = self.connect()
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM checks WHERE run_id = %s", (run_id,))
                return int(fetch_one(cur)[0])
        finally:
            conn.close()


def _no_reveal(ciphertext: str) -> Secret:  # a batch of REST connections only: no SOAP secret is read
    raise AssertionError("no SOAP token in this batch")


class _NoProber:
    """The SOAP client of a batch without SOAP tokens: never built, never called."""

    def probe(self, credentials: Any, previous: Any = None, /) -> Any:
        raise AssertionError("no SOAP token in this batch")


_NO_PROBER = _NoProber()


def _require_rollback_conn(dry_run: bool, conn: Connection | None) -> None:
    """`conn` is for a dry run only: the connection whose transaction the caller rolls back."""
    if dry_run and conn is None:
        raise ValueError("a dry run needs `conn`: the connection whose transaction the caller rolls back")
    if conn is not None and not dry_run:
        raise ValueError("`conn` is for a dry run only; a real step opens and commits its own connection")


PRUNE_LIMIT = 20_000  # per run: a backlog shrinks over a few runs instead of one long delete


def prune_checks(cur: Cursor, *, before: datetime, limit: int = PRUNE_LIMIT) -> int:
    """Delete applied checks older than `before` (at most `limit`); the tokens keep their state and history."""
    cur.execute(
        """DELETE FROM checks WHERE id IN (
               SELECT id FROM checks WHERE applied_at IS NOT NULL AND checked_at < %s ORDER BY id LIMIT %s)""",
        (before, limit),
    )
    return int(cur.rowcount)


__all__ = ["ApplyHooks", "EngineHooks", "LinkHooks", "RunAborted", "RunReport", "SyncEngine"]
