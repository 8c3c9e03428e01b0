"""What a token reaches, and what changed between two discoveries: pure functions over plain data.

A failed discovery never produces a `Reach`; the caller keeps the previous one, so an error can never read
as "lost everything". `apply_diff(old, diff_reach(old, new)) == new` holds for any two reaches.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar


@dataclass(frozen=True, slots=True)
class DebtorView:
    """A debtor in a token's reach."""

    id: int
    number: str | None = None
    name: str | None = None
    tags: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class CompanyView:
    """A company in a token's reach, with the debtor it belongs to."""

    id: int
    debtor_id: int | None = None
    number: int | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Reach:
    """What a token reaches: its debtors and companies by id."""

    debtors: Mapping[int, DebtorView] = field(default_factory=dict)
    companies: Mapping[int, CompanyView] = field(default_factory=dict)

    @classmethod
    def of(cls, debtors: Iterable[DebtorView], companies: Iterable[CompanyView]) -> Reach:
        return cls({d.id: d for d in debtors}, {c.id: c for c in companies})

    def company_ids(self) -> frozenset[int]:
        return frozenset(self.companies)


class Change(StrEnum):
    """What happened to a debtor or company between two discoveries."""

    GAINED = "gained"
    LOST = "lost"
    MOVED = "moved"  # a company now belongs to another debtor
    TAGS_CHANGED = "tags_changed"  # a debtor's tags changed (the usual reason a master login loses it)
    RENAMED = "renamed"  # number or name changed: stored, not an event worth a mail


class Entity(StrEnum):
    """What a reach event is about."""

    DEBTOR = "debtor"
    COMPANY = "company"


@dataclass(frozen=True, slots=True)
class ReachEvent:
    """One change in a token's reach, as stored in reach_events."""

    change: Change
    entity: Entity
    entity_id: int
    debtor_id: int | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReachDiff:
    """What changed from one reach to the next: rows to write and the events explaining them."""

    debtors_gained: tuple[DebtorView, ...] = ()
    debtors_lost: tuple[DebtorView, ...] = ()
    debtors_updated: tuple[DebtorView, ...] = ()  # new view of a debtor whose tags, number or name changed
    companies_gained: tuple[CompanyView, ...] = ()
    companies_lost: tuple[CompanyView, ...] = ()
    companies_updated: tuple[CompanyView, ...] = ()  # new view of a moved or renamed company
    events: tuple[ReachEvent, ...] = ()

    @property
    def empty(self) -> bool:
        return not (
            self.debtors_gained or self.debtors_lost or self.debtors_updated
            or self.companies_gained or self.companies_lost or self.companies_updated
        )


def diff_reach(old: Reach, new: Reach, *, debtor_level: bool = False) -> ReachDiff:
    """Debtors and companies gained, lost, moved or retagged from `old` to `new`, with explaining events.

    `debtor_level`: the token's login is a client login, which has a company filter and no tag filter.
    """
    gained_d, lost_d, updated_d, debtor_events = _diff_debtors(old, new)
    gained_c, lost_c, updated_c, company_events = _diff_companies(old, new, debtor_level=debtor_level)
    return ReachDiff(gained_d, lost_d, updated_d, gained_c, lost_c, updated_c, (*debtor_events, *company_events))


_View = TypeVar("_View", DebtorView, CompanyView)
# gained, lost, updated (the new view), and the events explaining them
_Diff = tuple[tuple[_View, ...], tuple[_View, ...], tuple[_View, ...], list[ReachEvent]]


def _diff_debtors(old: Reach, new: Reach) -> _Diff[DebtorView]:
    """Debtors gained, lost and updated (tags, number or name), with their events."""
    events: list[ReachEvent] = []
    gained = tuple(new.debtors[i] for i in sorted(new.debtors.keys() - old.debtors.keys()))
    lost = tuple(old.debtors[i] for i in sorted(old.debtors.keys() - new.debtors.keys()))
    updated: list[DebtorView] = []
    for i in sorted(old.debtors.keys() & new.debtors.keys()):
        before, after = old.debtors[i], new.debtors[i]
        if before == after:
            continue
        updated.append(after)
        if before.tags != after.tags:
            events.append(ReachEvent(Change.TAGS_CHANGED, Entity.DEBTOR, i, i, {
                "added": sorted(after.tags - before.tags), "removed": sorted(before.tags - after.tags)}))
        else:
            events.append(ReachEvent(Change.RENAMED, Entity.DEBTOR, i, i, {"name": after.name}))
    events += [ReachEvent(Change.GAINED, Entity.DEBTOR, d.id, d.id, {"tags": sorted(d.tags)}) for d in gained]
    events += [ReachEvent(Change.LOST, Entity.DEBTOR, d.id, d.id, {"tags": sorted(d.tags)}) for d in lost]
    return gained, lost, tuple(updated), events


def _diff_companies(old: Reach, new: Reach, *, debtor_level: bool) -> _Diff[CompanyView]:
    """Companies gained, lost and updated (moved, renamed), with their events; a lost one says why."""
    events: list[ReachEvent] = []
    gained = tuple(new.companies[i] for i in sorted(new.companies.keys() - old.companies.keys()))
    lost = tuple(old.companies[i] for i in sorted(old.companies.keys() - new.companies.keys()))
    updated: list[CompanyView] = []
    for i in sorted(old.companies.keys() & new.companies.keys()):
        before, after = old.companies[i], new.companies[i]
        if before == after:
            continue
        updated.append(after)
        if before.debtor_id != after.debtor_id:
            events.append(ReachEvent(Change.MOVED, Entity.COMPANY, i, after.debtor_id,
                                     {"from_debtor": before.debtor_id, "to_debtor": after.debtor_id}))
        else:
            events.append(ReachEvent(Change.RENAMED, Entity.COMPANY, i, after.debtor_id, {"name": after.name}))
    events += [ReachEvent(Change.GAINED, Entity.COMPANY, c.id, c.debtor_id, {"name": c.name}) for c in gained]
    events += [
        ReachEvent(Change.LOST, Entity.COMPANY, c.id, c.debtor_id,
                   {"name": c.name, "why": lost_company_reason(c, old, new, debtor_level=debtor_level)})
        for c in lost
    ]
    return gained, lost, tuple(updated), events


def lost_company_reason(company: CompanyView, old: Reach, new: Reach, *, debtor_level: bool = False) -> str:
    """Why a company left a token's reach, as far as the token can see.

    - its debtor left the reach too: the debtor's tags or the login's tag filter changed (`tag_or_filter`);
    - its debtor is still reached: the company ended or moved to a debtor out of reach (`company_ended`);
    - a debtor-level (client) login, or no debtor known: the login's company filter changed or the company
      ended (a client login sees its debtor only through its companies, so the debtor's going explains nothing).
    """
    if debtor_level or company.debtor_id is None or company.debtor_id not in old.debtors:
        return "filter_or_company_ended"
    if company.debtor_id not in new.debtors:
        return "tag_or_filter"
    return "company_ended"


def apply_diff(old: Reach, diff: ReachDiff) -> Reach:
    debtors = dict(old.debtors)
    for d in diff.debtors_lost:
        debtors.pop(d.id, None)
    for d in (*diff.debtors_gained, *diff.debtors_updated):
        debtors[d.id] = d
    companies = dict(old.companies)
    for c in diff.companies_lost:
        companies.pop(c.id, None)
    for c in (*diff.companies_gained, *diff.companies_updated):
        companies[c.id] = c
    return Reach(debtors, companies)
