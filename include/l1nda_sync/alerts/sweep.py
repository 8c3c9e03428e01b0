"""The sweep (the run pipeline's delivery step, before draining the outbox): what time alone decides.

Resolves problems whose cause stayed clear for the quiet period, sends reminders that are due, clears a
provider incident once the breaker's window no longer trips, closes the problems of tokens an
operator took out of service (without mail), and re-reads every open problem's cause from the registry, so
changes made outside the engine (a link cancelled, a token disabled) are seen too. One transaction per problem.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from l1nda_sync.alerts import link_pending, store
from l1nda_sync.alerts.delivery_problems import track_delivery
from l1nda_sync.alerts.hooks import access_cause, grant_lost, unknown_present
from l1nda_sync.alerts.problems import TOKEN_KINDS, Cause, Kind, Policy, Verb, plan_problem, token_causes
from l1nda_sync.alerts.store import ProblemRow
from l1nda_sync.alerts.tracker import carry_out, follow_up
from l1nda_sync.engine.applying import judge_recent
from l1nda_sync.engine.breaker import BreakerVerdict
from l1nda_sync.engine.token_state import CredentialKind, TokenState
from l1nda_sync.migration import campaign_running

# Kinds with a pass of their own (called at the end of the sweep), not the per-problem rules below.
OWN_PASS_KINDS = (Kind.LINK_PENDING.value, *(k.value for k in campaign_running.KINDS))

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor

    from l1nda_sync.settings import Settings


def window_verdict(cur: Cursor, now: datetime, settings: Settings) -> BreakerVerdict | None:
    """The circuit breaker's verdict over the checks of the last window; None when the window holds none (no
    evidence either way: the schedule may be paused)."""
    verdict = judge_recent(cur, now=now, window=timedelta(seconds=float(settings.breaker_window)),
                           share=float(settings.breaker_share))
    return verdict if verdict.checked else None


def current_cause(cur: Cursor, row: ProblemRow, latest: BreakerVerdict | None, settings: Settings) -> Cause | None:
    """The cause as the registry shows it now; None when it tells nothing new."""
    if row.kind is Kind.PROVIDER_INCIDENT:
        if latest is None or latest.tripped:
            return None  # no evidence, or still tripped (the apply step's hook keeps it up to date)
        return Cause.absent()
    if row.kind is Kind.UNKNOWN_ANSWERS:
        if latest is None or latest.tripped or unknown_present(latest, settings):
            return None
        return Cause.absent()
    if row.kind in (Kind.SOAP_ENDED, Kind.SOAP_CUTOVER):
        # Told once; closes without a word once no link it is about stays suspended for soap_ended.
        cur.execute("SELECT count(*) FROM links WHERE state = 'suspended' AND reason = 'soap_ended' AND wanted "
                    "AND (%s::bigint IS NULL OR token_id = %s)", (row.token_id, row.token_id))
        left = cur.fetchone()
        return None if left and left[0] else Cause(False, withdrawn=True)
    if row.token_id is None:
        return None  # outbox_stuck, webhook_failing: judged by delivery_problems.track_delivery at the end of sweep()
    if row.kind is Kind.ACCESS_LOST:
        return access_cause(cur, row.token_id)
    cur.execute("SELECT state, missing_operation, kind FROM tokens WHERE id = %s", (row.token_id,))
    found = cur.fetchone()
    causes = (token_causes(TokenState(found[0]), found[1], CredentialKind(found[2]),
                           lost_by_l1nda=grant_lost(cur, row.token_id, TokenState(found[0]))) if found
              else token_causes(TokenState.REMOVED))
    if causes is None or row.kind not in TOKEN_KINDS:
        return None
    return causes[row.kind]


def sweep(conn: Connection, now: datetime, settings: Settings) -> dict[str, int]:
    """One pass over every open problem; returns counts per step taken (and 'open' left)."""
    policy = Policy.from_settings(settings)
    counts: Counter[str] = Counter()
    with conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM problems WHERE state = 'open' AND kind <> ALL(%s) ORDER BY id",
                    (list(OWN_PASS_KINDS),))
        ids = [r[0] for r in cur.fetchall()]
        latest = window_verdict(cur, now, settings)
    for problem_id in ids:
        with conn, conn.cursor() as cur:
            row = store.get_problem(cur, problem_id, lock=True)
            if row is None or row.state != "open":
                continue  # resolved meanwhile by a run
            cause = current_cause(cur, row, latest, settings)
            if cause is not None:
                action = plan_problem(row.decision(), cause, now, policy)
                if not (action.verb is Verb.SEEN and row.cause_cleared_at is None):  # SEEN: nothing new
                    row = carry_out(cur, row, action, token_id=row.token_id, kind=row.kind, cause=cause, now=now,
                                    settings=settings)
                    counts[action.verb.value] += action.verb is not Verb.NOTHING
            if row is not None and row.state == "open":
                action = follow_up(cur, row, now=now, settings=settings)
                counts[action.verb.value] += action.verb is not Verb.NOTHING
                counts["open"] += action.verb is not Verb.RESOLVE
    counts.pop(Verb.NOTHING.value, None)
    counts.update(track_delivery(conn, now, settings))  # Counter.update adds
    counts.update(link_pending.evaluate(conn, now, settings))
    counts.update(campaign_running.evaluate(conn, now, settings))
    return dict(counts)
