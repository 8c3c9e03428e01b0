"""No false alarms, told against the simulator over HTTP: odd answers that must move nothing, the changes that
must still move, manual runs that meet a scheduled run, and a worker without the registry's key."""

from __future__ import annotations

from datetime import timedelta

import pytest

from l1nda_sync.engine.checking import KeysCannotDecrypt
from l1nda_sync.engine.sync import RunAborted, SyncEngine
from l1nda_sync.registry.crypto import generate_key
from tests.l1nda_sync.engine.story_world import LOGINS, StoryWorld

HOUR = timedelta(hours=1)
CONFIRM = timedelta(minutes=11)


def _fleet(world: StoryWorld, *labels: str, links: tuple[int, ...] = ()) -> None:
    for label in labels:
        world.add_token(label)
    world.request(*links)
    world.run()
    assert {world.state(label) for label in labels} == {"active"}


def _mails(world: StoryWorld) -> int:
    return world.query("SELECT count(*) FROM outbox")[0][0]


def _suspensions(world: StoryWorld) -> int:
    return world.query("SELECT count(*) FROM link_events WHERE to_state = 'suspended'")[0][0]


@pytest.mark.parametrize("kind", ["empty_list", "missing_result"])
def test_one_empty_or_resultless_company_list_moves_nothing(world: StoryWorld, kind: str) -> None:
    _fleet(world, "horeca", "vandijk", "linde", links=(50101, 50201, 50301))
    world.sim.admin.inject_fault(kind, username=LOGINS["horeca"][1], service="CompanyService", count=1)
    world.advance(HOUR)
    report = world.run()
    assert world.link(50101)[:2] == ("active", "horeca")
    assert world.link(50201)[:2] == ("active", "horeca")
    assert world.reach("horeca") == {50101, 50102, 50201, 50401}, "the stored reach stays"
    if kind == "empty_list":
        assert [s["suspected"] for s in report.suspected] == ["reach_drop"]
    world.advance(CONFIRM)
    world.run()  # Nmbrs answers normally again: the suspicion clears
    world.advance(HOUR)
    world.run()
    assert world.reach("horeca") == {50101, 50102, 50201, 50401}
    assert _suspensions(world) == 0
    assert _mails(world) == 0
    assert world.query("SELECT drop_since FROM tokens WHERE id = %s", world.ids["horeca"]) == [(None,)]


def test_every_token_answering_an_empty_list_is_an_incident_not_lost_reach(world: StoryWorld) -> None:
    labels = ("all", "horeca", "vandijk", "linde")
    _fleet(world, *labels, links=(50101, 50301, 50501))
    world.sim.admin.inject_fault("empty_list", service="CompanyService")
    for _ in range(4):
        world.advance(CONFIRM)
        world.run(force=True)
    assert world.reports[-1].breaker_tripped
    assert {world.state(label) for label in labels} == {"active"}
    assert _suspensions(world) == 0
    kinds = {r[0] for r in world.query("SELECT kind FROM problems")}
    assert kinds == {"provider_incident"}
    assert world.query("SELECT count(*) FROM outbox WHERE audience = 'customer'") == [(0,)]
    world.sim.admin.clear_faults()
    world.advance(HOUR)
    world.run(force=True)
    assert world.reach("horeca") == {50101, 50102, 50201, 50401}
    assert _suspensions(world) == 0


def test_a_single_token_failing_alone_is_held_not_revoked(world: StoryWorld) -> None:
    """With one token there is nothing to compare with: a 1001 is held as a (silent, then announced) provider
    incident rather than mailed to the customer as a revocation."""
    _fleet(world, "horeca", links=(50101,))
    world.sim.admin.reset_token(LOGINS["horeca"][1])
    for _ in range(3):
        world.advance(CONFIRM)
        world.run(force=True)
    assert world.state("horeca") == "active"
    assert world.link(50101)[:2] == ("active", "horeca")
    assert world.query("SELECT count(*) FROM outbox WHERE audience = 'customer'") == [(0,)]


def test_a_manual_run_skips_a_token_the_scheduled_run_is_checking(world: StoryWorld) -> None:
    _fleet(world, "horeca", "vandijk")
    world.advance(HOUR)
    scheduled = world.new_engine()
    plan = scheduled.plan()
    assert set(plan.token_ids) == {world.ids["horeca"], world.ids["vandijk"]}
    manual = world.run(token_ids=(world.ids["horeca"],))
    assert manual.skipped == [{"token_id": world.ids["horeca"], "run_id": plan.run_id}]
    assert manual.checked == 0
    assert "skipped (another run checks them)" in manual.table()
    for batch in plan.batches:
        scheduled.check_batch(plan.run_id, batch)
    scheduled.apply_checks(plan.run_id)
    checks = world.query("SELECT count(*) FROM checks WHERE token_id = %s", world.ids["horeca"])
    assert checks == [(2,)], "probed by the first and the scheduled run only, never by the manual one"
    # The claim ended with the scheduled run: a manual recheck now goes ahead.
    world.advance(timedelta(minutes=1))
    assert world.run(token_ids=(world.ids["horeca"],)).checked == 1


def test_a_worker_without_the_registry_key_fails_loudly_and_moves_nothing(world: StoryWorld) -> None:
    _fleet(world, "horeca", "vandijk", links=(50101, 50301))
    before = world.snapshot()
    world.advance(HOUR)
    wrong = SyncEngine(world.url, settings=world.settings, client=world.client, clock=lambda: world.now)
    from l1nda_sync.registry.crypto import TokenCipher

    wrong._reveal = TokenCipher([generate_key()]).decrypt
    with pytest.raises(RunAborted) as failed:
        wrong.run_once()
    assert isinstance(failed.value.__cause__, KeysCannotDecrypt)
    message = str(failed.value)
    assert "L1NDA_FERNET_KEYS" in message
    assert str(world.ids["horeca"]) in message
    assert str(world.ids["vandijk"]) in message
    assert "keys check" in message
    assert world.snapshot() == before, "no token, link or problem moved"
    assert world.query("SELECT count(*) FROM checks WHERE outcome = 'unknown'") == [(0,)]
    assert _mails(world) == 0
