"""The migration campaign's decisions: who is due for what at a time T. Pure, over plain records (no database).

From `migration_campaign_start` until `soap_end`, every customer with a `soap_only` link is invited to consent
through REST, once per (customer, contact) (`Target`): a business customer through its SOAP token's contacts, an
accountant's debtor through the debtor's own contacts (an accountant cannot consent for its debtors: REST has no
master login). Each open invitation problem (`Open`) is

- reminded when `Schedule.interval` passed since its last mail (weekly; daily in the last `final_window`), never
  while muted, and not within `settle` after the customer opened or used the link (they are busy with it);
- re-invited at once when its link expired (the mail carries a new link);
- resolved without a word when the customer has no `soap_only` link any more, or the campaign is over.

An accountant token with `soap_only` debtors gets one summary (`Summary`) and operations one weekly mail; both
repeat every `summary_every` while there is something to say. `plan_campaign` returns the steps; the registry
side (`campaign_running`) carries them out in one transaction, so a rerun at the same T finds nothing due.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Step(StrEnum):
    """What a pass does with one key."""

    INVITE = "invite"  # open the problem, mail the first invitation
    REMIND = "remind"  # mail again, the same link
    REINVITE = "reinvite"  # the link expired: mail again with a new link
    RESOLVE = "resolve"  # silently: ready, or the campaign is over


@dataclass(frozen=True, slots=True)
class Schedule:
    """When the campaign runs and how often it writes."""

    start: datetime | None  # None: no campaign
    soap_end: datetime
    weekly: timedelta = timedelta(days=7)
    daily: timedelta = timedelta(days=1)
    final_window: timedelta = timedelta(days=14)
    summary_every: timedelta = timedelta(days=7)
    settle: timedelta = timedelta(days=1)

    def running(self, now: datetime) -> bool:
        return self.start is not None and self.start <= now < self.soap_end

    def interval(self, now: datetime) -> timedelta:
        """The reminder interval at `now`: it tightens in the last `final_window` before soap_end."""
        return self.daily if self.soap_end - now <= self.final_window else self.weekly


@dataclass(frozen=True, slots=True)
class Target:
    """A (customer, contact) the campaign must reach: the customer has `soap_only` links."""

    customer_ref: str
    contact: str
    language: str | None = None
    accountant_token: int | None = None  # the debtor of this accountant (master) token; None: a business customer

    @property
    def key(self) -> str:
        return f"{self.customer_ref} {self.contact.casefold()}"


@dataclass(frozen=True, slots=True)
class LinkFact:
    """The state of an open problem's current invitation."""

    state: str  # created | sent | opened | used | expired
    expires_at: datetime
    opened_at: datetime | None = None
    used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Open:
    """An open campaign problem (invitation, accountant summary or the weekly mail)."""

    problem_id: int
    key: str
    last_notified_at: datetime | None
    muted: bool = False
    unmuted_at: datetime | None = None
    invitation: LinkFact | None = None  # the newest invitation of the problem (invitation problems)


@dataclass(frozen=True, slots=True)
class Decision:
    """One step due for one key (a customer's contact, an accountant token's id, or 'ops')."""

    what: str  # 'invite' (a customer's contact), 'accountant' (a summary), 'weekly' (operations)
    step: Step
    key: str
    problem_id: int | None = None
    target: Target | None = None


def _base(row: Open) -> datetime | None:
    times = [t for t in (row.last_notified_at, row.unmuted_at) if t is not None]
    return max(times) if times else None


def _expired(fact: LinkFact | None, now: datetime) -> bool:
    return fact is not None and (fact.state == "expired" or (fact.state != "used" and fact.expires_at <= now))


def decide_invitation(row: Open | None, target: Target | None, now: datetime, schedule: Schedule) -> Step | None:
    """The step for one (customer, contact): `row` its open problem, `target` None when it need not be reached."""
    wanted = target is not None and schedule.running(now)
    if row is None:
        return Step.INVITE if wanted else None
    if not wanted:
        return Step.RESOLVE
    if row.muted:
        return None
    fact = row.invitation
    if _expired(fact, now):
        return Step.REINVITE
    busy = max((t for t in (fact.opened_at, fact.used_at) if t is not None), default=None) if fact else None
    if busy is not None and now - busy < schedule.settle:
        return None
    base = _base(row)
    if base is None or now - base >= schedule.interval(now):
        return Step.REMIND
    return None


def decide_periodic(row: Open | None, wanted: bool, now: datetime, schedule: Schedule) -> Step | None:
    """The step for a summary (an accountant's, operations' weekly): mailed on opening and every summary_every."""
    wanted = wanted and schedule.running(now)
    if row is None:
        return Step.INVITE if wanted else None
    if not wanted:
        return Step.RESOLVE
    base = _base(row)
    if row.muted or (base is not None and now - base < schedule.summary_every):
        return None
    return Step.REMIND


def plan_campaign(schedule: Schedule, now: datetime, targets: Iterable[Target], invitations: Iterable[Open],
                  summaries: Mapping[int, bool], summary_rows: Iterable[Open], weekly_wanted: bool,
                  weekly: Open | None) -> list[Decision]:
    """Every step due at `now`. `summaries`: accountant token id -> it has soap_only debtors; `summary_rows` keyed
    by the token id as text; `weekly`: operations' open weekly problem."""
    wanted = {t.key: t for t in targets}
    rows = {r.key: r for r in invitations}
    out = []
    for key in sorted(wanted.keys() | rows.keys()):
        row = rows.get(key)
        step = decide_invitation(row, wanted.get(key), now, schedule)
        if step is not None:
            out.append(Decision("invite", step, key, row.problem_id if row else None, wanted.get(key)))
    by_token = {r.key: r for r in summary_rows}
    for key in sorted({str(t) for t in summaries} | by_token.keys(), key=int):
        row = by_token.get(key)
        step = decide_periodic(row, summaries.get(int(key), False), now, schedule)
        if step is not None:
            out.append(Decision("accountant", step, key, row.problem_id if row else None))
    step = decide_periodic(weekly, weekly_wanted, now, schedule)
    if step is not None:
        out.append(Decision("weekly", step, "ops", weekly.problem_id if weekly else None))
    return out
