"""Apply pending checks: one token's whole change in one transaction, safe to run twice.

For each pending check (oldest first) the token row is locked (FOR UPDATE), so two runs never apply the same
token at once; a check that another run already applied, or that is older than what the token already knows,
is marked and skipped, so a rerun after a crash converges to the same state. The circuit breaker is judged
over a sliding window of checks across runs (`breaker.judge_window`) before anything moves, so a run that applies
another run's pending checks judges them with all the evidence, never in pieces.

Checks that write no reach (a failure, or an unchanged probe: nearly every check of a quiet sweep) of tokens
with no other pending check are applied in bulk, many tokens per transaction with the same decisions and the
same locks, so an unchanged token costs a constant handful of statements; should a bulk chunk fail, its checks
are applied one by one as above.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from l1nda_sync.engine.breaker import CLEAR, BreakerVerdict, Evidence, is_news, judge_window
from l1nda_sync.engine.outcomes import reach_from_probe
from l1nda_sync.engine.reach import Reach, ReachDiff, diff_reach
from l1nda_sync.engine.token_state import (
    CheckResult,
    Outcome,
    StatePolicy,
    TokenHealth,
    TokenState,
    Transition,
    decide,
)

FINAL_STATES = (TokenState.DISABLED.value, TokenState.REMOVED.value)
MAX_LATE = timedelta(hours=1)  # how far the breaker's window reaches back for checks applied late
BULK_CHUNK = 500  # checks per transaction on the bulk path (no reach to write, one check per token)

log = logging.getLogger(__name__)


class ApplyHooks(Protocol):
    """What the alerting side does inside the same transaction as the state change that causes it."""

    def token_applied(self, cur: Any, applied: AppliedCheck, *, run_id: int | None, now: datetime) -> None: ...

    def breaker_judged(self, cur: Any, verdict: BreakerVerdict, *, run_id: int | None, now: datetime) -> None: ...


class NoHooks:
    def token_applied(self, cur: Any, applied: AppliedCheck, *, run_id: int | None, now: datetime) -> None:
        return None

    def breaker_judged(self, cur: Any, verdict: BreakerVerdict, *, run_id: int | None, now: datetime) -> None:
        return None


@dataclass(frozen=True, slots=True)
class AppliedCheck:
    check_id: int
    token_id: int
    label: str
    level: str
    outcome: Outcome
    transition: Transition
    diff: ReachDiff | None


@dataclass
class ApplySummary:
    applied: list[AppliedCheck] = field(default_factory=list)
    skipped: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)  # (check id, error type): left pending
    verdict: BreakerVerdict = CLEAR

    @property
    def breaker_open(self) -> bool:
        return self.verdict.tripped

    def outcomes(self) -> Counter[str]:
        return Counter(a.outcome.value for a in self.applied)


@contextmanager
def unit_of_work(conn: Any, *, dry_run: bool) -> Iterator[Any]:
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
    cur: Any, *, now: datetime, window: timedelta, share: float
) -> BreakerVerdict:
    """The breaker's verdict over every check (applied or pending, of any run) made inside the window. The window
    reaches back from the oldest pending check, so checks applied late (a long check phase, a crashed run's
    leftovers) are judged with the evidence of their own time."""
    cur.execute("SELECT min(checked_at) FROM checks WHERE applied_at IS NULL AND checked_at <= %s", (now,))
    oldest = cur.fetchone()[0]
    if oldest is not None and oldest < now:
        window += min(now - oldest, MAX_LATE)
    cur.execute(
        """SELECT DISTINCT ON (c.token_id) c.token_id, c.checked_at, c.outcome, t.state
           FROM checks c JOIN tokens t ON t.id = c.token_id
           WHERE c.checked_at > %s AND c.checked_at <= %s
           ORDER BY c.token_id, c.checked_at DESC, c.id DESC""",
        (now - window, now),
    )
    known = {o.value for o in Outcome}
    evidence = []
    for token_id, at, text, state in cur.fetchall():
        outcome = Outcome(text) if text in known else Outcome.UNKNOWN
        evidence.append(Evidence(token_id, at, outcome, is_news(state, outcome)))
    return judge_window(evidence, now=now, window=window, share=share)


def apply_pending(
    conn: Any,
    *,
    policy: StatePolicy,
    now: Callable[[], datetime],
    run_id: int | None = None,
    breaker_share: float = 0.5,
    breaker_window: timedelta = timedelta(minutes=15),
    hooks: ApplyHooks | None = None,
    dry_run: bool = False,
) -> ApplySummary:
    """Apply every pending check (of `run_id`, or of any run: checks a crashed run left behind)."""
    hooks = hooks or NoHooks()
    with unit_of_work(conn, dry_run=dry_run) as cur:
        verdict = judge_recent(cur, now=now(), window=breaker_window, share=breaker_share)
    summary = ApplySummary(verdict=verdict)
    with unit_of_work(conn, dry_run=dry_run) as cur:
        hooks.breaker_judged(cur, verdict, run_id=run_id, now=now())
    with unit_of_work(conn, dry_run=dry_run) as cur:
        cur.execute(
            "SELECT id, run_id, token_id, (outcome NOT IN ('valid', 'reach_drop') OR unchanged OR probe IS NULL)"
            " FROM checks WHERE applied_at IS NULL"
            + (" AND run_id = %s" if run_id is not None else "")
            + " ORDER BY checked_at, id",
            (run_id,) if run_id is not None else (),
        )
        listed = cur.fetchall()
    # A check that writes no reach, of a token with no other pending check, goes the bulk way: many tokens in
    # one transaction with a constant number of statements. If a bulk chunk fails, its checks go the single way
    # below, where one token's fault is rolled back alone. Everything else: one token per transaction, in order.
    per_token = Counter(token_id for _, _, token_id, _ in listed)
    bulk = [(cid, rid) for cid, rid, token_id, no_reach in listed if no_reach and per_token[token_id] == 1]
    done: set[int] = set()
    for start in range(0, len(bulk), BULK_CHUNK):
        chunk = bulk[start : start + BULK_CHUNK]
        try:
            with unit_of_work(conn, dry_run=dry_run) as cur:
                applied_chunk, skipped = apply_checks_bulk(cur, chunk, policy=policy,
                                                           breaker_open=verdict.tripped, now=now)
                for applied, rid in applied_chunk:
                    hooks.token_applied(cur, applied, run_id=rid, now=now())
        except Exception as exc:
            log.warning("a bulk apply of %d checks failed (%s); applying them one by one", len(chunk),
                        type(exc).__name__)
            continue
        summary.applied.extend(applied for applied, _ in applied_chunk)
        summary.skipped += skipped
        done.update(cid for cid, _ in chunk)
    pending = [(cid, rid) for cid, rid, _, _ in listed if cid not in done]
    for check_id, rid in pending:
        try:
            with unit_of_work(conn, dry_run=dry_run) as cur:
                applied = apply_check(cur, check_id, policy=policy, breaker_open=verdict.tripped,
                                      now=now(), run_id=rid)
                if applied is None:
                    summary.skipped += 1
                    continue
                hooks.token_applied(cur, applied, run_id=rid, now=now())
                summary.applied.append(applied)
        except Exception as exc:
            # One token's fault never stops the others: its transaction is rolled back, the check stays
            # pending (a newer check of the token supersedes it), and the caller reports the failure.
            log.exception("check %s could not be applied (%s); it stays pending", check_id, type(exc).__name__)
            summary.failed.append((check_id, type(exc).__name__))
    order = {row[0]: n for n, row in enumerate(listed)}
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


def apply_checks_bulk(
    cur: Any, checks: list[tuple[int, int | None]], *, policy: StatePolicy, breaker_open: bool,
    now: Callable[[], datetime],
) -> tuple[list[tuple[AppliedCheck, int | None]], int]:
    """Apply checks that write no reach (a failure, or a probe equal to the stored reach), each of a different
    token, inside the caller's transaction with a constant number of statements; the decisions are those of
    `apply_check`. Returns the applied checks with their run, and how many were skipped."""
    from psycopg2.extras import execute_values

    if not checks:
        return [], 0
    cur.execute(
        """SELECT c.id, c.run_id, c.token_id, c.checked_at, c.outcome, c.missing_operation,
                  t.label, t.level, t.state, t.consecutive_invalid, t.first_invalid_at, t.consecutive_transient,
                  t.first_transient_at, t.missing_operation, t.last_valid_at, t.last_checked_at, t.replaced_at,
                  t.refusal, t.drop_since
           FROM checks c JOIN tokens t ON t.id = c.token_id
           WHERE c.id = ANY(%s) AND c.applied_at IS NULL
           ORDER BY t.id
           FOR UPDATE OF c, t""",
        ([cid for cid, _ in checks],),
    )
    rows = cur.fetchall()
    at = now()
    applied: list[tuple[AppliedCheck, int | None]] = []
    token_rows: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    notes: list[tuple[int, str]] = []
    for (check_id, rid, token_id, checked_at, outcome_text, check_missing, label, level, state, c_inv, f_inv,
         c_tr, f_tr, missing, last_valid, last_checked, replaced_at, refusal, drop_since) in rows:
        note = _skip_note(state, replaced_at, last_checked, checked_at)
        if note is not None:
            notes.append((check_id, note))
            continue
        outcome = Outcome(outcome_text)
        health = TokenHealth(TokenState(state), c_inv, f_inv, c_tr, f_tr, missing, last_valid, refusal, drop_since,
                             replaced_at)
        transition = decide(health, CheckResult(outcome, checked_at, check_missing), policy,
                            breaker_open=breaker_open)
        after = transition.after
        token_rows.append((token_id, after.state.value, after.consecutive_invalid, after.first_invalid_at,
                           after.consecutive_transient, after.first_transient_at, after.missing_operation,
                           after.last_valid_at, after.refusal, after.drop_since, outcome.value, checked_at,
                           transition.next_check_at, at))
        if transition.changed_state:
            events.append((token_id, checked_at, health.state.value, after.state.value,
                           json.dumps({"check_id": check_id, "run_id": rid, "outcome": outcome.value,
                                       "missing_operation": after.missing_operation})))
        applied.append((AppliedCheck(check_id, token_id, label, level, outcome, transition, None), rid))
    if token_rows:
        execute_values(
            cur,
            """UPDATE tokens AS t SET state = v.state,
                   state_since = CASE WHEN t.state = v.state THEN t.state_since ELSE v.checked_at END,
                   consecutive_invalid = v.c_inv, first_invalid_at = v.f_inv, consecutive_transient = v.c_tr,
                   first_transient_at = v.f_tr, missing_operation = v.missing, last_valid_at = v.last_valid,
                   refusal = v.refusal, drop_since = v.drop_since, last_outcome = v.outcome,
                   claimed_by = NULL, claimed_until = NULL,
                   last_checked_at = v.checked_at, next_check_at = v.next_check, updated_at = v.at
               FROM (VALUES %s) AS v(id, state, c_inv, f_inv, c_tr, f_tr, missing, last_valid, refusal, drop_since,
                                     outcome, checked_at, next_check, at)
               WHERE t.id = v.id""",
            token_rows,
            template="(%s::bigint, %s::text, %s::int, %s::timestamptz, %s::int, %s::timestamptz, %s::text, "
                     "%s::timestamptz, %s::text, %s::timestamptz, %s::text, %s::timestamptz, %s::timestamptz, "
                     "%s::timestamptz)",
            page_size=len(token_rows),
        )
    if events:
        execute_values(
            cur,
            """INSERT INTO token_events (token_id, at, actor, action, from_state, to_state, detail)
               VALUES %s""",
            events,
            template="(%s, %s, 'sync', 'state_changed', %s, %s, %s::jsonb)",
            page_size=len(events),
        )
    if applied:
        cur.execute("UPDATE checks SET applied_at = %s, probe = NULL WHERE id = ANY(%s)",
                    (at, [a.check_id for a, _ in applied]))
    for check_id, note in notes:
        _mark_applied(cur, check_id, at, note)
    return applied, len(checks) - len(applied)


def _mark_applied(cur: Any, check_id: int, now: datetime, note: str | None = None) -> None:
    cur.execute(
        "UPDATE checks SET applied_at = %s, probe = NULL, detail = COALESCE(%s, detail) WHERE id = %s",
        (now, note, check_id),
    )


def apply_check(
    cur: Any, check_id: int, *, policy: StatePolicy, breaker_open: bool, now: datetime, run_id: int | None
) -> AppliedCheck | None:
    """Apply one pending check inside the caller's transaction; None when there was nothing to apply."""
    cur.execute(
        """SELECT token_id, checked_at, outcome, missing_operation, unchanged, probe
           FROM checks WHERE id = %s AND applied_at IS NULL FOR UPDATE""",
        (check_id,),
    )
    row = cur.fetchone()
    if row is None:
        return None  # another run applied it meanwhile
    token_id, checked_at, outcome_text, missing_operation, unchanged, probe = row
    cur.execute(
        """SELECT label, level, state, consecutive_invalid, first_invalid_at, consecutive_transient,
                  first_transient_at, missing_operation, last_valid_at, last_checked_at, probe_cache, domain,
                  replaced_at, refusal, drop_since
           FROM tokens WHERE id = %s FOR UPDATE""",
        (token_id,),
    )
    token = cur.fetchone()
    (label, level, state, c_inv, f_inv, c_tr, f_tr, missing, last_valid, last_checked, cache, domain,
     replaced_at, refusal, drop_since) = token
    note = _skip_note(state, replaced_at, last_checked, checked_at)
    if note is not None:
        _mark_applied(cur, check_id, now, note)
        return None

    outcome = Outcome(outcome_text)
    health = TokenHealth(TokenState(state), c_inv, f_inv, c_tr, f_tr, missing, last_valid, refusal, drop_since,
                         replaced_at)
    transition = decide(health, CheckResult(outcome, checked_at, missing_operation), policy, breaker_open=breaker_open)
    after = transition.after

    diff: ReachDiff | None = None
    new_cache = cache
    new_domain = domain
    carries_reach = outcome is Outcome.VALID or (outcome is Outcome.REACH_DROP and transition.write_reach)
    if carries_reach and not unchanged and probe is not None:
        diff = diff_reach(reach_from_probe(cache), reach_from_probe(probe), debtor_level=level == "debtor")
        write_reach(cur, token_id, diff, reach_from_probe(probe), at=checked_at, run_id=run_id)
        new_cache = probe
        new_domain = probe.get("domain") or domain

    cur.execute(
        """UPDATE tokens SET state = %s,
               state_since = CASE WHEN state = %s THEN state_since ELSE %s END,
               consecutive_invalid = %s, first_invalid_at = %s, consecutive_transient = %s,
               first_transient_at = %s, missing_operation = %s, last_valid_at = %s,
               refusal = %s, drop_since = %s, last_outcome = %s, claimed_by = NULL, claimed_until = NULL,
               last_checked_at = %s, next_check_at = %s, probe_cache = %s::jsonb, domain = %s, updated_at = %s
           WHERE id = %s""",
        (
            after.state.value, after.state.value, checked_at,
            after.consecutive_invalid, after.first_invalid_at, after.consecutive_transient,
            after.first_transient_at, after.missing_operation, after.last_valid_at,
            after.refusal, after.drop_since, outcome.value,
            checked_at, transition.next_check_at,
            json.dumps(new_cache) if new_cache is not None else None, new_domain, now, token_id,
        ),
    )
    if transition.changed_state:
        cur.execute(
            """INSERT INTO token_events (token_id, at, actor, action, from_state, to_state, detail)
               VALUES (%s, %s, 'sync', 'state_changed', %s, %s, %s::jsonb)""",
            (token_id, checked_at, health.state.value, after.state.value,
             json.dumps({"check_id": check_id, "run_id": run_id, "outcome": outcome.value,
                         "missing_operation": after.missing_operation})),
        )
    _mark_applied(cur, check_id, now)
    return AppliedCheck(check_id, token_id, label, level, outcome, transition, diff)


