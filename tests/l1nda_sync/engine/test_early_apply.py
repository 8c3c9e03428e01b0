"""A check that moves only its token's clock is applied by its batch, and that changes nothing the run ends with.

- `moves_only_the_clock` against `decide` for any health and outcome (a property, no database);
- a differential property over two registries (the worlds of `test_apply_paths`, biased to quiet tokens): registry A
  applies the run's checks in batch first (`apply_in_batch`) and then the apply step, registry B only the apply
  step; every row but `checks.applied_in_batch` must be the same, and so must what the run reports;
- the breaker's window still reaches back to the run's first check when its batches applied it;
- the engine's runs: an unchanged run leaves its apply step nothing, its report still counts every check; a dry run
  applies nothing in batch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from l1nda_sync.alerts.hooks import AlertHooks
from l1nda_sync.engine.applying import judge_recent_by_kind, unit_of_work
from l1nda_sync.engine.early_apply import applied_in_batch, apply_in_batch, moves_only_the_clock
from l1nda_sync.engine.token_state import CheckResult, Outcome, TokenHealth, TokenState, decide
from l1nda_sync.registry import db
from tests.l1nda_sync.engine.story_world import LOGINS, StoryWorld
from tests.l1nda_sync.engine.test_apply_paths import (
    MIN,
    NOW,
    POLICY,
    SETTINGS,
    T0,
    CheckSpec,
    TokenSpec,
    WorldSpec,
    build,
    rows,
    run,
    worlds,
)

HOUR = timedelta(hours=1)
times = st.none() | st.integers(0, 120).map(lambda m: T0 - m * MIN)
healths = st.builds(
    TokenHealth,
    state=st.sampled_from(TokenState),
    consecutive_invalid=st.integers(0, 2),
    first_invalid_at=times,
    consecutive_transient=st.integers(0, 2),
    first_transient_at=times,
    missing_operation=st.none() | st.just("DebtorService.List_GetAll"),
    last_valid_at=times,
    refusal=st.none() | st.sampled_from(["invalid", "rights_missing", "no_subscription"]),
    drop_since=times,
    replaced_at=times,
)
clean = st.builds(lambda last_valid, replaced: TokenHealth(TokenState.ACTIVE, last_valid_at=last_valid,
                                                           replaced_at=replaced), times, times)


@given(health=healths | clean, outcome=st.sampled_from(Outcome), breaker=st.booleans())
def test_only_a_valid_answer_to_an_active_token_with_nothing_pending_moves_only_the_clock(
        health: TokenHealth, outcome: Outcome, breaker: bool) -> None:
    result = CheckResult(outcome, NOW)
    transition = decide(health, result, POLICY, breaker_open=breaker)
    quiet = moves_only_the_clock(result, transition)
    assert quiet == (outcome is Outcome.VALID and health == TokenHealth(
        TokenState.ACTIVE, last_valid_at=health.last_valid_at, replaced_at=health.replaced_at))
    if quiet:  # the breaker never holds it back, and it moves nothing but the clock
        assert transition == decide(health, result, POLICY, breaker_open=not breaker)
        assert transition.after == replace(health, last_valid_at=NOW)
        assert transition.next_check_at == NOW + POLICY.check_interval_healthy


QUIET = TokenSpec(TokenState.ACTIVE, "debtor", 1, None, 0, None, 0, None, None, 60, 60, None, False)


@st.composite
def quiet_worlds(draw: st.DrawFn) -> WorldSpec:
    """`test_apply_paths.worlds`, with most tokens active and clean (their level, stored reach and last
    valid answer drawn; checked and replaced long ago or never) and most checks valid, unchanged and of
    the run: quiet checks are common, not a rarity."""
    world = draw(worlds())
    long_ago = st.none() | st.integers(41, 120)
    mostly = st.sampled_from([True, True, True, False])
    tokens = [replace(QUIET, level=t.level, cache=t.cache, last_valid=t.last_valid, last_checked=draw(long_ago),
                      replaced=draw(long_ago)) if draw(mostly) else t for t in world.tokens]
    checks = [replace(c, outcome=Outcome.VALID, unchanged=True, in_run=True) if draw(mostly) else c
              for c in world.checks]
    return replace(world, tokens=tokens, checks=checks)


def _run_checks(conn: Any) -> list[int]:
    with db.reading(conn) as cur:
        cur.execute("SELECT id FROM checks WHERE run_id = 1 ORDER BY id")
        return [row[0] for row in cur.fetchall()]


def _without_in_batch(table: dict[str, list[tuple[Any, ...]]], conn: Any) -> dict[str, list[tuple[Any, ...]]]:
    """The rows, with `checks.applied_in_batch` (the one column the two ways must differ in) left out."""
    with db.reading(conn) as cur:
        cur.execute("SELECT * FROM checks LIMIT 0")
        column = [d.name for d in cur.description].index("applied_in_batch")
    return {**table, "checks": sorted((row[:column] + row[column + 1:] for row in table["checks"]), key=repr)}


def in_batch_then_apply(registries: tuple[Any, Any], world: WorldSpec, for_run: int = 1) -> tuple[int, Any, Any]:
    """Registry A: run 1's checks through `apply_in_batch` (in one transaction, as a batch stores them), then
    the apply step of `for_run` (1, or 2: run 1 died and the next run applies what it left); registry B: that apply
    step only. Returns how many A applied in batch, and both summaries."""
    early, late = registries
    build(early, world)
    build(late, world)
    with unit_of_work(early, dry_run=False) as cur:
        applied = apply_in_batch(cur, _run_checks(early), policy=POLICY, hooks=AlertHooks(SETTINGS), now=lambda: NOW)
    return applied, run(early, world, for_run=for_run), run(late, world, for_run=for_run)


def _reported_in_batch(conn: Any, for_run: int, summary: Any) -> dict[str, int]:
    with db.reading(conn) as cur:
        return applied_in_batch(cur, for_run, [a.check_id for a in summary.applied])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(world=quiet_worlds(), for_run=st.sampled_from([1, 2]))
def test_checks_applied_in_batch_leave_the_registry_as_the_apply_step_would(
        registries: tuple[Any, Any], world: WorldSpec, for_run: int) -> None:
    applied, early, late = in_batch_then_apply(registries, world, for_run)
    event(f"applied in batch: {'some' if applied else 'none'}")
    event(f"breaker: {'tripped' if late.breaker_open else 'closed'}")
    with db.reading(registries[0]) as cur:
        cur.execute("SELECT outcome, count(*) FROM checks WHERE applied_in_batch GROUP BY outcome")
        in_batch = dict(cur.fetchall())
        cur.execute("SELECT id FROM checks WHERE run_id = 1")
        of_run_1 = {row[0] for row in cur.fetchall()}
    assert sum(in_batch.values()) == applied
    assert set(in_batch) <= {"valid"}
    # What the apply step reports: its own checks and those its run's batches applied; the next run's counts a dead
    # run's too when it applies some of that run's checks (a dead run none of whose checks were left: see the note).
    if for_run == 1 or of_run_1 & {a.check_id for a in early.applied}:
        assert early.outcomes() + Counter(_reported_in_batch(registries[0], for_run, early)) == late.outcomes()
    assert len(early.applied) + applied == len(late.applied)
    assert [a for a in late.applied if a.transition.changed_state] == [
        a for a in early.applied if a.transition.changed_state]
    assert (early.verdict, early.frozen, early.skipped, early.failed) == (
        late.verdict, late.frozen, late.skipped, late.failed)
    assert _without_in_batch(rows(registries[0]), registries[0]) == _without_in_batch(rows(registries[1]),
                                                                                      registries[1])


def test_a_world_with_quiet_and_other_checks_applies_only_the_quiet_ones_in_batch(
        registries: tuple[Any, Any]) -> None:
    """A fixed world, so that the differential test is not vacuous: only token 0's and token 5's checks are quiet."""
    streak = replace(QUIET, transient_count=1, transient_since=20)
    tokens = [QUIET, QUIET, QUIET, streak, replace(QUIET, state=TokenState.INVALID, refusal=Outcome.INVALID,
                                                   invalid_count=1, invalid_since=15), QUIET, QUIET,
              replace(QUIET, replaced=1), replace(QUIET, last_checked=1)]
    checks = [
        CheckSpec(0, Outcome.VALID, 2, 1, True, False, True),  # quiet
        CheckSpec(1, Outcome.VALID, 2, 2, False, False, True),  # a new reach: the apply step's
        CheckSpec(2, Outcome.TRANSIENT, 2, 0, False, False, True),  # a failure: the apply step's
        CheckSpec(3, Outcome.VALID, 2, 1, True, False, True),  # ends a transient streak: the apply step's
        CheckSpec(4, Outcome.VALID, 2, 1, True, False, True),  # a suspected 1001 recovers: the apply step's
        CheckSpec(5, Outcome.VALID, 1, 1, True, False, True),  # quiet
        CheckSpec(6, Outcome.TRANSIENT, 5, 0, False, False, False),  # a crashed run's, pending: both are the
        CheckSpec(6, Outcome.VALID, 1, 1, True, False, True),  # apply step's, oldest first
        CheckSpec(7, Outcome.VALID, 2, 1, True, False, True),  # the token was replaced since: skipped by the
        CheckSpec(8, Outcome.VALID, 2, 1, True, False, True),  # apply step, as one a newer check superseded
    ]
    world = WorldSpec(tokens, checks, [], 1.0)
    applied, early, late = in_batch_then_apply(registries, world)
    assert applied == 2
    with db.reading(registries[0]) as cur:
        cur.execute("SELECT token_id FROM checks WHERE applied_in_batch ORDER BY token_id")
        assert cur.fetchall() == [(1,), (6,)]
    assert {(a.token_id, a.transition.after.state) for a in late.applied if a.transition.changed_state} == {
        (5, TokenState.ACTIVE)}
    assert early.outcomes() + Counter(valid=2) == late.outcomes()
    assert (early.skipped, late.skipped) == (2, 2)
    assert _without_in_batch(rows(registries[0]), registries[0]) == _without_in_batch(rows(registries[1]),
                                                                                      registries[1])


def test_the_breaker_judges_a_run_with_its_checks_applied_in_batch(registries: tuple[Any, Any]) -> None:
    """Four valid checks of run 1 made 20 minutes ago and applied by their batch, one transient check pending now:
    while run 1 runs (or left a check pending) every judge of the breaker sees all five, its own apply step and any
    other caller alike; once it has closed with nothing pending, the window reaches back 15 minutes from now."""
    conn = registries[0]
    world = WorldSpec([QUIET] * 5, [CheckSpec(n, Outcome.VALID, 20, 1, True, False, True) for n in range(4)]
                      + [CheckSpec(4, Outcome.TRANSIENT, 0, 0, False, False, True)], [], 0.5)
    build(conn, world)
    with unit_of_work(conn, dry_run=False) as cur:
        assert apply_in_batch(cur, _run_checks(conn), policy=POLICY, hooks=None, now=lambda: NOW) == 4
    kw: dict[str, Any] = {"now": NOW, "window": timedelta(minutes=15), "share": 0.5}
    with db.reading(conn) as cur:
        verdicts = [judge_recent_by_kind(cur, run_id=1, **kw).verdict, judge_recent_by_kind(cur, **kw).verdict]
    assert [(v.checked, v.failing, v.tripped) for v in verdicts] == [(5, 1, False)] * 2
    with unit_of_work(conn, dry_run=False) as cur:
        cur.execute("UPDATE runs SET state = 'success' WHERE id = 1")  # run 1 still has its transient pending
        assert judge_recent_by_kind(cur, **kw).verdict.checked == 5
        cur.execute("UPDATE checks SET applied_at = %s WHERE applied_at IS NULL", (NOW,))
        assert (judge_recent_by_kind(cur, **kw).verdict.checked, judge_recent_by_kind(cur, run_id=1, **kw).verdict
                .checked) == (1, 5)


def _checked_an_hour_ago(world: StoryWorld, *labels: str) -> None:
    """The tokens registered, links to 50101 and 50301 requested, a first run, and an hour later: all due again."""
    for label in labels:
        world.add_token(label)
    world.request(50101, 50301)
    world.run()
    world.advance(HOUR)


def _pending(world: StoryWorld) -> list[tuple[Any, ...]]:
    return world.query("SELECT token_id FROM checks WHERE applied_at IS NULL ORDER BY token_id")


def test_an_unchanged_run_is_applied_by_its_batches_and_reported_whole(world: StoryWorld) -> None:
    for label in ("horeca", "vandijk", "linde"):
        world.add_token(label)
    world.request(50101, 50301)
    assert world.run().checked == 3
    before = world.query("SELECT label, state, last_valid_at, next_check_at FROM tokens ORDER BY label")
    world.advance(HOUR)
    engine = world.new_engine()
    plan = engine.plan()
    for batch in plan.batches:
        engine.check_batch(plan.run_id, batch)
    # Before the apply step: nothing pending, every token's clock moved and its claim ended, nothing else.
    assert _pending(world) == []
    assert world.query("SELECT count(*) FROM checks WHERE run_id = %s AND applied_in_batch", plan.run_id) == [(3,)]
    after = world.query("SELECT label, state, last_valid_at, next_check_at FROM tokens ORDER BY label")
    assert [(label, state) for label, state, _, _ in after] == [(label, state) for label, state, _, _ in before]
    assert all(valid > old_valid and due > old_due
               for (_, _, valid, due), (_, _, old_valid, old_due) in zip(after, before, strict=True))
    # An applied check ends the run's claim on its token, as the apply step's do: the run is done with them.
    assert world.query("SELECT count(*) FROM tokens WHERE claimed_by IS NOT NULL") == [(0,)]
    events = world.query("SELECT count(*) FROM token_events")
    report = engine.apply_checks(plan.run_id)
    assert (report.checked, report.outcomes, report.state_changes) == (3, {"valid": 3}, [])
    stored = world.query("SELECT summary FROM runs WHERE id = %s", plan.run_id)[0][0]
    assert (stored["checked"], stored["outcomes"]) == (3, {"valid": 3})
    assert world.query("SELECT count(*) FROM token_events") == events
    assert world.query("SELECT count(*) FROM outbox") == [(0,)]


def test_a_changed_answer_and_a_dry_run_are_left_to_the_apply_step(world: StoryWorld) -> None:
    for label in ("horeca", "vandijk"):
        world.add_token(label)
    world.request(50101, 50102, 50301)
    world.run()
    world.sim.admin.set_debtor_tags(2001, remove=["Horeca"])  # horeca's reach changes, vandijk's does not
    world.advance(HOUR)
    dry = world.run(dry_run=True)
    assert (dry.checked, dry.outcomes) == (2, {"valid": 2})
    assert world.query("SELECT count(*) FROM checks WHERE applied_in_batch") == [(0,)]
    engine = world.new_engine()
    plan = engine.plan()
    for batch in plan.batches:
        engine.check_batch(plan.run_id, batch)
    assert _pending(world) == [(world.ids["horeca"],)]
    assert world.query("SELECT token_id FROM checks WHERE applied_in_batch") == [(world.ids["vandijk"],)]
    report = engine.apply_checks(plan.run_id)
    assert (report.checked, report.outcomes) == (2, {"valid": 2})
    assert report.reach_lost > 0
    assert world.link(50101)[0] == "suspended"
    assert _pending(world) == []
    assert report.state_changes == []


def test_a_batch_that_cannot_apply_its_quiet_checks_stores_them_for_the_apply_step(
        world: StoryWorld, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The batch's apply is a shortcut: a fault in it (here a hook's) undoes it alone; the checks are stored and
    the apply step applies them."""
    _checked_an_hour_ago(world, "horeca", "vandijk")
    due = world.query("SELECT id, next_check_at FROM tokens ORDER BY id")
    engine = world.new_engine()
    plan = engine.plan()
    working = AlertHooks.tokens_applied

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a hook's bug")

    monkeypatch.setattr(AlertHooks, "tokens_applied", broken)
    for batch in plan.batches:
        assert engine.check_batch(plan.run_id, batch)["valid"] == len(batch)
    assert "could not apply its quiet checks (RuntimeError)" in caplog.text
    assert len(_pending(world)) == 2
    assert world.query("SELECT count(*) FROM checks WHERE applied_in_batch") == [(0,)]
    assert world.query("SELECT id, next_check_at FROM tokens ORDER BY id") == due  # nothing moved
    monkeypatch.setattr(AlertHooks, "tokens_applied", working)
    report = engine.apply_checks(plan.run_id)
    assert (report.checked, report.outcomes, report.apply_errors) == (2, {"valid": 2}, 0)
    assert _pending(world) == []


