"""Carry out the cutover's plan (`cutover.plan_cutover`) in the registry: one transaction, safe to run again.

In one transaction, with the wanted links locked as a reconcile locks them: the SOAP tokens are retired (state
`retired`, a token event each), the link changes are written (rows, link events, the engine's link hooks: webhook
events, problem tracking), and the notices are opened as problems whose mails go to the outbox in the same
transaction (`soap_ended` per retired token with suspended links, to its contact; one `soap_cutover` for
operations). A run that dies before the commit wrote nothing; one that ran retires nothing more and so tells
nobody twice. The sync engine calls it at the start of every plan step from `soap_end` on.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from l1nda_sync.migration import world
from l1nda_sync.migration.cutover import CutoverPlan, plan_cutover
from l1nda_sync.registry import locks

if TYPE_CHECKING:
    from psycopg2.extensions import cursor as Cursor

    from l1nda_sync.engine.reconciling import LinkHooks
    from l1nda_sync.settings import Settings

log = logging.getLogger(__name__)
ACTOR = "cutover"


def preview(cur: Cursor, *, at: datetime, soap_end: datetime) -> CutoverPlan:
    """What the cutover would do at `at` to the registry as it is now; reads only."""
    current, _ = world.load(cur, lock=False)
    return plan_cutover(current, at, soap_end)


def run_cutover(cur: Cursor, *, now: datetime, settings: Settings, hooks: LinkHooks | None,
                run_id: int | None = None) -> CutoverPlan:
    """Do what `plan_cutover` says for `now`, inside the caller's transaction; returns the plan carried out."""
    from l1nda_sync.alerts.problems import Cause, Kind, Stage
    from l1nda_sync.alerts.tracker import track
    from l1nda_sync.engine.reconciling import write_link_changes

    if not settings.soap_over(now):
        return plan_cutover(world.load(cur)[0], now, settings.soap_end)
    locks.lock_soap_cutover(cur)  # two runs at once: one waits
    current, debtor_of = world.load(cur, lock=True)
    plan = plan_cutover(current, now, settings.soap_end)
    if not (plan.retire or plan.changes):
        return plan
    if plan.retire:
        cur.execute("""UPDATE tokens SET state = 'retired', state_since = %s, updated_at = %s, claimed_by = NULL,
                              claimed_until = NULL WHERE id = ANY(%s) RETURNING id, state""",
                    (now, now, list(plan.retire)))
        cur.execute(
            """INSERT INTO token_events (token_id, at, actor, action, from_state, to_state, detail)
               SELECT t.id, %s, %s, 'retired', e.state, 'retired', %s::jsonb
               FROM tokens t JOIN unnest(%s::bigint[], %s::text[]) AS e(id, state) ON e.id = t.id""",
            (now, ACTOR, json.dumps({"soap_end": settings.soap_end.isoformat()}), list(plan.retire),
             [current.tokens[i].state.value for i in plan.retire]))
    write_link_changes(cur, list(plan.changes), list(current.links), debtor_of, at=now, run_id=run_id, hooks=hooks,
                       actor=ACTOR)
    notices = []
    for notice in plan.notices:
        detail = {**notice.detail(), "soap_end": settings.soap_end}
        track(cur, notice.token_id, {Kind.SOAP_ENDED: Cause(True, Stage.CONFIRMED, detail=detail)}, now=now,
              settings=settings)
        notices.append({"token_id": notice.token_id, "label": notice.label, **notice.detail(),
                        "mailed": bool(notice.contacts)})
    if plan.retire:
        track(cur, None, {Kind.SOAP_CUTOVER: Cause(True, Stage.CONFIRMED, detail={
            "at": now, "soap_end": settings.soap_end, "retired": len(plan.retire), "moved": len(plan.to_rest),
            "suspended": len(plan.suspended), "notices": notices})}, now=now, settings=settings)
    log.info("SOAP cutover: %d token(s) retired, %d link(s) to REST, %d suspended (soap_ended), %d notice(s)",
             len(plan.retire), len(plan.to_rest), len(plan.suspended), len(plan.notices))
    return plan
