"""Reminders on time with a clock the test sets (no sleeping), reminders off, mute and unmute."""

from __future__ import annotations

from typing import Any

from l1nda_sync.cli.problem_commands import set_muted
from l1nda_sync.engine.token_state import Outcome
from tests.l1nda_sync.alerts.harness import HOUR, MIN, OPS, MailServer, World, probe, test_settings

REACH = probe(debtors=[(1, "Jansen Holding")], companies=[(11, 1, "Bakkerij Jansen")])
DAY = 24 * HOUR


def _open_no_subscription(world: World) -> int:
    token = world.add_token("Bakkerij Jansen")
    world.run({token: (Outcome.VALID, REACH)}, step=0 * MIN)
    world.run({token: Outcome.NO_SUBSCRIPTION}, step=0 * MIN)
    return token


def _reminders(smtp: MailServer, to: str = OPS) -> int:
    return smtp.tally().get((to, "reminder"), 0)


def test_reminders_arrive_every_interval_and_not_before(world: World, smtp: MailServer) -> None:
    _open_no_subscription(world)
    assert _reminders(smtp) == 0
    world.advance(DAY - MIN)
    world.sweep_and_send()
    assert _reminders(smtp) == 0, "not a minute early"
    world.advance(MIN)
    world.sweep_and_send()
    assert _reminders(smtp) == 1
    assert _reminders(smtp, "piet@klant.example") == 1, "the customer is reminded too: they must act"
    world.sweep_and_send()
    world.advance(10 * MIN)
    world.sweep_and_send()
    assert _reminders(smtp) == 1, "one reminder per interval, however often the sweep runs"
    world.advance(DAY - 10 * MIN)
    world.sweep_and_send()
    assert _reminders(smtp) == 2
    subject = [s for r, e, s in smtp.events() if e == "reminder" and r == OPS][-1]
    assert subject.startswith("[L1NDA] Reminder \u2013 Nmbrs subscription not valid for token Bakkerij Jansen")


def test_reminders_can_be_turned_off(conn: Any, smtp: MailServer, fernet_keys: list[str]) -> None:
    world = World(conn, test_settings(reminder_interval=0.0))
    _open_no_subscription(world)
    for _ in range(4):
        world.advance(DAY)
        world.sweep_and_send()
    assert smtp.tally() == {(OPS, "opened"): 1, ("piet@klant.example", "opened"): 1}


def test_a_muted_problem_sends_nothing_and_unmute_sends_no_backlog(world: World, smtp: MailServer) -> None:
    token = _open_no_subscription(world)
    [problem] = world.problems(state="open")
    set_muted(world.conn, problem["id"], True, world.now)
    for _ in range(3):
        world.advance(DAY)
        world.sweep_and_send()
    assert _reminders(smtp) == 0, "muted: no reminders"
    [still] = world.problems(state="open")
    assert still["muted"] is True

    set_muted(world.conn, problem["id"], False, world.now)
    world.sweep_and_send()
    assert _reminders(smtp) == 0, "unmuting sends no backlog"
    world.advance(DAY - MIN)
    world.sweep_and_send()
    assert _reminders(smtp) == 0
    world.advance(MIN)
    world.sweep_and_send()
    assert _reminders(smtp) == 1, "reminders resume one interval after the unmute"

    set_muted(world.conn, problem["id"], True, world.now)
    world.run({token: (Outcome.VALID, REACH)})
    world.advance(2 * HOUR)
    world.sweep_and_send()
    assert world.problems(state="open") == []
    assert smtp.tally().get((OPS, "resolved"), 0) == 0, "a muted problem resolves without a mail"