def write_reach(cur: Any, token_id: int, diff: ReachDiff, new: Reach, *, at: datetime, run_id: int | None) -> None:
    """Write only what changed: upserts for gained/updated rows, lost_at for lost ones, one event per change."""
    from psycopg2.extras import execute_values

    upsert_debtors = [
        (token_id, d.id, d.number, d.name, json.dumps(sorted(d.tags)), at, at)
        for d in (*diff.debtors_gained, *diff.debtors_updated)
    ]
    if upsert_debtors:
        execute_values(
            cur,
            """INSERT INTO reach_debtors (token_id, debtor_id, number, name, tags, first_seen, last_seen)
               VALUES %s
               ON CONFLICT (token_id, debtor_id) DO UPDATE SET number = EXCLUDED.number, name = EXCLUDED.name,
                   tags = EXCLUDED.tags, last_seen = EXCLUDED.last_seen, lost_at = NULL""",
            upsert_debtors,
            template="(%s, %s, %s, %s, %s::jsonb, %s, %s)",
        )
    if diff.debtors_lost:
        cur.execute(
            "UPDATE reach_debtors SET lost_at = %s WHERE token_id = %s AND debtor_id = ANY(%s)",
            (at, token_id, [d.id for d in diff.debtors_lost]),
        )
    upsert_companies = [
        (token_id, c.id, c.debtor_id, c.number, c.name, at, at)
        for c in (*diff.companies_gained, *diff.companies_updated)
    ]
    if upsert_companies:
        execute_values(
            cur,
            """INSERT INTO reach_companies (token_id, company_id, debtor_id, number, name, first_seen, last_seen)
               VALUES %s
               ON CONFLICT (token_id, company_id) DO UPDATE SET debtor_id = EXCLUDED.debtor_id,
                   number = EXCLUDED.number, name = EXCLUDED.name, last_seen = EXCLUDED.last_seen, lost_at = NULL""",
            upsert_companies,
        )
    if diff.companies_lost:
        cur.execute(
            "UPDATE reach_companies SET lost_at = %s WHERE token_id = %s AND company_id = ANY(%s)",
            (at, token_id, [c.id for c in diff.companies_lost]),
        )
    if diff.events:
        execute_values(
            cur,
            """INSERT INTO reach_events (token_id, run_id, at, change, entity, entity_id, debtor_id, detail)
               VALUES %s""",
            [
                (token_id, run_id, at, e.change.value, e.entity.value, e.entity_id, e.debtor_id,
                 json.dumps(dict(e.detail)))
                for e in diff.events
            ],
            template="(%s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
        )
