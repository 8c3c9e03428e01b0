"""The pure problem decisions, table-driven: no database, no mail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l1nda_sync.alerts.problems import (
    Action,
    Cause,
    Event,
    Kind,
    Policy,
    Problem,
    Stage,
    Verb,
    audiences,
    plan_problem,
    plan_quiet,
    reminder_due_at,
    token_causes,
)
from l1nda_sync.engine.token_state import TokenState

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
POLICY = Policy(quiet_period=HOUR, reminder_interval=24 * HOUR)

PRESENT = Cause(True)
SUSPECTED = Cause(True, Stage.SUSPECTED)
ABSENT = Cause.absent()
WITHDRAWN = Cause(False, withdrawn=True)


def problem(kind: Kind = Kind.NO_SUBSCRIPTION, *, stage: Stage = Stage.CONFIRMED, cleared: timedelta | None = None,
            notified: timedelta | None = -2 * HOUR, muted: bool = False,
            unmuted: timedelta | None = None) -> Problem:
    """A problem opened (and announced, unless notified=None) at T0 - 2h; times are offsets from T0."""

    def at(offset: timedelta | None) -> datetime | None:
        return None if offset is None else T0 + offset

    return Problem(kind, T0 - 2 * HOUR, stage, at(cleared), at(notified), muted, at(unmuted))


@pytest.mark.parametrize(
    ("existing", "cause", "verb", "notify"),
    [
        # nothing open
        (None, ABSENT, Verb.NOTHING, None),
        (None, PRESENT, Verb.OPEN, Event.OPENED),
        (None, SUSPECTED, Verb.OPEN, None),  # revoked: one unconfirmed 1001 opens silently
        (None, WITHDRAWN, Verb.NOTHING, None),
        # open, cause still there
        (problem(), PRESENT, Verb.SEEN, None),  # never once per run
        (problem(stage=Stage.SUSPECTED, notified=None), PRESENT, Verb.ESCALATE, Event.ESCALATED),
        (problem(stage=Stage.SUSPECTED, notified=None, muted=True), PRESENT, Verb.ESCALATE, None),
        (problem(stage=Stage.SUSPECTED, notified=None), SUSPECTED, Verb.SEEN, None),
        (problem(), SUSPECTED, Verb.SEEN, None),  # confirmed never drops back to suspected
        (problem(cleared=-10 * MIN), PRESENT, Verb.SEEN, None),  # back within the quiet period: stays open
        # open, cause gone
        (problem(), ABSENT, Verb.CLEAR, None),
        (problem(cleared=-10 * MIN), ABSENT, Verb.NOTHING, None),
        (problem(cleared=-HOUR + MIN), ABSENT, Verb.NOTHING, None),
        (problem(cleared=-HOUR), ABSENT, Verb.RESOLVE, Event.RESOLVED),
        (problem(cleared=-HOUR, muted=True), ABSENT, Verb.RESOLVE, None),
        (problem(cleared=-HOUR, notified=None), ABSENT, Verb.RESOLVE, None),  # never announced
        (problem(stage=Stage.SUSPECTED, notified=None), ABSENT, Verb.RESOLVE, None),  # a suspicion just ends
        (problem(), WITHDRAWN, Verb.RESOLVE, None),  # token disabled or removed
    ],
)
def test_plan_problem(existing: Problem | None, cause: Cause, verb: Verb, notify: Event | None) -> None:
    action = plan_problem(existing, cause, T0, POLICY)
    assert (action.verb, action.mail) == (verb, notify)


def test_a_new_missing_operation_is_news_the_same_one_is_not() -> None:
    open_for_a = Problem(Kind.RIGHTS_MISSING, T0 - HOUR, last_notified_at=T0 - HOUR, topic="A.One")
    again = plan_problem(open_for_a, Cause(True, topic="A.One"), T0, POLICY)
    assert (again.verb, again.mail) == (Verb.SEEN, None)
    other = plan_problem(open_for_a, Cause(True, topic="B.Two"), T0, POLICY)
    assert (other.verb, other.mail) == (Verb.SEEN, Event.OPENED)
    muted = Problem(Kind.RIGHTS_MISSING, T0 - HOUR, muted=True, topic="A.One")
    assert plan_problem(muted, Cause(True, topic="B.Two"), T0, POLICY).mail is None


def test_open_carries_the_stage() -> None:
    assert plan_problem(None, SUSPECTED, T0, POLICY).stage is Stage.SUSPECTED
    assert plan_problem(None, PRESENT, T0, POLICY).stage is Stage.CONFIRMED


def test_without_a_quiet_period_a_cleared_cause_resolves_at_once() -> None:
    action = plan_problem(problem(), ABSENT, T0, Policy(quiet_period=timedelta(0)))
    assert (action.verb, action.mail) == (Verb.RESOLVE, Event.RESOLVED)


@pytest.mark.parametrize(
    ("existing", "verb"),
    [
        (problem(notified=-24 * HOUR + MIN), Verb.NOTHING),  # last mail 23h59m ago
        (problem(notified=-24 * HOUR), Verb.REMIND),  # exactly 24h ago
        (problem(notified=-24 * HOUR, muted=True), Verb.NOTHING),
        (problem(notified=-30 * HOUR, unmuted=-HOUR), Verb.NOTHING),  # unmuted an hour ago: no backlog
        (problem(notified=-30 * HOUR, unmuted=-24 * HOUR), Verb.REMIND),
        (problem(notified=None), Verb.NOTHING),  # never announced, never unmuted
        (problem(stage=Stage.SUSPECTED, notified=None), Verb.NOTHING),
        (problem(notified=-30 * HOUR, cleared=-10 * MIN), Verb.NOTHING),  # waiting out the quiet period
        (problem(notified=-30 * HOUR, cleared=-HOUR), Verb.RESOLVE),
    ],
)
def test_plan_quiet(existing: Problem, verb: Verb) -> None:
    assert plan_quiet(existing, T0, POLICY).verb is verb


def test_reminders_off() -> None:
    off = Policy(quiet_period=HOUR, reminder_interval=None)
    assert reminder_due_at(problem(notified=-100 * HOUR), off) is None
    assert plan_quiet(problem(notified=-100 * HOUR), T0, off).verb is Verb.NOTHING


def test_policy_from_settings() -> None:
    from l1nda_sync.settings import Settings

    assert Policy.from_settings(Settings()) == Policy(HOUR, 24 * HOUR)
    assert Policy.from_settings(Settings(reminder_interval=0.0, problem_quiet_period=60.0)) == Policy(MIN, None)


@pytest.mark.parametrize(
    ("state", "present"),
    [
        (TokenState.ACTIVE, {}),
        (TokenState.INVALID, {Kind.REVOKED: Stage.SUSPECTED}),
        (TokenState.REVOKED, {Kind.REVOKED: Stage.CONFIRMED}),
        (TokenState.REJECTED, {Kind.REJECTED: Stage.CONFIRMED}),
        (TokenState.RIGHTS_MISSING, {Kind.RIGHTS_MISSING: Stage.CONFIRMED}),
        (TokenState.NO_SUBSCRIPTION, {Kind.NO_SUBSCRIPTION: Stage.CONFIRMED}),
        (TokenState.UNREACHABLE, {Kind.UNREACHABLE: Stage.CONFIRMED}),
    ],
)
def test_token_causes(state: TokenState, present: dict[Kind, Stage]) -> None:
    causes = token_causes(state, "DebtorService.List_GetAll")
    assert causes is not None
    assert {k: c.stage for k, c in causes.items() if c.present} == present
    assert set(causes) == {Kind.REVOKED, Kind.REJECTED, Kind.RIGHTS_MISSING, Kind.NO_SUBSCRIPTION, Kind.UNREACHABLE,
                           Kind.CONSENT_REVOKED}  # a SOAP token's is always absent


def test_token_causes_carry_the_missing_operation_and_know_new_and_withdrawn_tokens() -> None:
    causes = token_causes(TokenState.RIGHTS_MISSING, "CompanyService.List_GetByDebtor")
    assert causes is not None
    assert causes[Kind.RIGHTS_MISSING].detail == {"missing_operation": "CompanyService.List_GetByDebtor"}
    assert token_causes(TokenState.NEW) is None, "a new (or replaced) token says nothing yet"
    for state in (TokenState.DISABLED, TokenState.REMOVED):
        withdrawn = token_causes(state)
        assert withdrawn is not None
        assert all(c.withdrawn and not c.present for c in withdrawn.values())


@pytest.mark.parametrize(
    ("kind", "who"),
    [
        (Kind.REVOKED, ("ops", "customer")),
        (Kind.RIGHTS_MISSING, ("ops", "customer")),
        (Kind.NO_SUBSCRIPTION, ("ops", "customer")),
        (Kind.UNREACHABLE, ("ops",)),
        (Kind.ACCESS_LOST, ("ops",)),
        (Kind.PROVIDER_INCIDENT, ("ops",)),
    ],
)
def test_the_customer_hears_only_what_they_must_act_on(kind: Kind, who: tuple[str, ...]) -> None:
    assert audiences(kind) == who


absent_causes = st.builds(Cause, present=st.just(False), stage=st.sampled_from(Stage),
                          detail=st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
                          withdrawn=st.booleans(), topic=st.none() | st.text(max_size=8))


@given(cause=absent_causes, now=st.datetimes(timezones=st.just(UTC)),
       quiet=st.timedeltas(min_value=timedelta(0), max_value=48 * HOUR),
       reminder=st.none() | st.timedeltas(min_value=MIN, max_value=48 * HOUR))
def test_no_open_problem_and_no_cause_is_nothing_to_do(cause: Cause, now: datetime, quiet: timedelta,
                                                       reminder: timedelta | None) -> None:
    """What lets the apply step's alert hook skip a token with no open problem and no cause present: the decision
    is NOTHING whatever the absent cause, the time and the policy."""
    assert plan_problem(None, cause, now, Policy(quiet, reminder)) == Action(Verb.NOTHING)


def test_token_causes_share_absent_causes_that_cannot_be_changed() -> None:
    """An absent cause is one shared object (a sweep would build six per token), so its detail cannot change."""
    first, second = token_causes(TokenState.ACTIVE), token_causes(TokenState.DISABLED)
    assert first is not None
    assert second is not None
    assert first[Kind.REVOKED] == Cause.absent()
    assert second[Kind.REVOKED] == Cause(False, withdrawn=True)
    with pytest.raises(TypeError):
        first[Kind.REVOKED].detail["leak"] = 1  # type: ignore[index]
