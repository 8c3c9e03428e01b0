"""How one check moves a token's state: pure, over plain records, without false alarms.

States: new -> active on a valid answer; 1001 makes a token `invalid` at once but `revoked` only after
`revoke_confirmations` consecutive 1001 answers spread over at least `revoke_min_spacing`; transient faults
leave the state alone and only after `unreachable_after` of nothing but transient faults is it `unreachable`.
While the circuit breaker is open (a provider incident) nothing moves toward revoked or unreachable and the
failure counters stand still, so an outage cannot push a token over a threshold afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum


class TokenState(StrEnum):
    NEW = "new"
    ACTIVE = "active"
    INVALID = "invalid"
    REVOKED = "revoked"
    RIGHTS_MISSING = "rights_missing"
    NO_SUBSCRIPTION = "no_subscription"
    UNREACHABLE = "unreachable"
    DISABLED = "disabled"
    REMOVED = "removed"


class Outcome(StrEnum):
    """The class of one check's result; mirrors `NmbrsError.outcome` plus `valid`."""

    VALID = "valid"
    INVALID = "invalid"  # 1001
    RIGHTS_MISSING = "rights_missing"  # 1002
    NO_SUBSCRIPTION = "no_subscription"  # 1004
    TRANSIENT = "transient"  # 1006, 9999, 5xx, network, time-outs, malformed XML
    DATA_NOT_ALLOWED = "data_not_allowed"  # 1003/200x mid-probe: the world changed under us; retry soon
    UNKNOWN = "unknown"


# Outcomes that say nothing about the token itself: the state stays, only the transient clock runs.
PASSING_OUTCOMES = frozenset({Outcome.TRANSIENT, Outcome.DATA_NOT_ALLOWED, Outcome.UNKNOWN})
# Outcomes that count toward the circuit breaker (a provider incident shows as these).
BREAKER_OUTCOMES = frozenset({Outcome.INVALID, Outcome.TRANSIENT})


@dataclass(frozen=True, slots=True)
class StatePolicy:
    check_interval_healthy: timedelta = timedelta(hours=1)
    check_interval_failed: timedelta = timedelta(minutes=10)
    check_interval_unreachable_max: timedelta = timedelta(hours=6)
    revoke_confirmations: int = 2
    revoke_min_spacing: timedelta = timedelta(minutes=10)
    unreachable_after: timedelta = timedelta(hours=6)

    @classmethod
    def from_settings(cls, settings: object) -> StatePolicy:
        def seconds(name: str) -> timedelta:
            return timedelta(seconds=float(getattr(settings, name)))

        return cls(
            check_interval_healthy=seconds("check_interval_healthy"),
            check_interval_failed=seconds("check_interval_failed"),
            check_interval_unreachable_max=seconds("check_interval_unreachable_max"),
            revoke_confirmations=int(getattr(settings, "revoke_confirmations")),  # noqa: B009
            revoke_min_spacing=seconds("revoke_min_spacing"),
            unreachable_after=seconds("unreachable_after"),
        )


@dataclass(frozen=True, slots=True)
class TokenHealth:
    """The part of a token row that checks move."""

    state: TokenState
    consecutive_invalid: int = 0
    first_invalid_at: datetime | None = None
    consecutive_transient: int = 0
    first_transient_at: datetime | None = None
    missing_operation: str | None = None
    last_valid_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    outcome: Outcome
    at: datetime
    missing_operation: str | None = None  # "DebtorService.List_GetAll" for rights_missing


@dataclass(frozen=True, slots=True)
class Transition:
    before: TokenHealth
    after: TokenHealth
    next_check_at: datetime

    @property
    def changed_state(self) -> bool:
        return self.before.state != self.after.state


def _transient_backoff(policy: StatePolicy, failures: int) -> timedelta:
    """1x, 2x, 4x ... the failed interval, capped: an unreachable token is not hammered."""
    factor = 2 ** max(0, min(failures - 1, 16))
    return min(policy.check_interval_failed * factor, policy.check_interval_unreachable_max)


def decide(health: TokenHealth, result: CheckResult, policy: StatePolicy, *, breaker_open: bool = False) -> Transition:
    """The token's health after one check, and when to check it next."""
    at = result.at
    if result.outcome is Outcome.VALID:
        after = TokenHealth(state=TokenState.ACTIVE, last_valid_at=at)
        return Transition(health, after, at + policy.check_interval_healthy)

    if result.outcome is Outcome.INVALID:
        if breaker_open:
            return Transition(health, health, at + policy.check_interval_failed)
        count = health.consecutive_invalid + 1
        first = health.first_invalid_at or at
        confirmed = count >= policy.revoke_confirmations and at - first >= policy.revoke_min_spacing
        already_revoked = health.state is TokenState.REVOKED
        state = TokenState.REVOKED if confirmed or already_revoked else TokenState.INVALID
        after = replace(
            health, state=state, consecutive_invalid=count, first_invalid_at=first,
            consecutive_transient=0, first_transient_at=None,
        )
        # Confirm as soon as the spacing allows; a revoked token is rechecked at the healthy pace, since it
        # only comes back if the customer restores it.
        remaining = first + policy.revoke_min_spacing - at
        if state is TokenState.REVOKED:
            wait = policy.check_interval_healthy
        else:
            wait = remaining if remaining > timedelta(0) else policy.check_interval_failed
        return Transition(health, after, at + wait)

    if result.outcome in (Outcome.RIGHTS_MISSING, Outcome.NO_SUBSCRIPTION):
        state = TokenState.RIGHTS_MISSING if result.outcome is Outcome.RIGHTS_MISSING else TokenState.NO_SUBSCRIPTION
        after = TokenHealth(
            state=state,
            missing_operation=result.missing_operation if state is TokenState.RIGHTS_MISSING else None,
            last_valid_at=health.last_valid_at,
        )
        return Transition(health, after, at + policy.check_interval_failed)

    # Transient, data-not-allowed mid-probe, unknown: the token's state stays; only the clock runs.
    if breaker_open:
        return Transition(health, health, at + policy.check_interval_failed)
    count = health.consecutive_transient + 1
    first = health.first_transient_at or at
    state = health.state
    if at - first >= policy.unreachable_after and state not in (TokenState.REVOKED, TokenState.DISABLED):
        state = TokenState.UNREACHABLE
    after = replace(health, state=state, consecutive_transient=count, first_transient_at=first)
    return Transition(health, after, at + _transient_backoff(policy, count))

