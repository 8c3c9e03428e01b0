"""The outbox row commits with the state change that causes it, or neither does; the sweep sees changes made
outside the engine (a cancelled link, a disabled token)."""

from __future__ import annotations

import pytest

from l1nda_sync.engine.applying import apply_check, apply_pending
from l1nda_sync.engine.token_state import Outcome
from l1nda_sync.registry.links import cancel_link
from l1nda_sync.registry.tokens import disable
from tests.l1nda_sync.alerts.harness import HOUR, OPS, MailServer, World, confirm_streak, probe

REACH = probe(debtors=[(1, "Jansen Holding")], companies=[(11, 1, "Bakkerij Jansen"), (12, 1, "Jansen Logistiek")])
ONLY_11 = probe(debtors=[(1, "Jansen Holding")], companies=[(11, 1, "Bakkerij Jansen")])


def test_a_rolled_back_state_change_leaves_no_problem_and_no_mail(world: World, smtp: MailServer) -> None:
    token = world.add_token("Bakkerij Jansen")
    world.run({token: (Outcome.VALID, REACH)})
    world.run({token: Outcome.NO_SUBSCRIPTION}, send=False)  # stored and applied: one problem, two rows
    assert len(world.outbox()) == 2
    token2 = world.add_token("Tweede Klant", contacts=["jan@tweede.example"])
    with world.conn, world.conn.cursor() as cur:
        confirm_streak(cur, token2, Outcome.NO_SUBSCRIPTION, world.now - HOUR)  # its confirming answer
        cur.execute("""INSERT INTO checks (token_id, checked_at, outcome) VALUES (%s, %s, 'no_subscription')
                       RETURNING id""", (token2, world.now))
        check_id = cur.fetchone()[0]

    def apply_then_die() -> None:
        with world.conn, world.conn.cursor() as cur:
            applied = apply_check(cur, check_id, policy=world.policy, breaker_open=False, now=world.now, run_id=None)
            assert applied is not None
            world.hooks.token_applied(cur, applied, run_id=None, now=world.now)
            raise RuntimeError("the worker died before the commit")

    with pytest.raises(RuntimeError):
        apply_then_die()
    assert len(world.outbox()) == 2, "no mail about a change that never happened"
    assert [p["token_id"] for p in world.problems()] == [token]
    # The next run applies the left-over check again (as SyncEngine.finish does): now both commit together.
    apply_pending(world.conn, policy=world.policy, now=lambda: world.now, hooks=world.hooks)
    world.sweep_and_send()
    assert [p["token_id"] for p in world.problems()] == [token, token2]
    assert smtp.tally()[("jan@tweede.example", "opened")] == 1


def test_cancelling_the_lost_links_clears_access_lost(world: World, smtp: MailServer) -> None:
    token = world.add_token("Bakkerij Jansen")
    world.add_link(11)
    lost = world.add_link(12, "CUST-12")
    world.run({token: (Outcome.VALID, REACH)})
    world.run({token: (Outcome.VALID, ONLY_11)})
    assert smtp.tally() == {(OPS, "opened"): 1}
    with world.conn:
        cancel_link(world.conn, lost, actor="test")  # the operator confirms the company left
    world.sweep_and_send()
    [problem] = world.problems()
    assert problem["cause_cleared_at"] is not None, "the sweep saw the link go"
    world.advance(HOUR)
    world.sweep_and_send()
    assert world.problems(state="open") == []
    assert smtp.tally() == {(OPS, "opened"): 1, (OPS, "resolved"): 1}


def test_disabling_a_token_closes_its_problems_without_mail(world: World, smtp: MailServer) -> None:
    token = world.add_token("Bakkerij Jansen")
    world.run({token: (Outcome.VALID, REACH)})
    world.run({token: Outcome.RIGHTS_MISSING})
    assert len(smtp.received) == 2
    with world.conn:
        disable(world.conn, token, actor="test", reason="customer left")
    world.sweep_and_send()
    [problem] = world.problems()
    assert problem["state"] == "resolved"
    assert len(smtp.received) == 2, "the operator took the token out of service: nothing to announce"