def _crashed_run_world(share: float = 0.5) -> WorldSpec:
    """Run 1 checked for 20 minutes: tokens 0-4 valid and unchanged (applied by their batch) 20 minutes ago, token 5
    a first 1001 a minute ago; then it died before its apply step. Run 2's apply step applies what it left."""
    checks = [CheckSpec(n, Outcome.VALID, 20, 1, True, False, True) for n in range(5)]
    return WorldSpec([QUIET] * 6, [*checks, CheckSpec(5, Outcome.INVALID, 1, 0, False, False, True)], [], share)


def test_the_next_run_judges_and_reports_a_dead_runs_leftovers_with_what_its_batches_applied(
        registries: tuple[Any, Any]) -> None:
    """Found by a review: the window reached back from the oldest pending check only, so a lone leftover 1001 was
    'every token failing' (a false provider incident, the refusal held back a cycle), and no report counted the
    dead run's in-batch checks."""
    applied, early, late = in_batch_then_apply(registries, _crashed_run_world(), for_run=2)
    assert applied == 5
    assert (late.verdict.checked, late.verdict.failing, late.breaker_open) == (6, 1, False)
    assert (early.verdict, early.frozen) == (late.verdict, late.frozen)
    with db.reading(registries[0]) as cur:
        cur.execute("SELECT state FROM tokens WHERE id = 6")
        assert cur.fetchone() == ("invalid",)
    in_batch = _reported_in_batch(registries[0], 2, early)
    assert in_batch == {"valid": 5}
    assert early.outcomes() + Counter(in_batch) == late.outcomes()


