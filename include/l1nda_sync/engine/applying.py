"""Apply pending checks: one token's whole change in one transaction, safe to run twice.

For each pending check (oldest first) the token row is locked (FOR UPDATE), so two runs never apply the same
token at once; a check that another run already applied, or that is older than what the token already knows,
is marked and skipped, so a rerun after a crash converges to the same state. The circuit breaker is judged
over a sliding window of checks across runs, per credential kind (`breaker.judge_by_kind`), before anything
moves, so a run that applies another run's pending checks judges them with all the evidence, never in pieces; a
tripped kind freezes only its own credentials. (A valid answer that moves only its token's clock needs no verdict:
its batch applies it through this module's write path as it stores it, `early_apply`.)

The checks of tokens with no other pending check are applied in bulk, many tokens per transaction with the same
decisions and the same locks, and with one statement per table for all their reach writes: an unchanged token
costs a constant handful of statements, and a first sweep's thousands of reach rows go in a few large statements
instead of several per token. Their hooks are called for the chunk at once where the hooks can (`ChunkHooks`), so
the alerts look up once for the chunk what they would per token. Should a bulk chunk fail, its checks are applied
one by one as above.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from l1nda_sync.engine.breaker import (
    CLEAR,
    Breakers,
    BreakerVerdict,
    Evidence,
    Frozen,
    is_frozen,
    is_news,
    judge_by_kind,
)
from l1nda_sync.engine.outcomes import reach_from_probe
from l1nda_sync.engine.reach import Change, Entity, ReachDiff, diff_reach
from l1nda_sync.engine.token_state import (
    OUT_OF_SERVICE_STATES,
    CheckResult,
    CredentialKind,
    Outcome,
    StatePolicy,
    TokenHealth,
    TokenState,
    Transition,
    decide,
    member_of,
)

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor

FINAL_STATES = frozenset(s.value for s in OUT_OF_SERVICE_STATES)  # a check never moves these
MAX_LATE = timedelta(hours=1)  # how far the breaker's window reaches back for checks applied late
BULK_CHUNK = 500  # checks per transaction on the bulk path (one check per token)
REACH_PAGE = 1000  # reach rows per statement: a chunk's rows go in a few statements of bounded size

log = logging.getLogger(__name__)
_STATE, _OUTCOME, _KIND = member_of(TokenState), member_of(Outcome), member_of(CredentialKind)


class ApplyHooks(Protocol):
    """What the alerting side does inside the same transaction as the state change that causes it."""

    def token_applied(self, cur: Cursor, applied: AppliedCheck, *, run_id: int | None, now: datetime) -> None: ...

    def breaker_judged(self, cur: Cursor, verdict: BreakerVerdict, *, run_id: int | None, now: datetime) -> None: ...


@runtime_checkable
class ChunkHooks(ApplyHooks, Protocol):
    """ApplyHooks that also take a bulk chunk's applied checks at once: `tokens_applied` does what `token_applied`
    does for each, in order, but may look up once for the chunk what it would look up per token."""

    def tokens_applied(self, cur: Cursor, applied: Sequence[tuple[AppliedCheck, int | None]], *,
                       now: Callable[[], datetime]) -> None: ...


def tokens_applied(hooks: ApplyHooks, cur: Cursor, applied: Sequence[tuple[AppliedCheck, int | None]], *,
                   now: Callable[[], datetime]) -> None:
    """The hooks of a bulk chunk's (applied check, run id) pairs: `tokens_applied` where the hooks have it, else
    `token_applied` for each."""
    if isinstance(hooks, ChunkHooks):
        hooks.tokens_applied(cur, applied, now=now)
        return
    for check, run_id in applied:
        hooks.token_applied(cur, check, run_id=run_id, now=now())


class NoHooks:
    """ApplyHooks that do nothing (no alerting)."""

    def token_applied(self, cur: Cursor, applied: AppliedCheck, *, run_id: int | None, now: datetime) -> None:
        return None

    def tokens_applied(self, cur: Cursor, applied: Sequence[tuple[AppliedCheck, int | None]], *,
                       now: Callable[[], datetime]) -> None:
        return None

    def breaker_judged(self, cur: Cursor, verdict: BreakerVerdict, *, run_id: int | None, now: datetime) -> None:
        return None


@dataclass(frozen=True, slots=True)
class AppliedCheck:
    """One check applied to its token: the outcome, the token's transition, and the reach it wrote (if any)."""

    check_id: int
    token_id: int
    label: str
    level: str
    outcome: Outcome
    transition: Transition
    diff: ReachDiff | None
    kind: CredentialKind = CredentialKind.SOAP_TOKEN  # the credential checked: a SOAP token or a REST connection
    companies_gained: int = 0  # the diff's company events, counted: the run's report needs no more of it
    companies_lost: int = 0

    def without_diff(self) -> AppliedCheck:
        """This check as a run's summary keeps it: the reach it wrote counted, not held (a first sweep of 20,000
        tokens would otherwise keep every company and event it wrote, some 300 MB, until the report is made)."""
        return self if self.diff is None else replace(self, diff=None)


