"""Properties of the engine's judgement over time, on the pure functions only (no registry, no Nmbrs).

A small fleet gets timed answers (valid, a sharply dropped reach, refusals 1001/1002/1004 and a REST connection's
withdrawn consent, transient faults (a 42908 storm among them), unknown answers; 1 to 30 minutes apart). Every
step does what a run does: judge the breaker's window over the evidence so far (`breaker.judge_window`), decide
each checked token with `breaker_open` = the verdict (`token_state.decide`), then reconcile the links
(`links.reconcile_links`) with the tokens' stored reach, which a reach drop changes only once confirmed
(`Transition.write_reach`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from l1nda_sync.engine.breaker import Evidence, is_news, judge_window
from l1nda_sync.engine.link_rules import LinkState, LinkView, TokenView, apply_link_changes, reconcile_links
from l1nda_sync.engine.token_state import (
    REFUSAL_STREAKS,
    CheckResult,
    Outcome,
    StatePolicy,
    TokenHealth,
    TokenState,
    decide,
    is_sharp_drop,
)

POLICY = StatePolicy()
WINDOW = timedelta(minutes=15)
SHARE = 0.5
MIN_TOKENS = 5
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
BAD = frozenset({TokenState.REVOKED, TokenState.REJECTED, TokenState.RIGHTS_MISSING, TokenState.NO_SUBSCRIPTION})
FAILING = [Outcome.REACH_DROP, Outcome.INVALID, Outcome.RIGHTS_MISSING, Outcome.NO_SUBSCRIPTION,
           Outcome.TRANSIENT, Outcome.UNKNOWN, Outcome.DATA_NOT_ALLOWED, Outcome.CONSENT_REVOKED]
ANY_OUTCOME = [Outcome.VALID, *FAILING]
REFUSALS = {Outcome.INVALID: TokenState.REVOKED, Outcome.RIGHTS_MISSING: TokenState.RIGHTS_MISSING,
            Outcome.NO_SUBSCRIPTION: TokenState.NO_SUBSCRIPTION, Outcome.CONSENT_REVOKED: TokenState.REVOKED}


def companies_of(token: int, size: int) -> frozenset[int]:
    return frozenset(100 * (token + 1) + j for j in range(size))


def dropped(full: frozenset[int]) -> frozenset[int]:
    """The reach a sharply dropped answer shows: to zero below drop_min_companies, else fewer than half."""
    n = len(full)
    keep = 0 if n < POLICY.drop_min_companies else (n - 1) // 2
    after = frozenset(sorted(full)[:keep])
    assert is_sharp_drop(n, len(after), POLICY)
    return after


@dataclass
class Sim:
    sizes: list[int]
    never_worked: frozenset[int] = frozenset()
    now: datetime = T0
    health: dict[int, TokenHealth] = field(default_factory=dict)
    reach: dict[int, frozenset[int]] = field(default_factory=dict)
    links: list[LinkView] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    history: dict[int, list[tuple[datetime, Outcome]]] = field(default_factory=dict)
    suspensions: list[tuple[int, int, str]] = field(default_factory=list)  # (token, company, reason)
    tripped_steps: int = 0

    def __post_init__(self) -> None:
        link_id = 0
        for t, size in enumerate(self.sizes):
            worked = t not in self.never_worked
            self.health[t] = TokenHealth(TokenState.ACTIVE if worked else TokenState.NEW,
                                         last_valid_at=T0 - timedelta(hours=1) if worked else None)
            self.reach[t] = companies_of(t, size) if worked else frozenset()
            self.history[t] = []
            for c in sorted(companies_of(t, size)):
                link_id += 1
                self.links.append(LinkView(link_id, c, LinkState.ACTIVE if worked else LinkState.PENDING,
                                           t if worked else None))

    def step(self, minutes: int, answers: dict[int, Outcome]) -> tuple[bool, list[tuple[int, TokenState]]]:
        """One run at now + minutes checking `answers`; returns (tripped, [(token, state before)] moved)."""
        self.now += timedelta(minutes=minutes)
        for t, outcome in answers.items():
            self.evidence.append(Evidence(t, self.now, outcome, is_news(self.health[t].state.value, outcome)))
            self.history[t].append((self.now, outcome))
        # The news flag is the token's state when the window is judged (as judge_recent joins tokens now).
        evidence = [replace(e, news=is_news(self.health[e.token_id].state.value, e.outcome)) for e in self.evidence
                    if e.at > self.now - WINDOW]
        verdict = judge_window(evidence, now=self.now, window=WINDOW, share=SHARE)
        self.tripped_steps += verdict.tripped
        moved = []
        for t, outcome in answers.items():
            before = self.health[t]
            transition = decide(before, CheckResult(outcome, self.now, "CompanyService.List_GetAll"), POLICY,
                                breaker_open=verdict.tripped)
            self.health[t] = transition.after
            if transition.changed_state:
                moved.append((t, before.state))
            full = companies_of(t, self.sizes[t])
            if outcome is Outcome.VALID:
                self.reach[t] = full
            elif outcome is Outcome.REACH_DROP and transition.write_reach:
                self.reach[t] = dropped(full)
        self.reconcile(breaker_open=verdict.tripped)
        return verdict.tripped, moved

    def reconcile(self, *, breaker_open: bool) -> list:
        tokens = {t: TokenView(t, "accountant", h.state, None, h.last_valid_at) for t, h in self.health.items()}
        reachers: dict[int, list[int]] = {}
        for t, companies in self.reach.items():
            for c in companies:
                reachers.setdefault(c, []).append(t)
        changes = reconcile_links(self.links, tokens, reachers, breaker_open=breaker_open)
        for c in changes:
            if c.to_state is LinkState.SUSPENDED:
                link = next(lk for lk in self.links if lk.id == c.link_id)
                self.suspensions.append((c.from_token, link.company_id, str(c.reason)))
        self.links = apply_link_changes(self.links, changes)
        return changes

    def confirmed_somewhere(self, token: int) -> bool:
        """Whether the token's history holds two answers of one failing kind at least the spacing apart."""
        seen: dict[Outcome, datetime] = {}
        for at, outcome in self.history[token]:
            if outcome is Outcome.VALID:
                continue
            first = seen.setdefault(REFUSAL_STREAKS.get(outcome, outcome), at)
            if at - first >= POLICY.revoke_min_spacing:
                return True
        return False