def test_a_dead_runs_lone_refusal_is_judged_beside_its_valid_answers(world: StoryWorld) -> None:
    """The review's story through the engine and the simulator: run 1 checks two unchanged tokens (applied by their
    batch), 20 minutes later a reset token (its first 1001), and dies; run 2 applies the leftover beside the valid
    answers: no breaker, the refusal suspected as any first 1001 is, and run 2's report counts all three."""
    _checked_an_hour_ago(world, "horeca", "vandijk", "linde")
    crashed = world.new_engine()
    plan = crashed.plan()
    crashed.check_batch(plan.run_id, [world.ids["vandijk"], world.ids["linde"]])
    world.advance(timedelta(minutes=20))
    world.sim.admin.reset_token(LOGINS["horeca"][1])
    crashed.check_batch(plan.run_id, [world.ids["horeca"]])
    world.advance(timedelta(minutes=1))
    report = world.run()
    assert not report.breaker_tripped
    assert world.state("horeca") == "invalid"
    assert (report.checked, report.outcomes) == (3, {"valid": 2, "invalid": 1})


def test_a_manual_run_rechecks_a_token_the_running_run_is_done_with(world: StoryWorld) -> None:
    """A review noted that the batch's apply ends the claim mid-run, so a manual run naming the token checks it
    where it used to be skipped while the check waited. By design: the run is done with the token (its check is
    applied, as after an apply step); the manual check is a newer one, applied in order, and the scheduled run's
    apply step has nothing of the token left to do."""
    _checked_an_hour_ago(world, "horeca", "vandijk")
    scheduled = world.new_engine()
    plan = scheduled.plan()
    scheduled.check_batch(plan.run_id, [world.ids["vandijk"]])
    assert world.query("SELECT applied_in_batch FROM checks WHERE run_id = %s", plan.run_id) == [(True,)]
    world.advance(timedelta(minutes=2))
    manual = world.run(token_ids=(world.ids["vandijk"],))
    assert (manual.skipped, manual.checked) == ([], 1)
    scheduled.check_batch(plan.run_id, [world.ids["horeca"]])
    report = scheduled.apply_checks(plan.run_id)
    assert (report.checked, report.outcomes, report.skipped) == (2, {"valid": 2}, [])
    assert _pending(world) == []
    assert world.state("vandijk") == "active"
    assert world.query("SELECT last_checked_at FROM tokens WHERE id = %s", world.ids["vandijk"]) == [(world.now,)]