@dataclass
class ApplySummary:
    """What `apply_pending` did: the applied checks, how many were skipped or failed, the breaker's verdict."""

    applied: list[AppliedCheck] = field(default_factory=list)
    skipped: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)  # (check id, error type): left pending
    verdict: BreakerVerdict = CLEAR
    frozen: frozenset[CredentialKind] = frozenset()  # the credential kinds whose breaker tripped

    @property
    def breaker_open(self) -> bool:
        return bool(self.frozen) or self.verdict.tripped

    def outcomes(self) -> Counter[str]:
        return Counter(a.outcome.value for a in self.applied)


@contextmanager
def unit_of_work(conn: Connection, *, dry_run: bool) -> Iterator[Cursor]:
    """A transaction per unit; in a dry run a savepoint inside the caller's transaction, rolled back later."""
    if dry_run:
        with conn.cursor() as cur:
            cur.execute("SAVEPOINT unit")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK TO SAVEPOINT unit")
                raise
            cur.execute("RELEASE SAVEPOINT unit")
        return
    with conn, conn.cursor() as cur:
        yield cur


def judge_recent(
    cur: Cursor, *, now: datetime, window: timedelta, share: float
) -> BreakerVerdict:
    """The breaker's verdict to report (`Breakers.verdict`) over the checks made inside the window."""
    return judge_recent_by_kind(cur, now=now, window=window, share=share).verdict


def judge_recent_by_kind(
    cur: Cursor, *, now: datetime, window: timedelta, share: float, run_id: int | None = None
) -> Breakers:
    """The breaker's verdicts, per credential kind, over every check (applied or pending, of any run) made inside
    the window. The window reaches back from the oldest pending check, or the oldest check its batch applied
    (`early_apply`) of a run still running, with checks pending, or `run_id`, so checks applied late (a long check
    phase, a crashed run's leftovers) are judged with the evidence of their own time, as when every check waited."""
    cur.execute(_OLDEST_UNJUDGED, {"now": now, "run": run_id})
    row = cur.fetchone()
    oldest = row[0] if row is not None else None
    if oldest is not None and oldest < now:
        window += min(now - oldest, MAX_LATE)
    cur.execute(
        """SELECT DISTINCT ON (c.token_id) c.token_id, c.checked_at, c.outcome, t.state, t.kind
           FROM checks c JOIN tokens t ON t.id = c.token_id
           WHERE c.checked_at > %s AND c.checked_at <= %s
           ORDER BY c.token_id, c.checked_at DESC, c.id DESC""",
        (now - window, now),
    )
    known = {o.value for o in Outcome}
    evidence = []
    for token_id, at, text, state, kind in cur.fetchall():
        outcome = _OUTCOME(text) if text in known else Outcome.UNKNOWN
        evidence.append(Evidence(token_id, at, outcome, is_news(state, outcome), _KIND(kind)))
    return judge_by_kind(evidence, now=now, window=window, share=share)


# The oldest check the breaker's window must reach back to (see `judge_recent_by_kind`): pending ones, and those its
# batch applied of a run whose apply step has not run (it is running, or left checks pending) or is `run`.
_OLDEST_UNJUDGED = """
    SELECT least(
        (SELECT min(checked_at) FROM checks WHERE applied_at IS NULL AND checked_at <= %(now)s),
        (SELECT min(checked_at) FROM checks
         WHERE checked_at <= %(now)s AND (applied_in_batch OR run_id = %(run)s)
           AND run_id IN (SELECT id FROM runs WHERE state = 'running'
                          UNION SELECT run_id FROM checks WHERE applied_at IS NULL AND run_id IS NOT NULL
                          UNION SELECT %(run)s::bigint WHERE %(run)s::bigint IS NOT NULL)))"""


