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
    member_of,
)

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = StatePolicy()
MIN = timedelta(minutes=1)
ACTIVE = TokenHealth(TokenState.ACTIVE, last_valid_at=T0 - 60 * MIN)  # a token that worked before


def check(outcome: Outcome, minutes: float = 0, op: str | None = None) -> CheckResult:
    return CheckResult(outcome, T0 + minutes * MIN, op)


@pytest.mark.parametrize(
    ("before", "result", "state", "next_in"),
    [
        (TokenHealth(TokenState.NEW), check(Outcome.VALID), TokenState.ACTIVE, 60 * MIN),
        (ACTIVE, check(Outcome.INVALID), TokenState.INVALID, 10 * MIN),
        # one 1002 or 1004 moves nothing: it is confirmed like a 1001 first
        (ACTIVE, check(Outcome.RIGHTS_MISSING, op="DebtorService.List_GetAll"), TokenState.ACTIVE, 10 * MIN),
        (ACTIVE, check(Outcome.NO_SUBSCRIPTION), TokenState.ACTIVE, 10 * MIN),
        (TokenHealth(TokenState.RIGHTS_MISSING, 2, T0 - 60 * MIN, refusal="rights_missing", missing_operation="x"),
         check(Outcome.RIGHTS_MISSING, op="x"), TokenState.RIGHTS_MISSING, 10 * MIN),
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
    first = decide(ACTIVE, check(Outcome.INVALID, 0), POLICY)
    assert first.after.state is TokenState.INVALID
    assert first.next_check_at == T0 + 10 * MIN
    too_soon = decide(first.after, check(Outcome.INVALID, 4), POLICY)
    assert too_soon.after.state is TokenState.INVALID, "two 1001 within 4 minutes do not confirm"
    assert too_soon.next_check_at == T0 + 10 * MIN, "the next check waits for the spacing"
    confirmed = decide(too_soon.after, check(Outcome.INVALID, 10), POLICY)
    assert confirmed.after.state is TokenState.REVOKED
    assert confirmed.after.consecutive_invalid == 3


def test_1001_that_recovers_before_confirmation_is_active_again_with_clean_counters() -> None:
    invalid = decide(ACTIVE, check(Outcome.INVALID, 0), POLICY).after
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
    assert t.after.state is TokenState.INVALID, "no step toward revoked during a provider incident"
    assert t.after.consecutive_invalid == 0, "the streak starts over"
    nearly = TokenHealth(TokenState.ACTIVE, consecutive_transient=9, first_transient_at=T0 - 7 * 60 * MIN)
    t = decide(nearly, check(Outcome.TRANSIENT), POLICY, breaker_open=True)
    assert t.after.state is TokenState.ACTIVE, "no step toward unreachable either"
    assert t.after.first_transient_at is None, "and the outage's hours do not count afterwards"
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
    """Whatever the sequence, a token is only revoked after >= 2 consecutive 1001 (or withdrawn consents)
    spanning >= 10 minutes, and a valid answer always makes it active."""
    health = TokenHealth(TokenState.NEW)
    minute = 0.0
    run: list[float] = []
    for outcome, gap in zip(outcomes, gaps, strict=False):
        minute += gap
        before = health
        health = decide(health, check(outcome, minute), POLICY).after
        if outcome in (Outcome.INVALID, Outcome.CONSENT_REVOKED):  # one streak: a withdrawn consent is REST's 1001
            run.append(minute)
        elif outcome in (Outcome.VALID, Outcome.REACH_DROP, Outcome.RIGHTS_MISSING, Outcome.NO_SUBSCRIPTION):
            run = []
        if outcome in (Outcome.VALID, Outcome.REACH_DROP):
            assert health.state is TokenState.ACTIVE
        # Becoming revoked (or rejected: never valid) needs the confirmed streak; staying revoked on a later odd
        # answer of another kind is one answer moving nothing.
        if health.state in (TokenState.REVOKED, TokenState.REJECTED) and before.state is not health.state:
            assert len(run) >= 2
            assert run[-1] - run[0] >= 10 - 1e-6  # minutes as floats; the engine sees microseconds


@pytest.mark.parametrize(("outcome", "state"), [
    (Outcome.RIGHTS_MISSING, TokenState.RIGHTS_MISSING), (Outcome.NO_SUBSCRIPTION, TokenState.NO_SUBSCRIPTION)])
def test_1002_and_1004_move_the_token_only_once_confirmed(outcome: Outcome, state: TokenState) -> None:
    first = decide(ACTIVE, check(outcome, 0, "CompanyService.List_GetAll"), POLICY)
    assert first.after.state is TokenState.ACTIVE
    assert first.after.suspected == outcome.value
    too_soon = decide(first.after, check(outcome, 4, "CompanyService.List_GetAll"), POLICY)
    assert too_soon.after.state is TokenState.ACTIVE, "two answers 4 minutes apart do not confirm"
    confirmed = decide(too_soon.after, check(outcome, 10, "CompanyService.List_GetAll"), POLICY)
    assert confirmed.after.state is state
    assert confirmed.after.suspected is None


def test_a_different_refusal_starts_a_new_streak() -> None:
    one = decide(ACTIVE, check(Outcome.RIGHTS_MISSING, 0, "x"), POLICY).after
    other = decide(one, check(Outcome.NO_SUBSCRIPTION, 10), POLICY).after
    assert other.state is TokenState.ACTIVE
    assert other.consecutive_invalid == 1


def test_a_token_that_never_worked_is_rejected_not_revoked() -> None:
    new = TokenHealth(TokenState.NEW)
    first = decide(new, check(Outcome.INVALID, 0), POLICY).after
    assert first.state is TokenState.INVALID
    assert decide(first, check(Outcome.INVALID, 10), POLICY).after.state is TokenState.REJECTED
    replaced = TokenHealth(TokenState.NEW, last_valid_at=T0 - 600 * MIN, replaced_at=T0 - 60 * MIN)
    again = decide(decide(replaced, check(Outcome.INVALID, 0), POLICY).after, check(Outcome.INVALID, 10), POLICY)
    assert again.after.state is TokenState.REJECTED, "valid before the replacement does not count"


def test_a_sharp_reach_drop_writes_reach_only_once_confirmed() -> None:
    first = decide(ACTIVE, check(Outcome.REACH_DROP, 0), POLICY)
    assert not first.write_reach
    assert first.after.drop_since == T0
    assert first.next_check_at == T0 + 10 * MIN
    recovered = decide(first.after, check(Outcome.VALID, 10), POLICY)
    assert recovered.after.drop_since is None
    again = decide(first.after, check(Outcome.REACH_DROP, 10), POLICY)
    assert again.write_reach
    assert again.after.drop_since is None


def test_an_open_breaker_moves_nothing_and_restarts_every_streak() -> None:
    streak = decide(ACTIVE, check(Outcome.INVALID, 0), POLICY).after
    for outcome in (Outcome.INVALID, Outcome.RIGHTS_MISSING, Outcome.REACH_DROP, Outcome.TRANSIENT):
        t = decide(streak, check(outcome, 30), POLICY, breaker_open=True)
        assert t.after.state is streak.state
        assert not t.write_reach
        assert t.after.consecutive_invalid == t.after.consecutive_transient == 0
        assert t.after.first_invalid_at is None
        assert t.after.drop_since is None
    # A strike at an outage's onset and one odd answer at its tail never add up to a revocation.
    held = decide(streak, check(Outcome.INVALID, 30), POLICY, breaker_open=True).after
    assert decide(held, check(Outcome.INVALID, 400), POLICY).after.state is TokenState.INVALID


def test_a_held_transient_clock_does_not_count_the_outage() -> None:
    first = decide(ACTIVE, check(Outcome.TRANSIENT, 0), POLICY).after
    held = decide(first, check(Outcome.TRANSIENT, 300), POLICY, breaker_open=True).after
    after = decide(held, check(Outcome.TRANSIENT, 7 * 60), POLICY).after  # 7 h after the first, one time-out
    assert after.state is TokenState.ACTIVE


# -- REST: a withdrawn or expired consent is confirmed exactly like a 1001 --------------------------------------
def test_a_withdrawn_consent_is_confirmed_like_a_1001() -> None:
    first = decide(ACTIVE, check(Outcome.CONSENT_REVOKED, 0), POLICY)
    assert first.after.state is TokenState.INVALID, "one answer: suspected, links kept, nobody mailed"
    assert first.after.suspected == "invalid"
    assert first.next_check_at == T0 + 10 * MIN, "checked again as soon as the spacing allows"
    too_soon = decide(first.after, check(Outcome.CONSENT_REVOKED, 4), POLICY)
    assert too_soon.after.state is TokenState.INVALID
    confirmed = decide(too_soon.after, check(Outcome.CONSENT_REVOKED, 10), POLICY)
    assert confirmed.after.state is TokenState.REVOKED
    assert confirmed.after.suspected is None
    assert confirmed.next_check_at == T0 + 70 * MIN, "only the customer can bring it back: hourly"
    again = decide(confirmed.after, check(Outcome.CONSENT_REVOKED, 70), POLICY)
    assert again.after.state is TokenState.REVOKED
    assert not again.changed_state
    back = decide(again.after, check(Outcome.VALID, 130), POLICY)
    assert back.after.state is TokenState.ACTIVE, "a new consent of the same user replaces the connection"


@pytest.mark.parametrize("outcome", [Outcome.CONSENT_REVOKED, Outcome.INVALID])
def test_a_consent_that_never_worked_is_rejected(outcome: Outcome) -> None:
    first = decide(TokenHealth(TokenState.NEW), check(outcome, 0), POLICY).after
    assert first.state is TokenState.INVALID
    assert decide(first, check(outcome, 10), POLICY).after.state is TokenState.REJECTED


def test_a_withdrawn_consent_needs_the_configured_confirmations() -> None:
    strict = StatePolicy(revoke_confirmations=3)
    health = ACTIVE
    for minute, state in ((0, TokenState.INVALID), (10, TokenState.INVALID), (20, TokenState.REVOKED)):
        health = decide(health, check(Outcome.CONSENT_REVOKED, minute), strict).after
        assert health.state is state, minute


def test_an_open_breaker_holds_a_withdrawn_consent() -> None:
    first = decide(ACTIVE, check(Outcome.CONSENT_REVOKED, 0), POLICY).after
    held = decide(first, check(Outcome.CONSENT_REVOKED, 15), POLICY, breaker_open=True)
    assert held.after.state is TokenState.INVALID
    assert held.after.consecutive_invalid == 0
    assert decide(held.after, check(Outcome.CONSENT_REVOKED, 30), POLICY).after.state is TokenState.INVALID


def test_a_missing_scope_is_rights_missing_naming_the_scope() -> None:
    first = decide(ACTIVE, check(Outcome.RIGHTS_MISSING, 0, "company.info.read"), POLICY).after
    assert first.state is TokenState.ACTIVE
    confirmed = decide(first, check(Outcome.RIGHTS_MISSING, 10, "company.info.read"), POLICY).after
    assert confirmed.state is TokenState.RIGHTS_MISSING
    assert confirmed.missing_operation == "company.info.read"


def test_member_of_reads_every_member_and_fails_as_the_enum_does() -> None:
    """The bulk reader's enum look-up: each stored value gives its member, an unknown one the enum's ValueError
    (the error type a failed apply reports)."""
    state_of = member_of(TokenState)
    assert [state_of(s.value) for s in TokenState] == list(TokenState)
    with pytest.raises(ValueError, match="'gone'"):
        state_of("gone")