# -- strategies ------------------------------------------------------------------------------------------------
sizes = st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=8)
gaps = st.integers(min_value=1, max_value=30)


@st.composite
def sequences(draw: st.DrawFn, outcomes: list[Outcome] = ANY_OUTCOME, max_steps: int = 30) -> tuple:
    fleet = draw(sizes)
    steps = draw(st.lists(
        st.tuples(gaps, st.dictionaries(st.integers(0, len(fleet) - 1), st.sampled_from(outcomes), min_size=1)),
        max_size=max_steps))
    return fleet, steps


@st.composite
def single_fault_sequences(draw: st.DrawFn) -> tuple:
    """Any number of valid answers, but at most one non-valid answer per token."""
    fleet, steps = draw(sequences())
    used: set[int] = set()
    out = []
    for gap, answers in steps:
        fixed = {}
        for t, outcome in answers.items():
            if outcome is not Outcome.VALID and t in used:
                outcome = Outcome.VALID
            elif outcome is not Outcome.VALID:
                used.add(t)
            fixed[t] = outcome
        out.append((gap, fixed))
    return fleet, out


# -- properties ------------------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(single_fault_sequences())
def test_a_link_never_suspends_on_a_single_answer(case: tuple) -> None:
    fleet, steps = case
    sim = Sim(fleet)
    for gap, answers in steps:
        sim.step(gap, answers)
        assert all(sim.health[t].state not in BAD for t in sim.health)
        assert all(sim.health[t].state is not TokenState.UNREACHABLE for t in sim.health)
    assert sim.suspensions == []