@dataclass(frozen=True, slots=True)
class _Listed:
    """A pending check as listed for a run."""

    check_id: int
    run_id: int | None
    token_id: int


def _list_pending(conn: Connection, run_id: int | None, *, dry_run: bool) -> list[_Listed]:
    """The pending checks (of `run_id`, or of any run), oldest first."""
    with unit_of_work(conn, dry_run=dry_run) as cur:
        cur.execute(
            "SELECT id, run_id, token_id FROM checks WHERE applied_at IS NULL"
            + (" AND run_id = %s" if run_id is not None else "")
            + " ORDER BY checked_at, id",
            (run_id,) if run_id is not None else (),
        )
        return [_Listed(*row) for row in cur.fetchall()]


@dataclass(frozen=True, slots=True)
class _Applier:
    """The fixed arguments of one `apply_pending`: where, how, with which verdict and hooks."""

    conn: Connection
    policy: StatePolicy
    now: Callable[[], datetime]
    frozen: frozenset[CredentialKind]
    hooks: ApplyHooks
    dry_run: bool

    def in_bulk(self, bulk: list[tuple[int, int | None]], summary: ApplySummary) -> set[int]:
        """Apply the bulk checks chunk by chunk; returns the ids of the checks whose chunk committed. A chunk that
        fails is left to `one_by_one`."""
        done: set[int] = set()
        for start in range(0, len(bulk), BULK_CHUNK):
            chunk = bulk[start : start + BULK_CHUNK]
            try:
                with unit_of_work(self.conn, dry_run=self.dry_run) as cur:
                    applied_chunk, skipped = apply_checks_bulk(cur, chunk, policy=self.policy,
                                                               breaker_open=self.frozen, now=self.now)
                    tokens_applied(self.hooks, cur, applied_chunk, now=self.now)
            except Exception as exc:
                log.warning("a bulk apply of %d checks failed (%s); applying them one by one", len(chunk),
                            type(exc).__name__)
                continue
            summary.applied.extend(applied.without_diff() for applied, _ in applied_chunk)
            summary.skipped += skipped
            done.update(cid for cid, _ in chunk)
        return done

    def one_by_one(self, pending: list[tuple[int, int | None]], summary: ApplySummary) -> None:
        """Apply each check in its own transaction, in order; one token's fault never stops the others."""
        for check_id, rid in pending:
            try:
                with unit_of_work(self.conn, dry_run=self.dry_run) as cur:
                    applied = apply_check(cur, check_id, policy=self.policy, breaker_open=self.frozen,
                                          now=self.now(), run_id=rid)
                    if applied is None:
                        summary.skipped += 1
                        continue
                    self.hooks.token_applied(cur, applied, run_id=rid, now=self.now())
                    summary.applied.append(applied.without_diff())
            except Exception as exc:
                # Its transaction is rolled back, the check stays pending (a newer check of the token supersedes
                # it), and the caller reports the failure.
                log.exception("check %s could not be applied (%s); it stays pending", check_id, type(exc).__name__)
                summary.failed.append((check_id, type(exc).__name__))


