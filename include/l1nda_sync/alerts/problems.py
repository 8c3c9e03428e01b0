"""What to do with one problem given the latest evidence: pure decisions over plain records.

A problem is one (token, kind) that needs a person; it is what gets mailed, never a single check. It opens
when its cause appears, stays open (one row, one announcement) however many runs see the cause again, and
resolves only after its cause has stayed clear for the quiet period, so a flapping cause cannot send a
storm of opened/resolved mails. `revoked` first opens silently as "suspected" (one unconfirmed 1001) and is
announced only when the token is confirmed revoked (a REST connection's `consent_revoked` likewise: it is that
kind, not `revoked` or `rejected`, whose mails say how to consent again); `provider_incident` likewise opens
silently and is announced only once the circuit breaker stayed tripped for the confirmation spacing; a suspicion
that clears was never announced and closes without a word.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from l1nda_sync.engine.token_state import CredentialKind, TokenState

if TYPE_CHECKING:
    from l1nda_sync.settings import Settings


class Kind(StrEnum):
    """What a problem is about: one kind per cause a person must act on."""

    REVOKED = "revoked"
    REJECTED = "rejected"
    RIGHTS_MISSING = "rights_missing"
    NO_SUBSCRIPTION = "no_subscription"
    UNREACHABLE = "unreachable"
    ACCESS_LOST = "access_lost"
    PROVIDER_INCIDENT = "provider_incident"
    UNKNOWN_ANSWERS = "unknown_answers"  # a share of checks ends in answers L1NDA cannot read: ops only
    OUTBOX_STUCK = "outbox_stuck"  # mails uncertain or failed: a person decides (alerts.delivery_problems)
    WEBHOOK_FAILING = "webhook_failing"  # webhook events parked, or failing for a while (alerts.delivery_problems)
    LINK_PENDING = "link_pending"  # a requested link no token reaches for longer than link_pending_after
    CONSENT_REVOKED = "consent_revoked"  # a REST connection's consent was withdrawn in Nmbrs, or it expired
    SOAP_ENDED = "soap_ended"  # the cutover retired this SOAP token and suspended its links: its contact, once
    SOAP_CUTOVER = "soap_cutover"  # the cutover ran: one summary for operations
    # The migration campaign's (migration.campaign_running decides and mails them, not the sweep's rules)
    MIGRATION_INVITE = "migration_invite"  # one (customer, contact) invited to consent through REST
    MIGRATION_ACCOUNTANT = "migration_accountant"  # an accountant token's contact: its debtors must each consent
    MIGRATION_WEEKLY = "migration_weekly"  # operations: the countdown and who did not react


class Stage(StrEnum):
    """Whether a problem is announced yet."""

    SUSPECTED = "suspected"  # not announced; `revoked`, `consent_revoked` and the provider-wide kinds have it
    CONFIRMED = "confirmed"


class Event(StrEnum):
    """What a mail about a problem says happened."""

    OPENED = "opened"
    ESCALATED = "escalated"
    REMINDER = "reminder"
    RESOLVED = "resolved"


class Verb(StrEnum):
    """The step taken with one problem row."""

    NOTHING = "nothing"
    OPEN = "open"
    SEEN = "seen"  # the cause is still (or again) there: last_seen_at, detail, cause_cleared_at = NULL
    ESCALATE = "escalate"
    CLEAR = "clear"  # the cause is gone: the quiet period starts
    RESOLVE = "resolve"
    REMIND = "remind"


# Kinds the token's own state decides; access_lost follows links, provider_incident the circuit breaker.
TOKEN_KINDS = (Kind.REVOKED, Kind.REJECTED, Kind.RIGHTS_MISSING, Kind.NO_SUBSCRIPTION, Kind.UNREACHABLE,
               Kind.CONSENT_REVOKED)
# The customer must act on these; for the others only operations is mailed.
CUSTOMER_KINDS = frozenset({Kind.REVOKED, Kind.REJECTED, Kind.RIGHTS_MISSING, Kind.NO_SUBSCRIPTION,
                            Kind.CONSENT_REVOKED})
# Told once, never reminded (the cutover's notices): `soap_ended` to the token's contact only (operations get the
# one `soap_cutover` summary instead of a mail per token), `soap_cutover` to operations.
ONCE_KINDS = frozenset({Kind.SOAP_ENDED, Kind.SOAP_CUTOVER})
# Link suspension reasons that mean "the token is fine but no longer reaches the company".
REACH_REASONS = frozenset({"tag_or_filter", "company_ended", "filter_or_company_ended", "not_reached"})
# Token states that end the token's problems without any mail: the operator took the token out of service.
WITHDRAWN_STATES = frozenset({TokenState.DISABLED, TokenState.REMOVED, TokenState.RETIRED})


@dataclass(frozen=True, slots=True)
class Policy:
    """When a problem resolves (after a quiet period) and how often it is recalled."""

    quiet_period: timedelta = timedelta(hours=1)
    reminder_interval: timedelta | None = timedelta(hours=24)  # None: no reminders

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        reminder = float(settings.reminder_interval)
        return cls(
            quiet_period=timedelta(seconds=float(settings.problem_quiet_period)),
            reminder_interval=timedelta(seconds=reminder) if reminder > 0 else None,
        )


@dataclass(frozen=True, slots=True)
class Cause:
    """What the latest evidence says about one (token, kind)."""

    present: bool
    stage: Stage = Stage.CONFIRMED
    detail: Mapping[str, Any] = field(default_factory=dict)
    withdrawn: bool = False  # the token left service: close without mail
    topic: str | None = None  # what exactly is wrong (rights_missing: the operation); a new topic is news

    @classmethod
    def absent(cls) -> Cause:
        return cls(False)


@dataclass(frozen=True, slots=True)
class Problem:
    """The part of a problems row that decisions read."""

    kind: Kind
    opened_at: datetime
    stage: Stage = Stage.CONFIRMED
    cause_cleared_at: datetime | None = None
    last_notified_at: datetime | None = None
    muted: bool = False
    unmuted_at: datetime | None = None
    topic: str | None = None

    @property
    def announced(self) -> bool:
        """A mail about it was written, so its end deserves one too."""
        return self.last_notified_at is not None


@dataclass(frozen=True, slots=True)
class Action:
    """The step decided for one problem, and the mail it writes, if any."""

    verb: Verb
    mail: Event | None = None  # the mail this step writes to the outbox, if any
    stage: Stage | None = None


NOTHING = Action(Verb.NOTHING)


def _resolve(problem: Problem) -> Action:
    mail = Event.RESOLVED if problem.announced and not problem.muted else None
    return Action(Verb.RESOLVE, mail)


def plan_problem(existing: Problem | None, cause: Cause, now: datetime, policy: Policy) -> Action:
    """The next step for the open problem `existing` (None: none is open) given new evidence `cause`."""
    if existing is None:
        if not cause.present:
            return NOTHING
        announce = cause.stage is Stage.CONFIRMED
        return Action(Verb.OPEN, Event.OPENED if announce else None, cause.stage)

    if cause.present:
        if existing.stage is Stage.SUSPECTED and cause.stage is Stage.CONFIRMED:
            return Action(Verb.ESCALATE, None if existing.muted else Event.ESCALATED, Stage.CONFIRMED)
        if cause.topic and existing.topic and cause.topic != existing.topic and existing.stage is Stage.CONFIRMED:
            # e.g. the customer switched one operation on and Nmbrs now refuses another: they must hear it
            return Action(Verb.SEEN, None if existing.muted else Event.OPENED)
        return Action(Verb.SEEN)  # a confirmed problem never drops back to suspected

    if cause.withdrawn:
        return Action(Verb.RESOLVE)
    if existing.stage is Stage.SUSPECTED:
        return Action(Verb.RESOLVE)  # never announced, so nothing to take back and nothing to flap
    if existing.cause_cleared_at is None:
        if policy.quiet_period <= timedelta(0):
            return _resolve(existing)
        return Action(Verb.CLEAR)
    return plan_quiet(existing, now, policy)


def plan_quiet(existing: Problem, now: datetime, policy: Policy) -> Action:
    """Without new evidence (the sweep): resolve after the quiet period, or remind when one is due."""
    if existing.cause_cleared_at is not None:
        if now - existing.cause_cleared_at >= policy.quiet_period:
            return _resolve(existing)
        return NOTHING
    due = reminder_due_at(existing, policy)
    if due is not None and now >= due:
        return Action(Verb.REMIND, Event.REMINDER)
    return NOTHING


def reminder_due_at(problem: Problem, policy: Policy) -> datetime | None:
    """When the next reminder is due: an interval after the last mail (or after an unmute, which sends no
    backlog); never for a muted, suspected or cleared problem, or when reminders are off."""
    if policy.reminder_interval is None or problem.muted or problem.stage is Stage.SUSPECTED \
            or problem.kind in ONCE_KINDS:
        return None
    if problem.cause_cleared_at is not None:
        return None
    bases = [t for t in (problem.last_notified_at, problem.unmuted_at) if t is not None]
    if not bases:
        return None
    return max(bases) + policy.reminder_interval


# Shared by every token's causes (an unchanged sweep builds six per token); frozen, with a read-only detail.
_ABSENT = Cause(False, detail=MappingProxyType({}))
_WITHDRAWN = Cause(False, detail=MappingProxyType({}), withdrawn=True)


def token_causes(state: TokenState, missing_operation: str | None = None,
                 credential: CredentialKind = CredentialKind.SOAP_TOKEN, *,
                 lost_by_l1nda: bool = False) -> dict[Kind, Cause] | None:
    """The cause of every token kind, from the token's state and what kind of credential it is; None when the
    state says nothing yet ('new'). A REST connection that is refused (suspected, then revoked or rejected) has
    the one kind `consent_revoked`: the customer consents again, nobody sends a token. `lost_by_l1nda`: its
    refresh token was spent by a refresh whose answer L1NDA lost (`grant_lost`), so the mails say so, not that
    the customer withdrew it."""
    if state is TokenState.NEW:
        return None
    if state in WITHDRAWN_STATES:
        return dict.fromkeys(TOKEN_KINDS, _WITHDRAWN)
    causes = dict.fromkeys(TOKEN_KINDS, _ABSENT)
    rest = credential is CredentialKind.REST_CONNECTION
    if state is TokenState.INVALID:
        causes[Kind.CONSENT_REVOKED if rest else Kind.REVOKED] = Cause(True, Stage.SUSPECTED)
    elif state is TokenState.REVOKED:
        causes[Kind.CONSENT_REVOKED if rest else Kind.REVOKED] = Cause(
            True, Stage.CONFIRMED, detail={"lost_by_l1nda": True} if rest and lost_by_l1nda else {})
    elif state is TokenState.REJECTED:
        lost = {"lost_by_l1nda": True} if lost_by_l1nda else {}
        causes[Kind.CONSENT_REVOKED if rest else Kind.REJECTED] = Cause(
            True, Stage.CONFIRMED, detail={"never_worked": True, **lost} if rest else {})
    elif state is TokenState.RIGHTS_MISSING:
        causes[Kind.RIGHTS_MISSING] = Cause(True, detail={"missing_operation": missing_operation},
                                            topic=missing_operation)
    elif state is TokenState.NO_SUBSCRIPTION:
        causes[Kind.NO_SUBSCRIPTION] = Cause(True)
    elif state is TokenState.UNREACHABLE:
        causes[Kind.UNREACHABLE] = Cause(True)
    return causes


def audiences(kind: Kind) -> tuple[str, ...]:
    """Who hears about a kind: operations always, the token's customer contact only when they must act."""
    if kind is Kind.SOAP_ENDED:
        return ("customer",)
    return ("ops", "customer") if kind in CUSTOMER_KINDS else ("ops",)