@settings(max_examples=200, deadline=None)
@given(sequences())
def test_every_suspension_is_a_confirmed_verdict_or_a_confirmed_loss(case: tuple) -> None:
    fleet, steps = case
    sim = Sim(fleet)
    for gap, answers in steps:
        before = len(sim.suspensions)
        sim.step(gap, answers)
        for token, company, reason in sim.suspensions[before:]:
            state = sim.health[token].state
            lost = company not in sim.reach[token]
            assert state in BAD or lost, (token, company, reason, state)
            # Neither a verdict nor a loss of reach comes from one answer.
            assert sim.confirmed_somewhere(token), (token, sim.history[token])


@st.composite
def real_changes(draw: st.DrawFn) -> tuple:
    """A target token repeats one refusal (or a sharp drop) >= 2 times spaced >= the spacing, while 4 or more
    other tokens answer validly in the same steps; before it, any valid answers and single faults of others."""
    others = draw(st.integers(min_value=4, max_value=7))
    fleet = [draw(st.integers(1, 6)) for _ in range(others + 1)]
    change = draw(st.sampled_from([*REFUSALS, Outcome.REACH_DROP]))
    never_worked = draw(st.booleans()) and change in (Outcome.INVALID, Outcome.CONSENT_REVOKED)
    prefix = draw(st.lists(st.tuples(gaps, st.dictionaries(st.integers(1, others), st.just(Outcome.VALID),
                                                           min_size=1)), max_size=8))
    repeats = draw(st.integers(min_value=2, max_value=4))
    spacings = draw(st.lists(st.integers(min_value=10, max_value=30), min_size=repeats, max_size=repeats))
    witnesses = draw(st.lists(st.lists(st.integers(1, others), min_size=4, max_size=others, unique=True),
                              min_size=repeats, max_size=repeats))
    steps = list(prefix)
    for gap, valid in zip(spacings, witnesses, strict=True):
        steps.append((gap, {0: change, **dict.fromkeys(valid, Outcome.VALID)}))
    return fleet, change, never_worked, steps


@settings(max_examples=200, deadline=None)
@given(real_changes())
def test_a_confirmed_real_change_ends_in_the_right_state(case: tuple) -> None:
    fleet, change, never_worked, steps = case
    sim = Sim(fleet, never_worked=frozenset({0}) if never_worked else frozenset())
    for gap, answers in steps:
        tripped, _ = sim.step(gap, answers)
        assert not tripped
    state = sim.health[0].state
    lost = companies_of(0, fleet[0]) - dropped(companies_of(0, fleet[0]))
    if change is Outcome.REACH_DROP:
        assert state is TokenState.ACTIVE
        assert sim.reach[0] == dropped(companies_of(0, fleet[0]))
        assert {(t, c) for t, c, _ in sim.suspensions} == {(0, c) for c in lost}
    elif never_worked:
        assert state is TokenState.REJECTED
        assert sim.suspensions == []  # it never served a link
    else:
        assert state is REFUSALS[change]
        assert {(t, c, r) for t, c, r in sim.suspensions} == {
            (0, c, REFUSALS[change].value) for c in companies_of(0, fleet[0])}
    # Nobody else moved.
    assert all(sim.health[t].state is TokenState.ACTIVE for t in range(1, len(fleet)))


@st.composite
def provider_failures(draw: st.DrawFn) -> tuple:
    """Any history, then a provider-wide failure: one step where every token fails (any failure class, mixed),
    then any steps in which every answer fails."""
    fleet, prefix = draw(sequences(max_steps=12))
    n = len(fleet)
    first = (draw(gaps), {t: draw(st.sampled_from(FAILING)) for t in range(n)})
    later = draw(st.lists(st.tuples(gaps, st.dictionaries(st.integers(0, n - 1), st.sampled_from(FAILING),
                                                          min_size=1)), max_size=20))
    return fleet, prefix, [first, *later]