def apply_pending(
    conn: Connection,
    *,
    policy: StatePolicy,
    now: Callable[[], datetime],
    run_id: int | None = None,
    breaker_share: float = 0.5,
    breaker_window: timedelta = timedelta(minutes=15),
    hooks: ApplyHooks | None = None,
    dry_run: bool = False,
    for_run: int | None = None,
) -> ApplySummary:
    """Apply every pending check (of `run_id`, or of any run: checks a crashed run left behind). `for_run`: the
    run whose apply step this is (the breaker's window reaches back to its first check, run_id or not)."""
    hooks = hooks or NoHooks()
    with unit_of_work(conn, dry_run=dry_run) as cur:
        breakers = judge_recent_by_kind(cur, now=now(), window=breaker_window, share=breaker_share,
                                        run_id=for_run if for_run is not None else run_id)
    verdict = breakers.verdict
    summary = ApplySummary(verdict=verdict, frozen=breakers.frozen)
    with unit_of_work(conn, dry_run=dry_run) as cur:
        hooks.breaker_judged(cur, verdict, run_id=run_id, now=now())
    listed = _list_pending(conn, run_id, dry_run=dry_run)
    # The check of a token with no other pending check goes the bulk way: many tokens in one transaction, a
    # constant number of statements for their health and one per table for their reach. If a bulk chunk fails,
    # its checks go the single way below, where one token's fault is rolled back alone. Tokens with several
    # pending checks (a crashed run's and this one's): one check per transaction, in order. Both ways write
    # through the same `apply_locked`.
    applier = _Applier(conn, policy, now, breakers.frozen, hooks, dry_run)
    per_token = Counter(c.token_id for c in listed)
    bulk = [(c.check_id, c.run_id) for c in listed if per_token[c.token_id] == 1]
    done = applier.in_bulk(bulk, summary)
    applier.one_by_one([(c.check_id, c.run_id) for c in listed if c.check_id not in done], summary)
    order = {c.check_id: n for n, c in enumerate(listed)}
    summary.applied.sort(key=lambda a: order[a.check_id])
    return summary


def _skip_note(state: str, replaced_at: datetime | None, last_checked: datetime | None,
               checked_at: datetime) -> str | None:
    """Why a check must not be applied to the token as it is now; None when it may."""
    if state in FINAL_STATES:
        return f"not applied: token is {state}"
    if replaced_at is not None and checked_at < replaced_at:
        return "not applied: the token was replaced after this check began"
    if last_checked is not None and last_checked > checked_at:
        return "not applied: superseded by a newer check"
    return None


# A check that may carry reach: the probe and the token's stored reach are read only for these (SQL).
_MAY_CARRY_REACH = "c.outcome IN ('valid', 'reach_drop') AND NOT c.unchanged AND c.probe IS NOT NULL"


@dataclass(frozen=True, slots=True)
class PendingCheck:
    """A pending check with the row of its token, both locked for update by the transaction applying it.

    `probe` and `cache` (the token's stored reach) are read only when the check may carry reach (a valid answer
    or a reach drop whose probe differs from the stored reach), else None.
    """

    check_id: int
    run_id: int | None
    token_id: int
    label: str
    level: str
    result: CheckResult
    health: TokenHealth
    last_checked_at: datetime | None
    probe: dict[str, Any] | None
    cache: dict[str, Any] | None
    kind: CredentialKind = CredentialKind.SOAP_TOKEN

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> PendingCheck:
        (check_id, run_id, token_id, checked_at, outcome, check_missing, label, level, state, c_inv, f_inv, c_tr,
         f_tr, missing, last_valid, last_checked, replaced_at, refusal, drop_since, kind, probe, cache) = row
        health = TokenHealth(_STATE(state), c_inv, f_inv, c_tr, f_tr, missing, last_valid, refusal, drop_since,
                             replaced_at)
        return cls(check_id, run_id, token_id, label, level, CheckResult(_OUTCOME(outcome), checked_at, check_missing),
                   health, last_checked, probe, cache, _KIND(kind))

    @property
    def skip_note(self) -> str | None:
        """Why this check must not be applied to its token as it is now; None when it may."""
        return _skip_note(self.health.state, self.health.replaced_at, self.last_checked_at, self.result.at)


def lock_pending(cur: Cursor, check_ids: Sequence[int]) -> list[PendingCheck]:
    """The checks among `check_ids` still pending, with their tokens, locked for update (in token id order); a
    check another run applied meanwhile is left out."""
    cur.execute(
        f"""SELECT c.id, c.run_id, c.token_id, c.checked_at, c.outcome, c.missing_operation,
                   t.label, t.level, t.state, t.consecutive_invalid, t.first_invalid_at, t.consecutive_transient,
                   t.first_transient_at, t.missing_operation, t.last_valid_at, t.last_checked_at, t.replaced_at,
                   t.refusal, t.drop_since, t.kind,
                   CASE WHEN {_MAY_CARRY_REACH} THEN c.probe END, CASE WHEN {_MAY_CARRY_REACH} THEN t.probe_cache END
            FROM checks c JOIN tokens t ON t.id = c.token_id
            WHERE c.id = ANY(%s) AND c.applied_at IS NULL
            ORDER BY t.id
            FOR UPDATE OF c, t""",
        (list(check_ids),),
    )
    return [PendingCheck.from_row(row) for row in cur.fetchall()]


