"""Apply pending checks: one token's whole change in one transaction, safe to run twice.

For each pending check (oldest first) the token row is locked (FOR UPDATE), so two runs never apply the same
token at once; a check that another run already applied, or that is older than what the token already knows,
is marked and skipped, so a rerun after a crash converges to the same state. The circuit breaker is judged
per run over all of that run's pending checks before anything moves.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from l1nda_sync.engine.breaker import BreakerVerdict, judge
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
    verdicts: dict[int | None, BreakerVerdict] = field(default_factory=dict)

    @property
    def breaker_open(self) -> bool:
        return any(v.tripped for v in self.verdicts.values())

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


def judge_pending(
    conn: Any, *, run_id: int | None, share: float, min_tokens: int, dry_run: bool
) -> dict[int | None, BreakerVerdict]:
    """The breaker verdict for every run that has pending checks (the given run only, when one is given)."""
    with unit_of_work(conn, dry_run=dry_run) as cur:
        cur.execute(
            "SELECT run_id, outcome FROM checks WHERE applied_at IS NULL"
            + (" AND run_id = %s" if run_id is not None else ""),
            (run_id,) if run_id is not None else (),
        )
        by_run: dict[int | None, list[Outcome]] = {}
        for rid, outcome in cur.fetchall():
            by_run.setdefault(rid, []).append(Outcome(outcome))
    return {rid: judge(outs, share=share, min_tokens=min_tokens) for rid, outs in by_run.items()}


def apply_pending(
    conn: Any,
    *,
    policy: StatePolicy,
    now: Callable[[], datetime],
    run_id: int | None = None,
    breaker_share: float = 0.5,
    breaker_min_tokens: int = 5,
    hooks: ApplyHooks | None = None,
    dry_run: bool = False,
) -> ApplySummary:
    """Apply every pending check (of `run_id`, or of any run: checks a crashed run left behind)."""
    hooks = hooks or NoHooks()
    summary = ApplySummary(verdicts=judge_pending(
        conn, run_id=run_id, share=breaker_share, min_tokens=breaker_min_tokens, dry_run=dry_run))
    for rid, verdict in summary.verdicts.items():
        if verdict.tripped:
            with unit_of_work(conn, dry_run=dry_run) as cur:
                hooks.breaker_judged(cur, verdict, run_id=rid, now=now())
    with unit_of_work(conn, dry_run=dry_run) as cur:
        cur.execute(
            "SELECT id, run_id FROM checks WHERE applied_at IS NULL"
            + (" AND run_id = %s" if run_id is not None else "")
            + " ORDER BY checked_at, id",
            (run_id,) if run_id is not None else (),
        )
        pending = cur.fetchall()
    for check_id, rid in pending:
        verdict = summary.verdicts.get(rid)
        try:
            with unit_of_work(conn, dry_run=dry_run) as cur:
                applied = apply_check(cur, check_id, policy=policy, breaker_open=bool(verdict and verdict.tripped),
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
    return summary


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
                  replaced_at
           FROM tokens WHERE id = %s FOR UPDATE""",
        (token_id,),
    )
    token = cur.fetchone()
    (label, level, state, c_inv, f_inv, c_tr, f_tr, missing, last_valid, last_checked, cache, domain,
     replaced_at) = token
    if state in FINAL_STATES:
        _mark_applied(cur, check_id, now, f"not applied: token is {state}")
        return None
    if replaced_at is not None and checked_at < replaced_at:
        _mark_applied(cur, check_id, now, "not applied: the token was replaced after this check began")
        return None
    if last_checked is not None and last_checked > checked_at:
        _mark_applied(cur, check_id, now, "not applied: superseded by a newer check")
        return None

    outcome = Outcome(outcome_text)
    health = TokenHealth(TokenState(state), c_inv, f_inv, c_tr, f_tr, missing, last_valid)
    transition = decide(health, CheckResult(outcome, checked_at, missing_operation), policy, breaker_open=breaker_open)
    after = transition.after

    diff: ReachDiff | None = None
    new_cache = cache
    new_domain = domain
    if outcome is Outcome.VALID and not unchanged and probe is not None:
        diff = diff_reach(reach_from_probe(cache), reach_from_probe(probe), debtor_level=level == "debtor")
        write_reach(cur, token_id, diff, reach_from_probe(probe), at=checked_at, run_id=run_id)
        new_cache = probe
        new_domain = probe.get("domain") or domain

    cur.execute(
        """UPDATE tokens SET state = %s,
               state_since = CASE WHEN state = %s THEN state_since ELSE %s END,
               consecutive_invalid = %s, first_invalid_at = %s, consecutive_transient = %s,
               first_transient_at = %s, missing_operation = %s, last_valid_at = %s,
               last_checked_at = %s, next_check_at = %s, probe_cache = %s::jsonb, domain = %s, updated_at = %s
           WHERE id = %s""",
        (
            after.state.value, after.state.value, checked_at,
            after.consecutive_invalid, after.first_invalid_at, after.consecutive_transient,
            after.first_transient_at, after.missing_operation, after.last_valid_at,
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
