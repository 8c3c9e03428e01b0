"""How one check moves a token's state: pure, over plain records, without false alarms.

One answer never moves a token toward a verdict. A refusal (1001, 1002, 1004; for a REST connection a withdrawn
consent, which counts in the 1001 streak) counts a streak; the token takes the refusal's state (`revoked`,
`rights_missing`, `no_subscription`) only after `revoke_confirmations` answers of the same refusal spread over at
least `revoke_min_spacing`. Meanwhile a 1001 shows as `invalid` (links kept,
nobody mailed) and a 1002/1004 leaves the state as it was. A token whose confirmed 1001 comes before it ever
answered validly (since it was registered or replaced) is `rejected`, not revoked: we were given a token that
never worked. A valid answer whose reach dropped sharply (`reach_drop`) is confirmed the same way before the
stored reach changes. Transient faults leave the state alone; only after `unreachable_after` of nothing but
transient faults is a token `unreachable`. While the circuit breaker is open (a provider incident) nothing moves
and the streaks start over, so an outage cannot push a token over a threshold afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from l1nda_sync.settings import Settings


class TokenState(StrEnum):
    """The state of a token, as stored in tokens.state."""

    NEW = "new"
    ACTIVE = "active"
    INVALID = "invalid"
    REVOKED = "revoked"
    REJECTED = "rejected"
    RIGHTS_MISSING = "rights_missing"
    NO_SUBSCRIPTION = "no_subscription"
    UNREACHABLE = "unreachable"
    DISABLED = "disabled"
    REMOVED = "removed"
    RETIRED = "retired"  # a SOAP token after soap_end (Nmbrs ended SOAP): never checked, serves no link


class CredentialKind(StrEnum):
    """What a token row holds (tokens.kind): a SOAP token, or a REST connection (an OAuth2 consent)."""

    SOAP_TOKEN = "soap_token"  # noqa: S105 - a kind, not a secret
    REST_CONNECTION = "rest_connection"


class Outcome(StrEnum):
    """The class of one check's result; mirrors `NmbrsError.outcome` plus `valid`."""

    VALID = "valid"
    INVALID = "invalid"  # 1001
    RIGHTS_MISSING = "rights_missing"  # 1002
    NO_SUBSCRIPTION = "no_subscription"  # 1004
    TRANSIENT = "transient"  # 1006, 9999, 5xx, network, time-outs, malformed XML
    DATA_NOT_ALLOWED = "data_not_allowed"  # 1003/200x mid-probe: the world changed under us; retry soon
    UNKNOWN = "unknown"
    REACH_DROP = "reach_drop"  # a valid answer whose reach dropped sharply: suspect until confirmed
    # REST: the customer withdrew the consent in Nmbrs, or its refresh token expired (`invalid_grant` that no other
    # worker's rotation explains; 401/40102 after one refresh). A refusal confirmed exactly like a 1001. A missing
    # scope is `rights_missing` (missing_operation = the scope), 40304 is `no_subscription`, 42908/42909 transient.
    CONSENT_REVOKED = "consent_revoked"


EnumT = TypeVar("EnumT", bound=StrEnum)


def member_of(enum: type[EnumT]) -> Callable[[str], EnumT]:
    """`enum(value)` for values read row by row in bulk: a dict look-up (an enum call costs some microseconds,
    thousands of times a sweep), with the enum's own error for a value it does not have."""
    members = {m.value: m for m in enum}

    def parse(value: str) -> EnumT:
        member = members.get(value)
        return member if member is not None else enum(value)

    return parse


# Outcomes that say nothing about the token itself: the state stays, only the transient clock runs.
PASSING_OUTCOMES = frozenset({Outcome.TRANSIENT, Outcome.DATA_NOT_ALLOWED, Outcome.UNKNOWN})
# Refusals: each moves the token to its state only once confirmed (the state for 1001 depends on the past).
REFUSAL_STATES = {
    Outcome.INVALID: TokenState.REVOKED,
    Outcome.CONSENT_REVOKED: TokenState.REVOKED,
    Outcome.RIGHTS_MISSING: TokenState.RIGHTS_MISSING,
    Outcome.NO_SUBSCRIPTION: TokenState.NO_SUBSCRIPTION,
}
# The streak a refusal counts in (tokens.refusal), when not its own: a withdrawn consent is a REST connection's
# 1001, so it runs the same streak with the same spacing and confirmations (and a REST connection never answers a
# 1001, nor a SOAP token a withdrawn consent). The check keeps its own outcome.
REFUSAL_STREAKS = {Outcome.CONSENT_REVOKED: Outcome.INVALID}
# States an operator took out of service, or the SOAP cutover retired: no check moves a token out of them.
OUT_OF_SERVICE_STATES = frozenset({TokenState.DISABLED, TokenState.REMOVED, TokenState.RETIRED})
# States a token may be checked in (everything else, in TokenState's order).
CHECKABLE_STATES = tuple(s.value for s in TokenState if s not in OUT_OF_SERVICE_STATES)