@dataclass(frozen=True, slots=True)
class HealthWrite:
    """What one applied check writes to its token: the new health, an event if the state changed, and (when
    the check wrote reach) the probe as the token's stored reach and the probe's domain; None keeps them."""

    applied: AppliedCheck
    run_id: int | None
    checked_at: datetime
    probe_cache: dict[str, Any] | None = None
    domain: str | None = None


def write_health(cur: Cursor, writes: Sequence[HealthWrite], *, at: datetime, in_batch: bool = False) -> None:
    """Write a token's health for each applied check (one check per token), its state change event, and mark
    the checks applied (`in_batch`: by the batch that stored them, `early_apply`): the one write path of the bulk,
    the single and the batch's apply, with a constant number of statements however many checks. An applied check
    ends its token's claim: the run is done with the token."""
    from psycopg2.extras import execute_values

    if not writes:
        return
    # The rows travel as one JSON document, which the server reads into a record set: a tenth of the client's CPU
    # that adapting each of some 16 parameters per token costs (timestamps as ISO 8601, exact to the microsecond).
    token_rows = []
    for w in writes:
        after, outcome = w.applied.transition.after, w.applied.outcome
        token_rows.append({
            "id": w.applied.token_id, "state": after.state.value, "c_inv": after.consecutive_invalid,
            "f_inv": _iso(after.first_invalid_at), "c_tr": after.consecutive_transient,
            "f_tr": _iso(after.first_transient_at), "missing": after.missing_operation,
            "last_valid": _iso(after.last_valid_at), "refusal": after.refusal, "drop_since": _iso(after.drop_since),
            "outcome": outcome.value, "checked_at": _iso(w.checked_at),
            "next_check": _iso(w.applied.transition.next_check_at), "probe_cache": w.probe_cache, "domain": w.domain,
        })
    cur.execute(
        """UPDATE tokens AS t SET state = v.state,
               state_since = CASE WHEN t.state = v.state THEN t.state_since ELSE v.checked_at END,
               consecutive_invalid = v.c_inv, first_invalid_at = v.f_inv, consecutive_transient = v.c_tr,
               first_transient_at = v.f_tr, missing_operation = v.missing, last_valid_at = v.last_valid,
               refusal = v.refusal, drop_since = v.drop_since, last_outcome = v.outcome,
               claimed_by = NULL, claimed_until = NULL,
               last_checked_at = v.checked_at, next_check_at = v.next_check,
               probe_cache = COALESCE(v.probe_cache, t.probe_cache), domain = COALESCE(v.domain, t.domain),
               updated_at = %s
           FROM jsonb_to_recordset(%s::jsonb) AS v(
               id bigint, state text, c_inv int, f_inv timestamptz, c_tr int, f_tr timestamptz, missing text,
               last_valid timestamptz, refusal text, drop_since timestamptz, outcome text, checked_at timestamptz,
               next_check timestamptz, probe_cache jsonb, domain text)
           WHERE t.id = v.id""",
        (at, json.dumps(token_rows)),
    )
    events = [
        (w.applied.token_id, w.checked_at, w.applied.transition.before.state.value,
         w.applied.transition.after.state.value,
         json.dumps({"check_id": w.applied.check_id, "run_id": w.run_id, "outcome": w.applied.outcome.value,
                     "missing_operation": w.applied.transition.after.missing_operation}))
        for w in writes if w.applied.transition.changed_state
    ]
    if events:
        execute_values(
            cur,
            """INSERT INTO token_events (token_id, at, actor, action, from_state, to_state, detail)
               VALUES %s""",
            events,
            template="(%s, %s, 'sync', 'state_changed', %s, %s, %s::jsonb)",
            page_size=len(events),
        )
    cur.execute("UPDATE checks SET applied_at = %s, probe = NULL, applied_in_batch = %s WHERE id = ANY(%s)",
                (at, in_batch, [w.applied.check_id for w in writes]))


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _company_changes(diff: ReachDiff | None) -> tuple[int, int]:
    """(companies gained, companies lost) by the diff's events."""
    if diff is None:
        return 0, 0
    gained = sum(1 for e in diff.events if e.entity is Entity.COMPANY and e.change is Change.GAINED)
    lost = sum(1 for e in diff.events if e.entity is Entity.COMPANY and e.change is Change.LOST)
    return gained, lost


