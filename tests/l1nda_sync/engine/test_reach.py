"""Reach diffs: the events that explain a change, and diff/apply as inverses."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from l1nda_sync.engine.reach import (
    Change,
    CompanyView,
    DebtorView,
    Entity,
    Reach,
    apply_diff,
    diff_reach,
)

D1 = DebtorView(1, "D1", "Bakkerij", frozenset({"payroll"}))
D2 = DebtorView(2, "D2", "Garage", frozenset({"payroll"}))
C10 = CompanyView(10, 1, 100, "Bakkerij BV")
C20 = CompanyView(20, 2, 200, "Garage BV")
C21 = CompanyView(21, 2, 201, "Garage Holding")


def kinds(diff) -> set[tuple[Change, Entity, int]]:
    return {(e.change, e.entity, e.entity_id) for e in diff.events}


def test_unchanged_reach_is_an_empty_diff() -> None:
    r = Reach.of([D1, D2], [C10, C20])
    diff = diff_reach(r, Reach.of([D1, D2], [C10, C20]))
    assert diff.empty
    assert diff.events == ()


def test_tag_removal_explains_the_lost_debtor_and_its_companies() -> None:
    old = Reach.of([D1, D2], [C10, C20, C21])
    new = Reach.of([D1], [C10])
    diff = diff_reach(old, new)
    assert kinds(diff) == {
        (Change.LOST, Entity.DEBTOR, 2), (Change.LOST, Entity.COMPANY, 20), (Change.LOST, Entity.COMPANY, 21)}
    lost = {e.entity_id: e.detail["why"] for e in diff.events if e.entity is Entity.COMPANY}
    assert lost == {20: "tag_or_filter", 21: "tag_or_filter"}


def test_ended_company_under_a_still_reached_debtor() -> None:
    diff = diff_reach(Reach.of([D1, D2], [C10, C20, C21]), Reach.of([D1, D2], [C10, C20]))
    (event,) = diff.events
    assert (event.change, event.entity_id, event.detail["why"]) == (Change.LOST, 21, "company_ended")


def test_moved_company_and_retagged_debtor() -> None:
    retagged = DebtorView(2, "D2", "Garage", frozenset({"payroll", "vip"}))
    moved = CompanyView(21, 1, 201, "Garage Holding")
    diff = diff_reach(Reach.of([D1, D2], [C10, C20, C21]), Reach.of([D1, retagged], [C10, C20, moved]))
    assert kinds(diff) == {(Change.TAGS_CHANGED, Entity.DEBTOR, 2), (Change.MOVED, Entity.COMPANY, 21)}
    tags = next(e for e in diff.events if e.change is Change.TAGS_CHANGED)
    assert tags.detail == {"added": ["vip"], "removed": []}
    move = next(e for e in diff.events if e.change is Change.MOVED)
    assert move.detail == {"from_debtor": 2, "to_debtor": 1}


def test_debtor_level_reach_without_debtors() -> None:
    diff = diff_reach(Reach.of([], [CompanyView(5)]), Reach.of([], []))
    assert diff.events[0].detail["why"] == "filter_or_company_ended"


debtors = st.builds(
    DebtorView,
    id=st.integers(1, 12),
    number=st.sampled_from(["1", "2", None]),
    name=st.sampled_from(["a", "b", None]),
    tags=st.frozensets(st.sampled_from(["x", "y", "z"]), max_size=3),
)
companies = st.builds(
    CompanyView,
    id=st.integers(1, 40),
    debtor_id=st.one_of(st.none(), st.integers(1, 12)),
    number=st.integers(1, 3),
    name=st.sampled_from(["p", "q"]),
)
reaches = st.builds(Reach.of, st.lists(debtors, max_size=8), st.lists(companies, max_size=20))


@given(reaches, reaches)
def test_applying_the_diff_to_the_old_reach_gives_the_new_reach(old: Reach, new: Reach) -> None:
    diff = diff_reach(old, new)
    assert apply_diff(old, diff) == new
    assert diff.empty == (old == new)
    assert {e.entity_id for e in diff.events if e.change is Change.GAINED and e.entity is Entity.COMPANY} == (
        new.companies.keys() - old.companies.keys())


def test_a_client_login_losing_a_company_is_a_filter_change_or_an_ended_company() -> None:
    """A client login sees its debtor only through its companies: the debtor going with them explains nothing."""
    old = Reach({1: D1}, {10: C10})
    new = Reach({}, {})

    def why(diff: object) -> list[str]:
        return [e.detail["why"] for e in diff.events if e.entity.value == "company"]

    assert why(diff_reach(old, new)) == ["tag_or_filter"]
    assert why(diff_reach(old, new, debtor_level=True)) == ["filter_or_company_ended"]