@dataclass(frozen=True, slots=True)
class StatePolicy:
    """The intervals and thresholds that judge a token's answers over time."""

    check_interval_healthy: timedelta = timedelta(hours=1)
    check_interval_failed: timedelta = timedelta(minutes=10)
    check_interval_unreachable_max: timedelta = timedelta(hours=6)
    revoke_confirmations: int = 2
    revoke_min_spacing: timedelta = timedelta(minutes=10)
    unreachable_after: timedelta = timedelta(hours=6)
    drop_share: float = 0.5
    drop_min_companies: int = 4

    @classmethod
    def from_settings(cls, settings: Settings) -> StatePolicy:
        """The policy the settings configure (durations there are seconds)."""

        def seconds(value: float) -> timedelta:
            return timedelta(seconds=float(value))

        return cls(
            check_interval_healthy=seconds(settings.check_interval_healthy),
            check_interval_failed=seconds(settings.check_interval_failed),
            check_interval_unreachable_max=seconds(settings.check_interval_unreachable_max),
            revoke_confirmations=int(settings.revoke_confirmations),
            revoke_min_spacing=seconds(settings.revoke_min_spacing),
            unreachable_after=seconds(settings.unreachable_after),
            drop_share=float(settings.drop_share),
            drop_min_companies=int(settings.drop_min_companies),
        )


@dataclass(frozen=True, slots=True)
class TokenHealth:
    """The part of a token row that checks move.

    `consecutive_invalid` and `first_invalid_at` (named after 1001, the first refusal they counted) count the
    streak of the refusal named by `refusal`. `replaced_at` is only read: it tells whether the token ever
    answered validly since it was handed to us.
    """

    state: TokenState
    consecutive_invalid: int = 0
    first_invalid_at: datetime | None = None
    consecutive_transient: int = 0
    first_transient_at: datetime | None = None
    missing_operation: str | None = None
    last_valid_at: datetime | None = None
    refusal: str | None = None
    drop_since: datetime | None = None
    replaced_at: datetime | None = None

    @property
    def never_worked(self) -> bool:
        """No valid answer since the token was registered or last replaced."""
        if self.last_valid_at is None:
            return True
        return self.replaced_at is not None and self.last_valid_at < self.replaced_at

    @property
    def suspected(self) -> str | None:
        """What is suspected but not yet confirmed (for run reports), or None."""
        if self.drop_since is not None:
            return "reach_drop"
        if self.refusal is not None and self.state not in _CONFIRMED.get(self.refusal, ()):
            return self.refusal
        return None


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's result as `decide` reads it."""

    outcome: Outcome
    at: datetime
    missing_operation: str | None = None  # "DebtorService.List_GetAll" for rights_missing


@dataclass(frozen=True, slots=True)
class Transition:
    """A token's health before and after one check, when to check it next, and whether its reach changes."""

    before: TokenHealth
    after: TokenHealth
    next_check_at: datetime
    write_reach: bool = True  # False: a suspected reach drop, not yet confirmed; the stored reach stays

    @property
    def changed_state(self) -> bool:
        return self.before.state != self.after.state


def _transient_backoff(policy: StatePolicy, failures: int) -> timedelta:
    """1x, 2x, 4x ... the failed interval, capped: an unreachable token is not hammered."""
    factor = 1 << max(0, min(failures - 1, 16))  # 2 ** n, as an int
    return min(policy.check_interval_failed * factor, policy.check_interval_unreachable_max)


# Where each refusal's streak ends, keyed by the refusal as stored: its state, and for 1001 also `rejected`.
_CONFIRMED = {
    o.value: (state, TokenState.REJECTED) if state is TokenState.REVOKED else (state,)
    for o, state in REFUSAL_STATES.items()
}


