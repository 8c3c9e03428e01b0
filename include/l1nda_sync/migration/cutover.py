"""What the cutover does at a time T: pure, over the same `readiness.World` (no database).

Before `soap_end` it does nothing. From then:
- every SOAP token that is not removed or already retired is retired (`TokenState.RETIRED`);
- the links follow the ordinary link rules with those tokens retired: a link a REST connection of its customer
  reaches stays or moves there (`failover`, `reached`), an active link no REST connection reaches is suspended with
  `soap_ended`; pending and already suspended links stay as they are;
- each token retired now that leaves a link suspended gets one notice (`soap_ended` problem: its contact is mailed
  once, a business customer with an invitation link to consent, an accountant one summary of its debtors), and
  operations one summary of the whole cutover.

The real run (`migration.running.run_cutover`) and the preview (`l1nda-sync migration preview`, the DAG's dry run)
both call `plan_cutover`, so the preview is what the run does. A second run retires nothing new and so notifies
nobody again: the notices belong to the retirement, which happens once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from l1nda_sync.engine.link_rules import LinkChange, LinkState, Reason, reconcile_links
from l1nda_sync.engine.token_state import CredentialKind, TokenState
from l1nda_sync.migration.readiness import World, retired


@dataclass(frozen=True, slots=True)
class Notice:
    """One retired token's notice: the customers and links it leaves suspended."""

    token_id: int
    level: str  # 'accountant': one summary of its debtors; 'debtor': the customer, with an invitation link
    label: str
    contacts: tuple[str, ...]
    customers: tuple[str, ...]
    link_ids: tuple[int, ...]

    def detail(self) -> dict[str, Any]:
        return {"level": self.level, "customers": list(self.customers), "links": list(self.link_ids)}


@dataclass(frozen=True)
class CutoverPlan:
    """What the cutover does at `at`."""

    at: datetime
    soap_end: datetime
    retire: tuple[int, ...] = ()
    changes: tuple[LinkChange, ...] = ()
    notices: tuple[Notice, ...] = ()
    customers: dict[str, str] = field(default_factory=dict)  # link id -> customer (for grouping)
    kept_on_rest: tuple[int, ...] = ()  # active links a REST connection serves already: nothing to do

    @property
    def active(self) -> bool:
        return self.at >= self.soap_end

    @property
    def suspended(self) -> tuple[LinkChange, ...]:
        return tuple(c for c in self.changes if c.to_state is LinkState.SUSPENDED)

    @property
    def to_rest(self) -> tuple[LinkChange, ...]:
        return tuple(c for c in self.changes if c.to_state is LinkState.ACTIVE)

    def per_customer(self) -> dict[str, dict[str, list[int]]]:
        """customer -> {'stay_on_rest', 'move_to_rest', 'suspend'} -> link ids."""
        out: dict[str, dict[str, list[int]]] = {}

        def add(link_id: int, what: str) -> None:
            entry = out.setdefault(self.customers.get(str(link_id), "?"),
                                   {"stay_on_rest": [], "move_to_rest": [], "suspend": []})
            entry[what].append(link_id)
        for link_id in self.kept_on_rest:
            add(link_id, "stay_on_rest")
        for change in self.to_rest:
            add(change.link_id, "move_to_rest")
        for change in self.suspended:
            add(change.link_id, "suspend")
        return dict(sorted(out.items()))

    def to_dict(self) -> dict[str, Any]:
        """The plan as data (the preview's JSON; the test that compares it with the run)."""
        return {
            "at": self.at, "soap_end": self.soap_end, "active": self.active, "retire": list(self.retire),
            "changes": [{"link_id": c.link_id, "from": c.from_state.value, "to": c.to_state.value,
                         "from_token": c.from_token, "to_token": c.to_token, "reason": str(c.reason)}
                        for c in self.changes],
            "notices": [{"token_id": n.token_id, "label": n.label, "contacts": len(n.contacts), **n.detail()}
                        for n in self.notices],
            "per_customer": self.per_customer(),
        }


def plan_cutover(world: World, at: datetime, soap_end: datetime) -> CutoverPlan:
    """What the cutover does at `at` to `world` (see the module docstring)."""
    if at < soap_end:
        return CutoverPlan(at, soap_end)
    retire = tuple(sorted(i for i, t in world.tokens.items() if t.kind is CredentialKind.SOAP_TOKEN
                          and t.state not in (TokenState.REMOVED, TokenState.RETIRED)))
    links = [link for link in world.links if link.state is not LinkState.CANCELLED]
    changes = tuple(reconcile_links(links, retired(world.tokens), world.reachers))
    customers = {str(link.id): link.customer_ref or "?" for link in links}
    moved = {c.link_id for c in changes}
    kept = tuple(link.id for link in links if link.id not in moved and link.state is LinkState.ACTIVE
                 and link.token_id is not None and link.token_id in world.tokens
                 and world.tokens[link.token_id].kind is CredentialKind.REST_CONNECTION)
    notices = []
    for token_id in retire:
        mine = [c for c in changes if c.from_token == token_id and c.to_state is LinkState.SUSPENDED
                and c.reason == Reason.SOAP_ENDED]
        if not mine:
            continue
        token = world.tokens[token_id]
        info = world.info.get(token_id)
        notices.append(Notice(token_id, token.level, info.label if info else f"token {token_id}",
                              info.contacts if info else (),
                              tuple(sorted({customers[str(c.link_id)] for c in mine})),
                              tuple(sorted(c.link_id for c in mine))))
    return CutoverPlan(at, soap_end, retire, changes, tuple(notices), customers, kept)