@settings(max_examples=200, deadline=None)
@given(provider_failures())
def test_a_provider_wide_failure_never_moves_a_token(case: tuple) -> None:
    fleet, prefix, incident = case
    sim = Sim(fleet)
    for gap, answers in prefix:
        sim.step(gap, answers)
    sim.reconcile(breaker_open=False)  # converged before the incident
    states = {t: h.state for t, h in sim.health.items()}
    reach = dict(sim.reach)
    links = list(sim.links)
    suspended = len(sim.suspensions)
    for gap, answers in incident:
        tripped, moved = sim.step(gap, answers)
        assert moved == [], (moved, answers)
        # Tripped, unless every token already shows the failure it answers (no news: nothing to judge).
        if any(is_news(states[t].value, o) for t, o in answers.items()):
            assert tripped
    assert {t: h.state for t, h in sim.health.items()} == states
    assert sim.reach == reach
    assert sim.links == links
    assert len(sim.suspensions) == suspended


@st.composite
def throttle_storms(draw: st.DrawFn) -> tuple:
    """Any history, then a 42908 storm (`Throttled`, transient) of any length: every answer of every token is
    throttled, or some tokens still answer validly between the throttled ones."""
    fleet, prefix = draw(sequences(max_steps=8))
    n = len(fleet)
    outcomes = st.sampled_from([Outcome.TRANSIENT, Outcome.TRANSIENT, Outcome.VALID]) if draw(st.booleans()) \
        else st.just(Outcome.TRANSIENT)
    storm = draw(st.lists(st.tuples(st.integers(1, 60), st.dictionaries(st.integers(0, n - 1), outcomes,
                                                                        min_size=1)), min_size=1, max_size=40))
    return fleet, prefix, storm


@settings(max_examples=200, deadline=None)
@given(throttle_storms())
def test_a_throttling_storm_never_revokes_and_never_suspends(case: tuple) -> None:
    """42908 (and 42909) are transient: however long the storm, no token becomes revoked, rejected or refused,
    and no link moves because of it (at worst a token is `unreachable` for ops, which keeps its links)."""
    from l1nda_sync.engine.outcomes import outcome_of
    from l1nda_sync.nmbrs.errors import QuotaExceeded, Throttled

    assert outcome_of(Throttled("429 42908 Too_Many_Calls", code=42908))[0] is Outcome.TRANSIENT
    assert outcome_of(QuotaExceeded("429 42909 Quota_Exceeded", code=42909))[0] is Outcome.TRANSIENT
    fleet, prefix, storm = case
    sim = Sim(fleet)
    for gap, answers in prefix:
        sim.step(gap, answers)
    sim.reconcile(breaker_open=False)
    states = {t: h.state for t, h in sim.health.items()}
    suspended = len(sim.suspensions)
    for gap, answers in storm:
        sim.step(gap, answers)
        for t, h in sim.health.items():
            assert h.state is states[t] or h.state in (TokenState.ACTIVE, TokenState.UNREACHABLE), (t, h.state)
            if h.state in BAD:
                assert states[t] is h.state, "a verdict from before the storm may stay; none is made in it"
    assert len(sim.suspensions) == suspended


@st.composite
def single_consent_refusals(draw: st.DrawFn) -> tuple:
    """Valid and transient answers, with at most one withdrawn-consent answer per token (REST connections)."""
    fleet, steps = draw(sequences(outcomes=[Outcome.VALID, Outcome.TRANSIENT, Outcome.CONSENT_REVOKED]))
    used: set[int] = set()
    out = []
    for gap, answers in steps:
        fixed = {}
        for t, outcome in answers.items():
            if outcome is Outcome.CONSENT_REVOKED and t in used:
                outcome = Outcome.TRANSIENT
            elif outcome is Outcome.CONSENT_REVOKED:
                used.add(t)
            fixed[t] = outcome
        out.append((gap, fixed))
    return fleet, out


@settings(max_examples=200, deadline=None)
@given(single_consent_refusals(), st.booleans())
def test_a_withdrawn_consent_is_never_confirmed_by_one_answer(case: tuple, never_worked: bool) -> None:
    fleet, steps = case
    sim = Sim(fleet, never_worked=frozenset({0}) if never_worked else frozenset())
    for gap, answers in steps:
        sim.step(gap, answers)
        assert all(h.state not in (TokenState.REVOKED, TokenState.REJECTED) for h in sim.health.values())
    assert sim.suspensions == []
