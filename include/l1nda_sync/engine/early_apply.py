"""Apply, in the transaction that stores them, the checks that move only their token's clock.

A valid answer equal to the stored reach (`unchanged`), from a token that is active with no streak, no refusal, no
suspected drop and no other pending check, changes nothing but when the token was last valid and when it is checked
next: no state, no reach, no link, no event. The batch that made such a check applies it at once
(`checks.applied_in_batch`), through the apply step's own locks, write path and hooks (`lock_pending`,
`apply_locked`), so an hourly sweep of unchanged tokens leaves the run's apply step nothing but the reconcile. Any
other check, and any doubt, stays pending for that step, which applies it exactly as before.

Why the order the apply step keeps does not matter for these:
- the circuit breaker never holds back a valid answer (`decide`), and its evidence is every check made in its window,
  applied or pending; the apply step's window still reaches back to the run's first check (`for_run`);
- a token with another pending check (a crashed run's) is left to the apply step, which applies them oldest first;
- a check its token has moved past (replaced, superseded, out of service) is left to the apply step, which marks it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from l1nda_sync.engine.applying import ApplyHooks, PendingCheck, apply_locked, lock_pending, tokens_applied
from l1nda_sync.engine.token_state import (
    CheckResult,
    Outcome,
    StatePolicy,
    TokenState,
    Transition,
    decide,
)

if TYPE_CHECKING:
    from psycopg2.extensions import cursor as Cursor

    from l1nda_sync.engine.checking import CheckRecord

log = logging.getLogger(__name__)


def moves_only_the_clock(result: CheckResult, transition: Transition) -> bool:
    """True when a valid answer leaves an active token as it was but for `last_valid_at` (and its next check).
    Only a valid answer: a failure the breaker holds back moves nothing either, but only the breaker can say so."""
    before, after = transition.before, transition.after
    return (result.outcome is Outcome.VALID and before.state is TokenState.ACTIVE and not transition.changed_state
            and after == replace(before, last_valid_at=after.last_valid_at))


def candidates(stored: Mapping[int, int], records: Sequence[CheckRecord]) -> list[int]:
    """The stored checks (check id by token id) that may move only their token's clock: valid and unchanged."""
    return [stored[r.token_id] for r in records
            if r.outcome is Outcome.VALID and r.unchanged and r.token_id in stored]


def _quiet(pending: PendingCheck, policy: StatePolicy, others: frozenset[int]) -> bool:
    """`moves_only_the_clock`, carries no reach (`lock_pending` reads a valid check's probe only when it differs
    from the stored reach), and is the token's one pending check, which it has not moved past."""
    if pending.token_id in others or pending.skip_note is not None or pending.probe is not None:
        return False
    return moves_only_the_clock(pending.result, decide(pending.health, pending.result, policy))


def apply_in_batch(cur: Cursor, check_ids: Sequence[int], *, policy: StatePolicy, hooks: ApplyHooks | None,
                   now: Callable[[], datetime]) -> int:
    """Apply those of `check_ids` that move only their token's clock, inside the caller's transaction (the one that
    stored them); the others stay pending. Returns how many were applied.

    Only a shortcut: should it fail (a hook's fault, a lock time-out), it is undone to a savepoint and every check
    stays pending, stored all the same, for the apply step, which applies each token's apart when a chunk fails."""
    if not check_ids:
        return 0
    cur.execute("SAVEPOINT apply_in_batch")
    try:
        applied = _apply_quiet(cur, check_ids, policy=policy, hooks=hooks, now=now)
    except Exception as exc:
        cur.execute("ROLLBACK TO SAVEPOINT apply_in_batch")
        log.warning("the batch could not apply its quiet checks (%s); the apply step applies them",
                    type(exc).__name__)
        return 0
    cur.execute("RELEASE SAVEPOINT apply_in_batch")
    return applied


def _apply_quiet(cur: Cursor, check_ids: Sequence[int], *, policy: StatePolicy, hooks: ApplyHooks | None,
                 now: Callable[[], datetime]) -> int:
    pending = lock_pending(cur, check_ids)
    cur.execute(  # tokens with another pending check, this batch's or a crashed run's
        """SELECT token_id FROM checks WHERE token_id = ANY(%s) AND applied_at IS NULL
           GROUP BY token_id HAVING count(*) > 1""",
        ([p.token_id for p in pending],),
    )
    others = frozenset(row[0] for row in cur.fetchall())
    quiet = [p for p in pending if _quiet(p, policy, others)]
    if not quiet:
        return 0
    # A valid answer is never held back by the breaker (`decide`): no verdict is needed to apply it.
    writes = apply_locked(cur, quiet, policy=policy, breaker_open=frozenset(), at=now(), in_batch=True)
    if hooks is not None:
        tokens_applied(hooks, cur, [(w.applied, w.run_id) for w in writes], now=now)
    return len(writes)


def applied_in_batch(cur: Cursor, run_id: int | None, applied: Sequence[int] = ()) -> dict[str, int]:
    """How many checks their batches applied, by outcome, for the report of `run_id`'s apply step: its own, and
    those of the runs whose checks it applied (`applied`: check ids) that stored no report of their own (a run
    that died before its apply step), as that step would have counted them all had they waited for it."""
    cur.execute(
        """SELECT c.outcome, count(*) FROM checks c
           WHERE c.applied_in_batch AND (c.run_id = %(run)s OR c.run_id IN (
               SELECT r.id FROM runs r
               WHERE r.id IN (SELECT run_id FROM checks WHERE id = ANY(%(applied)s)) AND r.id <> %(run)s
                 AND NOT (coalesce(r.summary, '{}'::jsonb) ? 'checked')))
           GROUP BY c.outcome""",
        {"run": run_id if run_id is not None else -1, "applied": list(applied)},
    )
    return {outcome: int(count) for outcome, count in cur.fetchall()}