@dataclass(frozen=True, slots=True)
class ReachWrite:
    """One token's reach change to write: its diff, when it was seen, and the run it is recorded for."""

    token_id: int
    diff: ReachDiff
    at: datetime
    run_id: int | None


def _carried_reach(pending: PendingCheck, transition: Transition) -> ReachDiff | None:
    """The reach change a check carries (a valid answer, or a confirmed reach drop, whose probe differs from the
    stored reach), or None."""
    outcome = pending.result.outcome
    carries = outcome is Outcome.VALID or (outcome is Outcome.REACH_DROP and transition.write_reach)
    if not carries or pending.probe is None:
        return None
    return diff_reach(reach_from_probe(pending.cache), reach_from_probe(pending.probe),
                      debtor_level=pending.level == "debtor")


def apply_locked(
    cur: Cursor, pending: Sequence[PendingCheck], *, policy: StatePolicy, breaker_open: Frozen, at: datetime,
    in_batch: bool = False,
) -> list[HealthWrite]:
    """Apply locked pending checks, each of a different token, inside the caller's transaction: decide each,
    write the reach it carries, then every token's health in one `write_health`; a check that must not be
    applied is marked with why. Returns what was applied, in the order given."""
    if len({p.token_id for p in pending}) != len(pending):  # two writes of one token's health would race
        raise ValueError("apply_locked takes one check per token in a batch")
    writes: list[HealthWrite] = []
    reach: list[ReachWrite] = []
    for p in pending:
        note = p.skip_note
        if note is not None:
            _mark_applied(cur, p.check_id, at, note)
            continue
        transition = decide(p.health, p.result, policy, breaker_open=is_frozen(breaker_open, p.kind))
        diff = _carried_reach(p, transition)
        gained, lost = _company_changes(diff)
        applied = AppliedCheck(p.check_id, p.token_id, p.label, p.level, p.result.outcome, transition, diff,
                               p.kind, gained, lost)
        if diff is None or p.probe is None:  # a carried diff always has its probe
            writes.append(HealthWrite(applied, p.run_id, p.result.at))
            continue
        reach.append(ReachWrite(p.token_id, diff, p.result.at, p.run_id))
        writes.append(HealthWrite(applied, p.run_id, p.result.at, p.probe, p.probe.get("domain") or None))
    write_reach(cur, reach)
    write_health(cur, writes, at=at, in_batch=in_batch)
    return writes


def apply_checks_bulk(
    cur: Cursor, checks: Sequence[tuple[int, int | None]], *, policy: StatePolicy, breaker_open: Frozen,
    now: Callable[[], datetime],
) -> tuple[list[tuple[AppliedCheck, int | None]], int]:
    """Apply checks that write no reach (a failure, or a probe equal to the stored reach), each of a different
    token, inside the caller's transaction with a constant number of statements; the decisions are those of
    `apply_check`. Returns the applied checks with their run, and how many were skipped."""
    if not checks:
        return [], 0
    pending = lock_pending(cur, [cid for cid, _ in checks])
    writes = apply_locked(cur, pending, policy=policy, breaker_open=breaker_open, at=now())
    return [(w.applied, w.run_id) for w in writes], len(checks) - len(writes)


def _mark_applied(cur: Cursor, check_id: int, now: datetime, note: str | None = None) -> None:
    cur.execute(
        "UPDATE checks SET applied_at = %s, probe = NULL, detail = COALESCE(%s, detail) WHERE id = %s",
        (now, note, check_id),
    )


def apply_check(
    cur: Cursor, check_id: int, *, policy: StatePolicy, breaker_open: Frozen, now: datetime, run_id: int | None
) -> AppliedCheck | None:
    """Apply one pending check inside the caller's transaction (a batch of one, reach included, on the bulk
    path's write path); None when there was nothing to apply. `run_id` is the run its events are recorded for."""
    pending = [replace(p, run_id=run_id) for p in lock_pending(cur, [check_id])]
    writes = apply_locked(cur, pending, policy=policy, breaker_open=breaker_open, at=now)
    return writes[0].applied if writes else None


