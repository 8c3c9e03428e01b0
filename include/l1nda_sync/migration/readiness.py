"""Readiness per link for the end of SOAP: pure, over plain records (no database).

A wanted link is
- `rest_ready`: a REST connection of its customer serves it, or would take it at the cutover (the link rules'
  own test: `link_rules.reconcile_links` with every SOAP token retired puts it on a REST connection);
- `ambiguous`: not ready, and its company is a candidate of a REST company L1NDA could not match for sure
  (`companies unmatched`): an operator's `companies match` may make it ready;
- `soap_only`: neither; at `soap_end` it is suspended (`soap_ended`) unless its customer consents first.

Each link carries its customer's invitation state (the newest REST invitation: none, sent, opened, consented,
expired) and the accountant (master) token it depends on, if any, for grouping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from l1nda_sync.engine.link_rules import LinkState, LinkView, TokenView, reconcile_links
from l1nda_sync.engine.token_state import CredentialKind, TokenState


class Readiness(StrEnum):
    """Whether a link survives the end of SOAP."""

    SOAP_ONLY = "soap_only"
    REST_READY = "rest_ready"
    AMBIGUOUS = "ambiguous"


class InvitationState(StrEnum):
    """The customer's newest REST invitation, as the status shows it."""

    NONE = "none"
    SENT = "sent"  # made or mailed, not opened yet
    OPENED = "opened"
    CONSENTED = "consented"  # used: the customer consented through it
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class InvitationFact:
    """One REST invitation of a customer, as stored (`registry.invitations`)."""

    customer_ref: str
    state: str  # created | sent | opened | used | expired
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class OpenCompany:
    """A REST company an operator must match (`rest_entities` match unmatched/ambiguous)."""

    customer_ref: str
    uuid: str
    candidates: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What grouping shows of a credential beside its `TokenView`."""

    label: str
    contacts: tuple[str, ...] = ()


@dataclass(frozen=True)
class World:
    """Everything readiness and the cutover decide on, as loaded by `migration.world.load`."""

    links: Sequence[LinkView]
    tokens: Mapping[int, TokenView]
    reachers: Mapping[int, Iterable[int]]  # company id -> ids of the tokens whose current reach holds it
    info: Mapping[int, TokenInfo] = field(default_factory=dict)
    invitations: Sequence[InvitationFact] = ()
    open_companies: Sequence[OpenCompany] = ()


@dataclass(frozen=True, slots=True)
class LinkReadiness:
    """One link's readiness, with what grouping needs."""

    link_id: int
    customer_ref: str
    company_id: int
    link_state: str
    readiness: Readiness
    served_by: int | None  # the credential serving it now
    served_kind: str | None
    rest_connection: int | None  # the REST connection that serves or would take it (rest_ready)
    accountant_token: int | None  # the accountant (master) SOAP token it depends on, if any
    accountant_label: str | None
    invitation: InvitationState
    ambiguous_rest_companies: tuple[str, ...] = ()  # UUIDs an operator must match (ambiguous)


def retired(tokens: Mapping[int, TokenView]) -> dict[int, TokenView]:
    """The tokens as they are after the cutover: every SOAP token not removed is retired."""
    return {i: replace(t, state=TokenState.RETIRED)
            if t.kind is CredentialKind.SOAP_TOKEN and t.state is not TokenState.REMOVED else t
            for i, t in tokens.items()}


def invitation_state(facts: Iterable[InvitationFact], now: datetime) -> InvitationState:
    """The state of a customer's newest REST invitation at `now`."""
    newest = max(facts, key=lambda f: f.created_at, default=None)
    if newest is None:
        return InvitationState.NONE
    if newest.state == "used":
        return InvitationState.CONSENTED
    if newest.state == "expired" or newest.expires_at <= now:
        return InvitationState.EXPIRED
    return InvitationState.OPENED if newest.state == "opened" else InvitationState.SENT


def _accountant(link: LinkView, world: World) -> int | None:
    """The accountant-level SOAP token the link depends on: the one serving it, else the lowest id reaching it."""
    serving = world.tokens.get(link.token_id) if link.token_id is not None else None
    if serving is not None and serving.kind is CredentialKind.SOAP_TOKEN:
        return serving.id if serving.level == "accountant" else None
    reaching = sorted(t for t in world.reachers.get(link.company_id, ()) if t in world.tokens
                      and world.tokens[t].kind is CredentialKind.SOAP_TOKEN and world.tokens[t].level == "accountant"
                      and world.tokens[t].state is not TokenState.REMOVED)
    return reaching[0] if reaching else None


def _on_rest(link: LinkView, world: World, after: Mapping[int, int | None]) -> int | None:
    """The REST connection serving the link, or the one the cutover's link rules would put it on."""
    serving = world.tokens.get(link.token_id) if link.token_id is not None else None
    if serving is not None and serving.kind is CredentialKind.REST_CONNECTION and link.state is LinkState.ACTIVE:
        return serving.id
    target = after.get(link.id)
    target_view = world.tokens.get(target) if target is not None else None
    if target_view is not None and target_view.kind is CredentialKind.REST_CONNECTION:
        return target_view.id
    return None


def assess(world: World, now: datetime) -> list[LinkReadiness]:
    """Every wanted link's readiness at `now`, in link id order."""
    links = [link for link in world.links if link.state is not LinkState.CANCELLED]
    changes = reconcile_links(links, retired(world.tokens), world.reachers)
    after: dict[int, int | None] = {c.link_id: c.to_token for c in changes if c.to_state is LinkState.ACTIVE}
    by_customer: dict[str, list[InvitationFact]] = {}
    for fact in world.invitations:
        by_customer.setdefault(fact.customer_ref, []).append(fact)
    out = []
    for link in sorted(links, key=lambda item: item.id):
        customer = link.customer_ref or ""
        rest = _on_rest(link, world, after)
        open_here = tuple(sorted(c.uuid for c in world.open_companies
                                 if c.customer_ref == customer and link.company_id in c.candidates))
        readiness = (Readiness.REST_READY if rest is not None
                     else Readiness.AMBIGUOUS if open_here else Readiness.SOAP_ONLY)
        serving = world.tokens.get(link.token_id) if link.token_id is not None else None
        accountant = _accountant(link, world)
        info = world.info.get(accountant) if accountant is not None else None
        out.append(LinkReadiness(
            link.id, customer, link.company_id, link.state.value, readiness, link.token_id,
            serving.kind.value if serving is not None else None, rest, accountant,
            info.label if info is not None else None,
            invitation_state(by_customer.get(customer, ()), now),
            open_here if readiness is Readiness.AMBIGUOUS else ()))
    return out