def is_sharp_drop(before: int, after: int, policy: StatePolicy) -> bool:
    """A reach of `before` companies that now shows `after` dropped sharply enough to need confirmation: to zero,
    or by more than `drop_share` of at least `drop_min_companies`."""
    if after >= before:
        return False
    if after == 0:
        return True
    return before >= policy.drop_min_companies and (before - after) > policy.drop_share * before


def _confirm_wait(first: datetime, at: datetime, policy: StatePolicy) -> timedelta:
    """Until the confirming answer may come: as soon as the spacing allows."""
    remaining = first + policy.revoke_min_spacing - at
    return remaining if remaining > timedelta(0) else policy.check_interval_failed


def decide(health: TokenHealth, result: CheckResult, policy: StatePolicy, *, breaker_open: bool = False) -> Transition:
    """The token's health after one check, and when to check it next."""
    at = result.at
    outcome = result.outcome
    if breaker_open and outcome is not Outcome.VALID:
        # A provider incident: nothing moves, and every streak starts over. Answers before and during an outage say
        # nothing about the token, so a strike at its onset and one odd answer at its tail never add up to a
        # verdict, and the transient clock does not count the hours the breaker held.
        after = replace(health, consecutive_invalid=0, first_invalid_at=None, refusal=None, drop_since=None,
                        consecutive_transient=0, first_transient_at=None)
        return Transition(health, after, at + policy.check_interval_failed, write_reach=False)

    if outcome is Outcome.VALID:
        after = TokenHealth(state=TokenState.ACTIVE, last_valid_at=at, replaced_at=health.replaced_at)
        return Transition(health, after, at + policy.check_interval_healthy)

    if outcome is Outcome.REACH_DROP:
        # The token works (it answered), but what it reaches is suspect until a later answer confirms it.
        first = health.drop_since or at
        confirmed = health.drop_since is not None and at - first >= policy.revoke_min_spacing
        after = TokenHealth(state=TokenState.ACTIVE, last_valid_at=at, replaced_at=health.replaced_at,
                            drop_since=None if confirmed else first)
        wait = policy.check_interval_healthy if confirmed else _confirm_wait(first, at, policy)
        return Transition(health, after, at + wait, write_reach=confirmed)

    if outcome in REFUSAL_STATES:
        streak = REFUSAL_STREAKS.get(outcome, outcome)
        same = health.refusal == streak.value and health.first_invalid_at is not None
        count = health.consecutive_invalid + 1 if same else 1
        first = health.first_invalid_at if same and health.first_invalid_at else at
        confirmed = count >= policy.revoke_confirmations and at - first >= policy.revoke_min_spacing
        settled_states = _CONFIRMED[streak.value]  # already there: this answer is no news
        target = REFUSAL_STATES[outcome]
        if target is TokenState.REVOKED and health.never_worked:
            target = TokenState.REJECTED
        if health.state in settled_states:
            state = health.state
        elif confirmed:
            state = target
        elif streak is Outcome.INVALID:
            state = TokenState.INVALID  # suspected: links kept, nobody mailed yet
        else:
            state = health.state
        missing = result.missing_operation if outcome is Outcome.RIGHTS_MISSING else (
            health.missing_operation if state is TokenState.RIGHTS_MISSING else None)
        after = replace(
            health, state=state, consecutive_invalid=count, first_invalid_at=first, refusal=streak.value,
            missing_operation=missing, consecutive_transient=0, first_transient_at=None,
        )
        if state in (TokenState.REVOKED, TokenState.REJECTED):
            wait = policy.check_interval_healthy  # only the customer can bring it back
        elif state in settled_states:
            wait = policy.check_interval_failed
        else:
            wait = _confirm_wait(first, at, policy)
        return Transition(health, after, at + wait)

    # Transient, data-not-allowed mid-probe, unknown: the token's state stays; only the clock runs.
    count = health.consecutive_transient + 1
    first = health.first_transient_at or at
    state = health.state
    if at - first >= policy.unreachable_after and state not in (
            TokenState.REVOKED, TokenState.REJECTED, TokenState.DISABLED):
        state = TokenState.UNREACHABLE
    after = replace(health, state=state, consecutive_transient=count, first_transient_at=first)
    return Transition(health, after, at + _transient_backoff(policy, count))
