"""The engine's stories, told against the Nmbrs simulator over HTTP and a real PostgreSQL registry.

Each story changes the simulated Nmbrs the way customers and Nmbrs do, moves the story clock to when the
tokens are due, and runs the engine exactly as the DAG's tasks call it.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from tests.l1nda_sync.engine.story_world import LOGINS, MIN, StoryWorld

HOUR = timedelta(hours=1)
CONFIRM = timedelta(minutes=11)  # past check_interval_failed and revoke_min_spacing (10 min)


def user(label: str) -> str:
    return LOGINS[label][1]


BYSTANDER = "linde"  # a healthy token beside the story's: one token alone cannot tell its change from an outage


def _started(world: StoryWorld, *labels: str, links: tuple[int, ...] = ()) -> None:
    for label in (*labels, *(() if BYSTANDER in labels else (BYSTANDER,))):
        world.add_token(label)
    world.request(*links)
    report = world.run()
    assert report.checked == len(labels) + (BYSTANDER not in labels)
    assert all(world.state(label) == "active" for label in labels)


def test_first_run_activates_the_links_the_tokens_reach(world: StoryWorld) -> None:
    _started(world, "horeca", "vandijk", links=(50101, 50301, 50302, 50701))
    assert world.link(50101)[:2] == ("active", "horeca")
    assert world.link(50301)[:2] == ("active", "vandijk")
    assert world.link(50302)[0] == "pending"  # outside the client login's company filter
    assert world.link(50701)[0] == "pending"  # Bouw: outside the Horeca master's tag filter
    assert world.reach("horeca") == {50101, 50102, 50201, 50401}
    assert world.reach("vandijk") == {50301}
    # Not due again for an hour: a second run checks nothing.
    assert world.run().checked == 0


@pytest.mark.parametrize("how", ["reset", "deleted"])
def test_token_reset_or_login_deleted_is_revoked_after_confirmation(world: StoryWorld, how: str) -> None:
    _started(world, "horeca", links=(50101, 50201))
    if how == "reset":
        world.sim.admin.reset_token(user("horeca"))
    else:
        world.sim.admin.delete_login(user("horeca"))

    world.advance(HOUR)
    report = world.run()
    assert report.outcomes == {"invalid": 1, "valid": 1}
    assert world.state("horeca") == "invalid"  # one 1001 is not yet a revocation
    assert world.link(50101)[0] == "active"  # nor a reason to drop links
    assert "revoked" not in world.problems("horeca") or world.query(
        "SELECT stage FROM problems WHERE kind = 'revoked'")[0][0] == "suspected"

    world.advance(CONFIRM)
    world.run()
    assert world.state("horeca") == "revoked"
    assert world.link(50101)[::2] == ("suspended", "revoked")
    assert world.link(50201)[::2] == ("suspended", "revoked")
    assert "revoked" in world.problems("horeca")
    # A failed discovery keeps the previous reach: an error never reads as "lost everything".
    assert world.reach("horeca") == {50101, 50102, 50201, 50401}
    events = [r[0] for r in world.query(
        "SELECT to_state FROM token_events WHERE token_id = %s AND actor = 'sync' ORDER BY id", world.ids["horeca"])]
    assert events[-2:] == ["invalid", "revoked"]


def test_a_1001_that_recovers_before_confirmation_is_not_a_revocation(world: StoryWorld) -> None:
    _started(world, "horeca", links=(50101,))
    world.sim.admin.delete_login(user("horeca"))
    world.advance(HOUR)
    world.run()
    assert world.state("horeca") == "invalid"

    world.sim.admin.restore_login(user("horeca"))
    world.advance(CONFIRM)
    world.run()
    assert world.state("horeca") == "active"
    assert world.link(50101)[:2] == ("active", "horeca")
    assert world.query("SELECT count(*) FROM link_events WHERE to_state = 'suspended'")[0][0] == 0
    assert not world.problems("horeca")
    assert world.query("SELECT count(*) FROM outbox")[0][0] == 0  # nothing was announced
    # The history shows the episode.
    states = [r[0] for r in world.query(
        "SELECT to_state FROM token_events WHERE token_id = %s AND actor = 'sync' ORDER BY id", world.ids["horeca"])]
    assert states[-2:] == ["invalid", "active"]


def test_template_switches_list_getall_off_rights_missing_names_the_operation(world: StoryWorld) -> None:
    _started(world, "horeca", links=(50101,))
    world.sim.admin.set_operation_allowed(user("horeca"), "CompanyService", "List_GetAll", False)
    world.advance(HOUR)
    report = world.run()
    assert world.state("horeca") == "active"  # one 1002 is not yet a verdict
    assert [s["suspected"] for s in report.suspected] == ["rights_missing"]
    assert "suspected, not yet confirmed" in report.table()
    assert world.link(50101)[:2] == ("active", "horeca")
    assert not world.problems("horeca")
    world.advance(CONFIRM)
    world.run()
    assert world.state("horeca") == "rights_missing"
    (missing,) = world.query("SELECT missing_operation FROM tokens WHERE id = %s", world.ids["horeca"])[0]
    assert "CompanyService" in missing
    assert "List_GetAll" in missing
    assert world.link(50101)[::2] == ("suspended", "rights_missing")
    assert "rights_missing" in world.problems("horeca")

    world.sim.admin.set_operation_allowed(user("horeca"), "CompanyService", "List_GetAll", True)
    world.advance(CONFIRM)
    world.run()
    assert world.state("horeca") == "active"
    assert world.link(50101)[:2] == ("active", "horeca")


def test_debtor_loses_the_tag_its_master_filters_on(world: StoryWorld) -> None:
    _started(world, "horeca", links=(50101, 50102, 50201))
    world.sim.admin.set_debtor_tags(2001, remove=["Horeca"])
    world.advance(HOUR)
    report = world.run()
    assert world.state("horeca") == "active"
    assert world.link(50101)[::2] == ("suspended", "tag_or_filter")
    assert world.link(50102)[::2] == ("suspended", "tag_or_filter")
    assert world.link(50201)[:2] == ("active", "horeca")
    assert report.reach_lost == 2
    assert report.links_suspended == 2
    lost = world.query("SELECT entity, entity_id FROM reach_events WHERE change = 'lost' ORDER BY entity, entity_id")
    assert lost == [("company", 50101), ("company", 50102), ("debtor", 2001)]
    assert "access_lost" in world.problems("horeca")


def test_a_tag_is_added_and_pending_links_activate(world: StoryWorld) -> None:
    _started(world, "horeca", links=(50701, 50702))
    assert world.link(50701)[0] == "pending"
    world.sim.admin.set_debtor_tags(2007, add=["Horeca"])
    world.advance(HOUR)
    report = world.run()
    assert world.link(50701)[:2] == ("active", "horeca")
    assert world.link(50702)[:2] == ("active", "horeca")
    assert report.links_activated == 2
    assert report.reach_gained == 2
    tags = world.query("SELECT detail FROM reach_events WHERE change = 'tags_changed' AND entity_id = 2007")
    assert tags == [] or "Horeca" in str(tags)


def test_a_company_moves_to_another_debtor(world: StoryWorld) -> None:
    _started(world, "all", "horeca", links=(50102,))
    world.sim.admin.move_company(50102, 2003)  # from a Horeca debtor to a Retail one
    world.advance(HOUR)
    world.run()
    # The Horeca master lost it at once; the link is served by the master that still reaches it.
    assert 50102 not in world.reach("horeca")
    assert 50102 in world.reach("all")
    assert world.link(50102)[:2] == ("active", "all")
    assert world.query("SELECT count(*) FROM link_events WHERE to_state = 'suspended'")[0][0] == 0

    # The company-to-debtor mapping is refreshed in full once a day (mapping_full_refresh): then the
    # master that kept the company sees it under its new debtor.
    world.advance(timedelta(seconds=world.settings.mapping_full_refresh))
    world.run()
    (debtor,) = world.query("SELECT debtor_id FROM reach_companies WHERE token_id = %s AND company_id = 50102",
                            world.ids["all"])[0]
    assert debtor == 2003
    moved = world.query("SELECT token_id FROM reach_events WHERE change = 'moved' AND entity_id = 50102")
    assert moved == [(world.ids["all"],)]
    assert world.link(50102)[:2] == ("active", "all")


def test_a_second_token_takes_over_instead_of_suspension(world: StoryWorld) -> None:
    _started(world, "all", "horeca", links=(50101, 50201))
    serving = world.link(50101)[1]
    other = "all" if serving == "horeca" else "horeca"
    world.sim.admin.reset_token(user(serving))
    world.advance(HOUR)
    world.run()
    assert world.link(50101)[:2] == ("active", serving)  # invalid, not yet revoked: keeps its links
    world.advance(CONFIRM)
    world.run()
    assert world.state(serving) == "revoked"
    assert world.link(50101) == ("active", other, "failover")
    assert world.link(50201)[:2] == ("active", other)
    assert world.query("SELECT count(*) FROM link_events WHERE to_state = 'suspended'")[0][0] == 0


def test_company_ended_suspends_with_that_reason(world: StoryWorld) -> None:
    _started(world, "vandijk", links=(50301,))
    world.sim.admin.end_company(50301)
    world.advance(HOUR)
    report = world.run()
    # Its only company gone is a drop to zero: suspect until a second answer confirms it.
    assert world.link(50301)[:2] == ("active", "vandijk")
    assert [s["suspected"] for s in report.suspected] == ["reach_drop"]
    assert world.query("SELECT count(*) FROM outbox")[0][0] == 0
    world.advance(CONFIRM)
    world.run()
    # A client login sees neither tags nor ended companies: the company filter changed or the company ended.
    assert world.link(50301)[::2] == ("suspended", "filter_or_company_ended")


def test_debtor_level_token_is_preferred_for_a_new_link(world: StoryWorld) -> None:
    _started(world, "all", "vandijk", links=(50301,))
    assert world.link(50301)[:2] == ("active", "vandijk")


TOKENS_FOR_THE_BREAKER = ("all", "horeca", "vandijk", "linde")


def _five_tokens(world: StoryWorld) -> None:
    world.sim.admin.add_login("bakkerij-degraaf", username="extra@bakkerij-degraaf.example", level="client",
                              token="b" * 32, debtor=3001, company_filter=[60101, 60102])
    world.add_token("bakkerij", username="extra@bakkerij-degraaf.example", token="b" * 32, level="debtor")
    for label in TOKENS_FOR_THE_BREAKER:
        world.add_token(label)
    world.request(50101, 50301, 60101)
    assert world.run().outcomes == {"valid": 5}


@pytest.mark.parametrize("outage", ["fault_9999", "http_503"])
def test_provider_outage_trips_the_breaker_and_moves_nothing(world: StoryWorld, outage: str) -> None:
    _five_tokens(world)
    before = world.snapshot()
    world.sim.admin.inject_fault(outage)
    for _ in range(4):
        world.advance(7 * HOUR)  # past unreachable_after, more than once
        report = world.run(force=True)
        assert report.checked == 5
        assert report.breaker_tripped
    after = world.snapshot()
    assert [r[:2] for r in after["tokens"]] == [r[:2] for r in before["tokens"]]  # no token moved
    assert after["links"] == before["links"]  # no link moved
    incidents = world.query("SELECT count(*) FROM problems WHERE kind = 'provider_incident' AND state = 'open'")
    assert incidents == [(1,)]  # one incident, not one per run or per token

    world.sim.admin.clear_faults()
    world.advance(HOUR)
    report = world.run(force=True)
    assert not report.breaker_tripped
    assert report.outcomes == {"valid": 5}


def test_provider_wide_1001_trips_the_breaker_no_token_moves_toward_revoked(world: StoryWorld) -> None:
    _five_tokens(world)
    for label in (*TOKENS_FOR_THE_BREAKER, "bakkerij"):
        world.sim.admin.delete_login(user(label) if label in LOGINS else "extra@bakkerij-degraaf.example")
    for _ in range(3):
        world.advance(CONFIRM)
        report = world.run(force=True)
        assert report.breaker_tripped
    assert {world.state(label) for label in world.ids} == {"active"}
    assert world.query("SELECT count(*) FROM links WHERE state = 'suspended'")[0][0] == 0


def test_transient_faults_keep_state_and_links_until_unreachable(world: StoryWorld) -> None:
    _started(world, "horeca", "vandijk", links=(50101, 50301))
    world.sim.admin.inject_fault("http_502", username=user("horeca"))
    world.advance(HOUR)
    report = world.run()
    assert report.outcomes.get("transient") == 1
    assert world.state("horeca") == "active"
    assert world.link(50101)[:2] == ("active", "horeca")
    assert world.reach("horeca") == {50101, 50102, 50201, 50401}
    for _ in range(8):
        world.advance(HOUR)
        world.run(token_ids=(world.ids["horeca"],), force=True)
    assert world.state("horeca") == "unreachable"
    assert world.link(50101)[:2] == ("active", "horeca")  # a transient fault never moves a link
    assert world.state("vandijk") == "active"
    assert "unreachable" in world.problems("horeca")


def test_a_fault_on_one_token_never_stops_the_others(world: StoryWorld) -> None:
    world.sim.admin.inject_fault("malformed", username=user("horeca"))
    world.add_token("horeca")
    world.add_token("vandijk")
    world.request(50301)
    report = world.run()
    assert report.checked == 2
    assert world.state("vandijk") == "active"
    assert world.link(50301)[:2] == ("active", "vandijk")
    assert world.state("horeca") == "new"


def test_dry_run_computes_everything_and_writes_nothing(world: StoryWorld) -> None:
    world.add_token("horeca")
    world.request(50101)
    before = world.counts()
    report = world.run(dry_run=True)
    assert report.dry_run
    assert report.checked == 1
    assert report.links_activated == 1
    assert report.reach_gained == 4
    assert world.counts() == before
    assert world.state("horeca") == "new"
    assert world.link(50101)[0] == "pending"
    # ... and the real run after it still finds the token due.
    assert world.run().checked == 1
    assert world.link(50101)[0] == "active"


def test_two_runs_at_once_never_check_or_apply_a_token_twice(world: StoryWorld) -> None:
    for label in ("all", "horeca", "vandijk", "linde"):
        world.add_token(label)
    world.request(50101, 50301, 50501)
    engines = [world.new_engine(), world.new_engine()]
    barrier = threading.Barrier(2)
    reports: list = [None, None]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(10)
            reports[i] = engines[i].run_once()
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    checks = world.query("SELECT token_id, count(*) FROM checks GROUP BY token_id ORDER BY token_id")
    assert [c for _t, c in checks] == [1, 1, 1, 1]  # each token probed once, by one of the runs
    applied = world.query("SELECT count(*) FROM token_events WHERE actor = 'sync' AND to_state = 'active'")
    assert applied == [(4,)]
    assert {world.state(label) for label in world.ids} == {"active"}
    activations = world.query("SELECT link_id, count(*) FROM link_events WHERE to_state = 'active' GROUP BY link_id")
    assert sorted(c for _l, c in activations) == [1, 1, 1]


def test_a_crash_between_check_and_apply_converges_on_rerun(world: StoryWorld) -> None:
    _started(world, "horeca", "vandijk", links=(50101, 50102, 50301))
    world.sim.admin.set_debtor_tags(2001, remove=["Horeca"])
    world.advance(HOUR)

    crashed = world.new_engine()
    plan = crashed.plan()
    for batch in plan.batches:
        crashed.check_batch(plan.run_id, batch)
    # ... the worker dies here: checks are stored; only those that moved nothing but a token's clock (the two
    # unchanged tokens') were applied by their batch, the tag change's is pending.
    assert world.link(50101)[0] == "active"
    assert world.query("SELECT token_id FROM checks WHERE applied_at IS NULL") == [(world.ids["horeca"],)]
    assert world.query("SELECT count(*) FROM checks WHERE applied_in_batch")[0][0] == 2

    world.advance(timedelta(minutes=10))
    world.run()  # the next run applies what the crashed one left (and claims nothing new yet)
    converged = world.snapshot()
    assert world.link(50101)[::2] == ("suspended", "tag_or_filter")
    assert world.query("SELECT count(*) FROM checks WHERE applied_at IS NULL")[0][0] == 0

    world.run()  # and running again changes nothing
    assert world.snapshot() == converged
    assert world.query("SELECT state FROM runs WHERE id = %s", plan.run_id) == [("running",)]
    world.advance(2 * HOUR)
    world.run()  # once older than any run may take, the dead run is closed
    assert world.query("SELECT state FROM runs WHERE id = %s", plan.run_id) == [("abandoned",)]
    assert world.query("SELECT count(*) FROM runs WHERE state = 'running'") == [(0,)]


def test_a_check_that_cannot_be_applied_never_stops_the_others(world: StoryWorld) -> None:
    world.add_token("horeca")
    world.add_token("vandijk")
    world.request(50101, 50301)
    engine = world.new_engine()
    plan = engine.plan()
    for batch in plan.batches:
        engine.check_batch(plan.run_id, batch)
    # Corrupt one stored probe, as a bug or a bad row would.
    world.query("UPDATE checks SET probe = '{\"debtors\": 5}'::jsonb WHERE token_id = %s RETURNING id",
                world.ids["horeca"])
    report = engine.apply_checks(plan.run_id)
    assert report.apply_errors == 1
    assert "checks NOT applied" in report.table()
    assert world.state("vandijk") == "active"
    assert world.link(50301)[:2] == ("active", "vandijk")
    assert world.state("horeca") == "new"  # its transaction was rolled back
    assert world.query("SELECT count(*) FROM checks WHERE applied_at IS NULL") == [(1,)]
    # A newer check of the token supersedes the broken one.
    world.advance(MIN)
    world.run(token_ids=(world.ids["horeca"],), force=True)
    assert world.state("horeca") == "active"
    world.run()  # the broken check, now older than the token's last check, is marked superseded
    assert world.query("SELECT count(*) FROM checks WHERE applied_at IS NULL") == [(0,)]


def test_applied_checks_older_than_the_retention_are_pruned(world: StoryWorld) -> None:
    _started(world, "horeca", "vandijk")
    assert world.query("SELECT count(*) FROM checks") == [(3,)]  # with the bystander
    world.advance(timedelta(seconds=world.settings.check_retention) + HOUR)
    report = world.run()
    assert report.checked == 3
    assert report.checks_pruned == 3  # the first run's checks; this run's stay
    assert world.query("SELECT count(*) FROM checks") == [(3,)]
    assert {world.state(label) for label in world.ids} == {"active"}
