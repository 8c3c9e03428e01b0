"""The campaign's decisions (pure): invite once, remind on a schedule that tightens toward soap_end, re-invite on
expiry, resolve silently; a rerun at the same time is due for nothing (property tests over random fleets)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from l1nda_sync.migration.campaign import (
    Decision,
    LinkFact,
    Open,
    Schedule,
    Step,
    Target,
    decide_invitation,
    plan_campaign,
)

START = datetime(2026, 12, 1, tzinfo=UTC)
END = datetime(2027, 3, 1, tzinfo=UTC)
SCHEDULE = Schedule(START, END)
TTL = timedelta(days=14)
DAY = timedelta(days=1)


def apply(decisions: list[Decision], invites: dict[str, Open], summaries: dict[str, Open], weekly: Open | None,
          now: datetime) -> Open | None:
    """What the registry side writes, on plain records (mailing sets last_notified_at, a link is made)."""
    for d in decisions:
        table = invites if d.what == "invite" else summaries if d.what == "accountant" else None
        row = weekly if table is None else table.get(d.key)
        if d.step is Step.RESOLVE:
            if table is None:
                weekly = None
            else:
                del table[d.key]
            continue
        fact = None
        if d.what == "invite":
            old = row.invitation if row else None
            fresh = d.step is not Step.REMIND or old is None
            fact = LinkFact("sent", now + TTL) if fresh else old
        new = Open(row.problem_id if row else len(invites) + len(summaries) + 1, d.key, now,
                   row.muted if row else False, None, fact)
        if table is None:
            weekly = new
        else:
            table[d.key] = new
    return weekly


targets_st = st.lists(st.tuples(st.sampled_from([f"CUST-{i}" for i in range(6)]),
                                st.sampled_from(["a@x.example", "b@x.example"]),
                                st.one_of(st.none(), st.integers(1, 3))), max_size=10)


@settings(max_examples=200, deadline=None)
@given(targets_st, st.lists(st.integers(0, 24 * 120), min_size=1, max_size=30))
def test_a_rerun_at_the_same_time_is_due_for_nothing(raw: list[tuple[str, str, int | None]],
                                                      hours: list[int]) -> None:
    targets = [Target(c, m, None, a) for c, m, a in raw]
    accountants = {a: True for _, _, a in raw if a is not None}
    invites: dict[str, Open] = {}
    summaries: dict[str, Open] = {}
    weekly = None
    for h in sorted(hours):
        now = START - 5 * DAY + timedelta(hours=h)
        first = plan_campaign(SCHEDULE, now, targets, invites.values(), accountants, summaries.values(),
                              bool(targets), weekly)
        assert len({(d.what, d.key) for d in first}) == len(first)  # one step per key
        weekly = apply(first, invites, summaries, weekly, now)
        assert plan_campaign(SCHEDULE, now, targets, invites.values(), accountants, summaries.values(),
                             bool(targets), weekly) == []
        if not SCHEDULE.running(now):
            assert (invites, summaries, weekly) == ({}, {}, None)  # nothing open outside the campaign
            assert all(d.step is Step.RESOLVE for d in first)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 6), st.booleans())
def test_a_customer_who_never_reacts_gets_mails_on_the_tightening_schedule(step_hours: int, muted: bool) -> None:
    target = Target("CUST-1", "a@x.example")
    row: Open | None = None
    mails = []
    now = START
    while now < END + 2 * DAY:
        step = decide_invitation(row, target, now, SCHEDULE)
        if step is Step.RESOLVE:
            row = None
        elif step is not None:
            mails.append((now, step))
            old = row.invitation if row else None
            fact = old if step is Step.REMIND and old is not None else LinkFact("sent", now + TTL)
            row = Open(1, target.key, now, muted, None, fact)
        now += timedelta(hours=step_hours)
    assert mails[0] == (START, Step.INVITE)
    assert all(at < END for at, _ in mails)
    if muted:
        assert len(mails) == 1  # the invitation; no reminder while muted
        return
    for (before, _), (at, step) in pairwise(mails):
        gap = at - before
        if step is Step.REMIND:
            assert gap >= SCHEDULE.interval(at)
            tick = at - timedelta(hours=step_hours)  # not later than due: the tick before was not due yet
            assert tick - before < SCHEDULE.interval(tick)
        else:
            assert step is Step.REINVITE  # only an expired link comes sooner
    final = [at for at, _ in mails if END - at <= SCHEDULE.final_window]
    assert len(final) >= 13  # daily in the last two weeks
    weekly_part = [at for at, _ in mails if END - at > SCHEDULE.final_window + DAY]
    assert len(weekly_part) <= (END - SCHEDULE.final_window - START) / timedelta(days=7) + 1


def test_opened_or_used_links_settle_expired_ones_are_renewed_at_once() -> None:
    target = Target("CUST-1", "a@x.example")
    now = START + timedelta(days=30)
    base = Open(1, target.key, now - timedelta(days=8), invitation=LinkFact("opened", now + DAY,
                                                                             opened_at=now - timedelta(hours=2)))
    assert decide_invitation(base, target, now, SCHEDULE) is None  # busy with the page
    assert decide_invitation(replace(base, invitation=LinkFact("opened", now + DAY, opened_at=now - 2 * DAY)),
                             target, now, SCHEDULE) is Step.REMIND
    assert decide_invitation(replace(base, last_notified_at=now - DAY, invitation=LinkFact("sent", now)),
                             target, now, SCHEDULE) is Step.REINVITE
    assert decide_invitation(replace(base, muted=True, invitation=LinkFact("expired", now)), target, now,
                             SCHEDULE) is None  # muted: nothing, not even a new link
    assert decide_invitation(base, None, now, SCHEDULE) is Step.RESOLVE  # ready: silently
    assert decide_invitation(None, target, END, SCHEDULE) is None  # after soap_end: the cutover tells them
    assert decide_invitation(None, target, now, replace(SCHEDULE, start=None)) is None


def test_the_interval_tightens_in_the_final_window() -> None:
    assert SCHEDULE.interval(END - timedelta(days=15)) == timedelta(days=7)
    assert SCHEDULE.interval(END - timedelta(days=14)) == DAY
    assert SCHEDULE.interval(END - timedelta(hours=1)) == DAY