def write_reach(cur: Cursor, changes: Sequence[ReachWrite]) -> None:
    """Write only what changed, for every token in `changes` (each once): upserts for gained and updated rows,
    lost_at for lost ones, one event per change; one statement per table per `REACH_PAGE` rows, whose rows travel
    as one JSON document (as in `write_health`: a first sweep writes some 100,000 rows)."""
    upsert_debtors = [
        {"token_id": w.token_id, "debtor_id": d.id, "number": d.number, "name": d.name, "tags": sorted(d.tags),
         "at": w.at.isoformat()}
        for w in changes for d in (*w.diff.debtors_gained, *w.diff.debtors_updated)
    ]
    _insert_pages(
        cur,
        """INSERT INTO reach_debtors (token_id, debtor_id, number, name, tags, first_seen, last_seen)
           SELECT token_id, debtor_id, number, name, tags, at, at FROM jsonb_to_recordset(%s::jsonb)
               AS v(token_id bigint, debtor_id integer, number text, name text, tags jsonb, at timestamptz)
           ON CONFLICT (token_id, debtor_id) DO UPDATE SET number = EXCLUDED.number, name = EXCLUDED.name,
               tags = EXCLUDED.tags, last_seen = EXCLUDED.last_seen, lost_at = NULL""",
        upsert_debtors,
    )
    _mark_lost(cur, "reach_debtors", "debtor_id",
               [(w.token_id, d.id, w.at) for w in changes for d in w.diff.debtors_lost])
    upsert_companies = [
        {"token_id": w.token_id, "company_id": c.id, "debtor_id": c.debtor_id, "number": c.number, "name": c.name,
         "at": w.at.isoformat()}
        for w in changes for c in (*w.diff.companies_gained, *w.diff.companies_updated)
    ]
    _insert_pages(  # number as numeric: what a literal in a VALUES list was, before the column's assignment cast
        cur,
        """INSERT INTO reach_companies (token_id, company_id, debtor_id, number, name, first_seen, last_seen)
           SELECT token_id, company_id, debtor_id, number, name, at, at FROM jsonb_to_recordset(%s::jsonb)
               AS v(token_id bigint, company_id integer, debtor_id integer, number numeric, name text,
                    at timestamptz)
           ON CONFLICT (token_id, company_id) DO UPDATE SET debtor_id = EXCLUDED.debtor_id,
               number = EXCLUDED.number, name = EXCLUDED.name, last_seen = EXCLUDED.last_seen, lost_at = NULL""",
        upsert_companies,
    )
    _mark_lost(cur, "reach_companies", "company_id",
               [(w.token_id, c.id, w.at) for w in changes for c in w.diff.companies_lost])
    events = [
        {"token_id": w.token_id, "run_id": w.run_id, "at": w.at.isoformat(), "change": e.change.value,
         "entity": e.entity.value, "entity_id": e.entity_id, "debtor_id": e.debtor_id, "detail": dict(e.detail)}
        for w in changes for e in w.diff.events
    ]
    _insert_pages(
        cur,
        """INSERT INTO reach_events (token_id, run_id, at, change, entity, entity_id, debtor_id, detail)
           SELECT token_id, run_id, at, change, entity, entity_id, debtor_id, detail
           FROM jsonb_to_recordset(%s::jsonb) AS v(token_id bigint, run_id bigint, at timestamptz, change text,
                                                 entity text, entity_id integer, debtor_id integer, detail jsonb)""",
        events,
    )


def _insert_pages(cur: Cursor, sql: str, rows: list[dict[str, Any]]) -> None:
    """`sql` (reading its rows from one JSON parameter) once per `REACH_PAGE` rows, in order."""
    for start in range(0, len(rows), REACH_PAGE):
        cur.execute(sql, (json.dumps(rows[start : start + REACH_PAGE]),))


def _mark_lost(cur: Cursor, table: str, key: str, rows: list[tuple[int, int, datetime]]) -> None:
    """Set lost_at on the (token id, `key`, when) rows of a reach table (a fixed name, never input)."""
    from psycopg2.extras import execute_values

    if rows:
        execute_values(
            cur,
            f"""UPDATE {table} AS r SET lost_at = v.at FROM (VALUES %s) AS v(token_id, entity_id, at)
                WHERE r.token_id = v.token_id AND r.{key} = v.entity_id""",
            rows,
            template="(%s::bigint, %s::integer, %s::timestamptz)",
            page_size=REACH_PAGE,
        )
