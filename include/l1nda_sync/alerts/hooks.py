"""`AlertHooks`: the engine calls these inside the transaction that changes a token, a run's breaker verdict or
the links, so every problem step and the mail it announces commit together with the change itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from l1nda_sync.alerts import store
from l1nda_sync.alerts.problems import WITHDRAWN_STATES, Cause, Kind, Stage, token_causes
from l1nda_sync.alerts.tracker import track
from l1nda_sync.engine.breaker import BreakerVerdict
from l1nda_sync.engine.token_state import TokenState

if TYPE_CHECKING:
    from psycopg2.extensions import cursor as Cursor

    from l1nda_sync.engine.applying import AppliedCheck
    from l1nda_sync.engine.link_rules import LinkChange
    from l1nda_sync.settings import Settings


def access_cause(cur: Cursor, token_id: int) -> Cause:
    """access_lost is there while links stay suspended with this token because it stopped reaching them."""
    cur.execute("SELECT state FROM tokens WHERE id = %s", (token_id,))
    row = cur.fetchone()
    if row is None or TokenState(row[0]) in WITHDRAWN_STATES:
        return Cause(False, withdrawn=True)
    links = store.access_lost_links(cur, token_id)
    if not links["count"]:
        return Cause.absent()
    entries = [{"link_id": e["id"], "company_id": e["company_id"], "company_name": e["company_name"],
                "reason": e["reason"]} for e in links["entries"]]
    return Cause(True, detail={"links": links["count"], "entries": entries})


def lasting_stage(cur: Cursor, kind: Kind, evidence_at: datetime | None, *, settings: Settings) -> Stage:
    """A provider-wide problem opens silently ('suspected') and is announced only when a fresh failing answer,
    checked at least the confirmation spacing after it opened, shows it lasts: one odd minute of Nmbrs mails
    nobody, however often the same old answer is judged again inside the window."""
    open_row = store.open_problems(cur, None, [kind]).get(kind)
    if open_row is None:
        return Stage.SUSPECTED
    if open_row.stage is Stage.CONFIRMED:
        return Stage.CONFIRMED
    spacing = timedelta(seconds=float(settings.revoke_min_spacing))
    if evidence_at is not None and evidence_at - open_row.opened_at >= spacing:
        return Stage.CONFIRMED
    return Stage.SUSPECTED


def incident_cause(cur: Cursor, verdict: BreakerVerdict, run_id: int | None, *, settings: Settings) -> Cause:
    stage = lasting_stage(cur, Kind.PROVIDER_INCIDENT, verdict.last_failure_at, settings=settings)
    return Cause(verdict.tripped, stage, detail={
        "run_id": run_id, "checked": verdict.checked, "failing": verdict.failing,
        "share_pct": round(100 * verdict.share), "failure": verdict.failure,
        "kind": verdict.kind.value if verdict.kind is not None else "all",  # the credential kind that tripped
    })


def grant_lost(cur: Cursor, token_id: int, state: TokenState) -> bool:
    """A confirmed refused REST connection whose refresh token L1NDA spent itself: a refresh of its current
    generation was sent and its answer (or its save) was lost (`nmbrs.rest.grants.GrantLost`)."""
    if state not in (TokenState.REVOKED, TokenState.REJECTED):
        return False
    cur.execute("SELECT refresh_generation IS NOT DISTINCT FROM generation FROM rest_connections WHERE token_id = %s",
                (token_id,))
    row = cur.fetchone()
    return bool(row and row[0])


def unknown_present(verdict: BreakerVerdict, settings: Settings) -> bool:
    """More than `unknown_share` of the tokens checked in the window ended in an answer L1NDA cannot read."""
    return verdict.unknown > 0 and verdict.unknown > float(settings.unknown_share) * verdict.checked


def unknown_cause(cur: Cursor, verdict: BreakerVerdict, *, settings: Settings) -> Cause:
    present = unknown_present(verdict, settings)
    stage = (lasting_stage(cur, Kind.UNKNOWN_ANSWERS, verdict.last_unknown_at, settings=settings) if present
             else Stage.CONFIRMED)
    return Cause(present, stage, detail={
        "checked": verdict.checked, "unknown": verdict.unknown,
        "share_pct": round(100 * verdict.unknown / verdict.checked) if verdict.checked else 0,
    })


def applied_causes(cur: Cursor, applied: AppliedCheck) -> dict[Kind, Cause] | None:
    """The causes of the token kinds after an applied check (None: its state says nothing yet)."""
    after = applied.transition.after
    return token_causes(after.state, after.missing_operation, applied.kind,
                        lost_by_l1nda=grant_lost(cur, applied.token_id, after.state))


class AlertHooks:
    """Implements the engine's `ApplyHooks` and `LinkHooks`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def token_applied(self, cur: Cursor, applied: AppliedCheck, *, run_id: int | None, now: datetime) -> None:
        causes = applied_causes(cur, applied)
        if causes is not None:
            track(cur, applied.token_id, causes, now=now, settings=self.settings)

    def tokens_applied(self, cur: Cursor, applied: Sequence[tuple[AppliedCheck, int | None]], *,
                       now: Callable[[], datetime]) -> None:
        """`token_applied` for each of a bulk chunk's checks, whose tokens the engine holds locked, with one look-up
        of their open problems: where no cause is present and none of the kinds is open, `track` would do nothing
        (`plan_problem` of no problem and an absent cause is NOTHING), so an unchanged token costs no statement."""
        found = [(check.token_id, applied_causes(cur, check)) for check, _ in applied]
        quiet = [(token_id, causes) for token_id, causes in found
                 if causes is not None and not any(c.present for c in causes.values())]
        open_keys = store.open_problem_keys(cur, [t for t, _ in quiet], {k for _, causes in quiet for k in causes}) \
            if quiet else set()
        for token_id, causes in found:
            if causes is None:
                continue
            if not any(c.present for c in causes.values()) and not any((token_id, k) in open_keys for k in causes):
                continue  # nothing open, nothing present: `track` would do nothing
            track(cur, token_id, causes, now=now(), settings=self.settings)

    def breaker_judged(self, cur: Cursor, verdict: BreakerVerdict, *, run_id: int | None, now: datetime) -> None:
        # Only a tripped verdict is evidence here; the sweep clears the incident once the window passes.
        if verdict.tripped:
            track(cur, None, {Kind.PROVIDER_INCIDENT: incident_cause(cur, verdict, run_id, settings=self.settings)},
                  now=now, settings=self.settings)
        # Unreadable answers: one problem for operations, never one per token; while the breaker is tripped the
        # incident (which names the failure) says it already, so that says nothing new either way.
        if verdict.checked and not verdict.tripped:
            track(cur, None, {Kind.UNKNOWN_ANSWERS: unknown_cause(cur, verdict, settings=self.settings)},
                  now=now, settings=self.settings)

    def links_changed(self, cur: Cursor, changes: list[LinkChange], *, run_id: int | None, now: datetime) -> None:
        """access_lost of every token a link moved from or to. Two look-ups for them all first: a token with no
        link suspended for reach has no cause present, and one with no open access_lost too has nothing to do
        (`plan_problem` of no problem and an absent cause is NOTHING), so a first sweep's thousands of activated
        links cost no statement per token."""
        tokens = sorted({t for c in changes for t in (c.from_token, c.to_token) if t is not None})
        if not tokens:
            return
        open_keys = store.open_problem_keys(cur, tokens, [Kind.ACCESS_LOST])
        concerned = store.tokens_losing_access(cur, tokens) | {token_id for token_id, _ in open_keys}
        for token_id in tokens:  # in id order, so two transactions lock problems in the same order
            if token_id in concerned:
                track(cur, token_id, {Kind.ACCESS_LOST: access_cause(cur, token_id)}, now=now,
                      settings=self.settings)
