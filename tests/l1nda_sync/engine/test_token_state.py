"""Token state decisions, table-driven: each row one check against one starting health."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l1nda_sync.engine.token_state import (
    CheckResult,
    Outcome,
    StatePolicy,
    TokenHealth,
    TokenState,
    decide,
)

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = StatePolicy()
MIN = timedelta(minutes=1)


def check(outcome: Outcome, minutes: float = 0, op: str | None = None) -> CheckResult:
    return CheckResult(outcome, T0 + minutes * MIN, op)


@pytest.mark.parametrize(
    ("before", "result", "state", "next_in"),
    [
        (TokenHealth(TokenState.NEW), check(Outcome.VALID), TokenState.ACTIVE, 60 * MIN),
        (TokenHealth(TokenState.ACTIVE), check(Outcome.INVALID), TokenState.INVALID, 10 * MIN),
        (TokenHealth(TokenState.ACTIVE), check(Outcome.RIGHTS_MISSING, op="DebtorService.List_GetAll"),
         TokenState.RIGHTS_MISSING, 10 * MIN),
        (TokenHealth(TokenState.ACTIVE), check(Outcome.NO_SUBSCRIPTION), TokenState.NO_SUBSCRIPTION, 10 * MIN),
        (TokenHealth(TokenState.ACTIVE), check(Outcome.TRANSIENT), TokenState.ACTIVE, 10 * MIN),
        (TokenHealth(TokenState.NEW), check(Outcome.TRANSIENT), TokenState.NEW, 10 * MIN),
        (TokenHealth(TokenState.REVOKED, 3, T0 - 60 * MIN), check(Outcome.VALID), TokenState.ACTIVE, 60 * MIN),
        (TokenHealth(TokenState.REVOKED, 3, T0 - 60 * MIN), check(Outcome.INVALID), TokenState.REVOKED, 60 * MIN),
        (TokenHealth(TokenState.RIGHTS_MISSING, missing_operation="x"), check(Outcome.VALID), TokenState.ACTIVE,
         60 * MIN),
        (TokenHealth(TokenState.ACTIVE), check(Outcome.UNKNOWN), TokenState.ACTIVE, 10 * MIN),
        (TokenHealth(TokenState.ACTIVE), check(Outcome.DATA_NOT_ALLOWED), TokenState.ACTIVE, 10 * MIN),
    ],
)
def test_single_check(before: TokenHealth, result: CheckResult, state: TokenState, next_in: timedelta) -> None:
    t = decide(before, result, POLICY)
    assert t.after.state is state
    assert t.next_check_at - result.at == next_in


def test_revoked_only_after_two_1001_at_least_ten_minutes_apart() -> None:
    first = decide(TokenHealth(TokenState.ACTIVE), check(Outcome.INVALID, 0), POLICY)
    assert first.after.state is TokenState.INVALID
    assert first.next_check_at == T0 + 10 * MIN
    too_soon = decide(first.after, check(Outcome.INVALID, 4), POLICY)
    assert too_soon.after.state is TokenState.INVALID, "two 1001 within 4 minutes do not confirm"
    assert too_soon.next_check_at == T0 + 10 * MIN, "the next check waits for the spacing"
    confirmed = decide(too_soon.after, check(Outcome.INVALID, 10), POLICY)
    assert confirmed.after.state is TokenState.REVOKED
    assert confirmed.after.consecutive_invalid == 3


def test_1001_that_recovers_before_confirmation_is_active_again_with_clean_counters() -> None:
    invalid = decide(TokenHealth(TokenState.ACTIVE), check(Outcome.INVALID, 0), POLICY).after
    back = decide(invalid, check(Outcome.VALID, 10), POLICY).after
    assert back.state is TokenState.ACTIVE
    assert back.consecutive_invalid == 0
    assert back.first_invalid_at is None
    again = decide(back, check(Outcome.INVALID, 20), POLICY).after
    assert again.state is TokenState.INVALID, "a fresh episode starts from one, not from the old count"


def test_transient_faults_make_a_token_unreachable_only_after_six_hours() -> None:
    health = TokenHealth(TokenState.ACTIVE)
    minute = 0.0
    nexts = []
    while True:
        t = decide(health, check(Outcome.TRANSIENT, minute), POLICY)
        nexts.append(t.next_check_at - (T0 + minute * MIN))
        health = t.after
        if health.state is not TokenState.ACTIVE:
            break
        minute = (t.next_check_at - T0) / MIN
    assert health.state is TokenState.UNREACHABLE
    assert minute * MIN >= POLICY.unreachable_after
    assert nexts[:4] == [10 * MIN, 20 * MIN, 40 * MIN, 80 * MIN], "backoff doubles"
    assert max(nexts) <= POLICY.check_interval_unreachable_max


def test_breaker_open_freezes_failing_tokens() -> None:
    invalid = TokenHealth(TokenState.INVALID, 1, T0 - 30 * MIN)
    t = decide(invalid, check(Outcome.INVALID), POLICY, breaker_open=True)
    assert t.after == invalid, "no step toward revoked during a provider incident"
    nearly = TokenHealth(TokenState.ACTIVE, consecutive_transient=9, first_transient_at=T0 - 7 * 60 * MIN)
    t = decide(nearly, check(Outcome.TRANSIENT), POLICY, breaker_open=True)
    assert t.after == nearly, "no step toward unreachable either"
    t = decide(invalid, check(Outcome.VALID), POLICY, breaker_open=True)
    assert t.after.state is TokenState.ACTIVE, "good news still counts"


def test_policy_from_settings() -> None:
    from l1nda_sync.settings import Settings

    p = StatePolicy.from_settings(Settings(revoke_confirmations=3, revoke_min_spacing=60.0))
    assert p.revoke_confirmations == 3
    assert p.revoke_min_spacing == timedelta(seconds=60)


@given(st.lists(st.sampled_from(list(Outcome)), min_size=1, max_size=30),
       st.lists(st.floats(min_value=0.5, max_value=120), min_size=30, max_size=30))
def test_revocation_needs_confirmation_property(outcomes: list[Outcome], gaps: list[float]) -> None:
    """Whatever the sequence, a token is only revoked after >= 2 consecutive 1001 spanning >= 10 minutes,
    and a valid answer always makes it active."""
    health = TokenHealth(TokenState.NEW)
    minute = 0.0
    run: list[float] = []
    for outcome, gap in zip(outcomes, gaps, strict=False):
        minute += gap
        health = decide(health, check(outcome, minute), POLICY).after
        if outcome is Outcome.INVALID:
            run.append(minute)
        elif outcome is Outcome.VALID or outcome in (Outcome.RIGHTS_MISSING, Outcome.NO_SUBSCRIPTION):
            run = []
        if outcome is Outcome.VALID:
            assert health.state is TokenState.ACTIVE
        if health.state is TokenState.REVOKED:
            assert len(run) >= 2
            assert run[-1] - run[0] >= 10 - 1e-6  # minutes as floats; the engine sees microseconds
