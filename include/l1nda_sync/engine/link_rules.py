"""Which token serves which link: pure, over plain records.

A link is active while an active token reaches its company. It stays with the token that serves it; when
that token is revoked, loses rights or the company, it fails over to another active token that reaches the
company (debtor level before accountant level, then the most recently validated, then the lowest id); when
none does, it is suspended with the reason. A pending link activates as soon as a token reaches it.

Tokens that are only `invalid` (one unconfirmed 1001) or `unreachable` (transient faults) keep the links
they serve: neither is a verdict on the token, and a transient fault never moves a link. While the circuit
breaker is open nothing is suspended.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from l1nda_sync.engine.token_state import TokenState


class LinkState(StrEnum):
    """The state of a link, as stored in links.state."""

    PENDING = "pending"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CANCELLED = "cancelled"


class Reason(StrEnum):
    """Why a link is in its state (links.reason, link_events.reason)."""

    REACHED = "reached"
    FAILOVER = "failover"
    REVOKED = "revoked"
    REJECTED = "rejected"
    TAG_OR_FILTER = "tag_or_filter"
    COMPANY_ENDED = "company_ended"
    FILTER_OR_COMPANY_ENDED = "filter_or_company_ended"
    RIGHTS_MISSING = "rights_missing"
    NO_SUBSCRIPTION = "no_subscription"
    TOKEN_DISABLED = "token_disabled"  # noqa: S105 - a reason, not a secret
    NOT_REACHED = "not_reached"


# May serve a link it already serves: the token is not known to be bad.
KEEPS_LINKS = frozenset({TokenState.ACTIVE, TokenState.INVALID, TokenState.UNREACHABLE})
# May take on a link (activation or failover): the token answered, and recently.
TAKES_LINKS = frozenset({TokenState.ACTIVE})


@dataclass(frozen=True, slots=True)
class TokenView:
    """A token as the link rules see it."""

    id: int
    level: str  # 'debtor' | 'accountant'
    state: TokenState
    environment: str | None = None  # the Nmbrs sub-domain the token belongs to, once known
    last_valid_at: datetime | None = None
    # Its last answer showed a sharp reach drop, not yet confirmed: its stored reach may be stale, so it keeps
    # the links it serves but takes on (or brings back) none.
    drop_suspected: bool = False


@dataclass(frozen=True, slots=True)
class LinkView:
    """A wanted link as the link rules see it."""

    id: int
    company_id: int
    state: LinkState
    token_id: int | None = None
    environment: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class LinkChange:
    """One link's move from one state and token to another, and why."""

    link_id: int
    from_state: LinkState
    to_state: LinkState
    from_token: int | None
    to_token: int | None
    reason: str


def _preference(token: TokenView) -> tuple[int, float, int]:
    validated = token.last_valid_at.timestamp() if token.last_valid_at else float("-inf")
    return (0 if token.level == "debtor" else 1, -validated, token.id)


def _matches(link: LinkView, token: TokenView) -> bool:
    return link.environment is None or token.environment is None or link.environment == token.environment


def suspension_reason(serving: TokenView | None, lost_reason: str | None) -> str:
    """Why a link lost its token: the token's own state first, else why the token lost the company."""
    if serving is None:
        return Reason.NOT_REACHED
    match serving.state:
        case TokenState.REVOKED:
            return Reason.REVOKED
        case TokenState.REJECTED:
            return Reason.REJECTED
        case TokenState.RIGHTS_MISSING:
            return Reason.RIGHTS_MISSING
        case TokenState.NO_SUBSCRIPTION:
            return Reason.NO_SUBSCRIPTION
        case TokenState.DISABLED | TokenState.REMOVED:
            return Reason.TOKEN_DISABLED
    return lost_reason or Reason.NOT_REACHED


def reconcile_links(
    links: Iterable[LinkView],
    tokens: Mapping[int, TokenView],
    reachers: Mapping[int, Iterable[int]],
    *,
    lost_reasons: Mapping[tuple[int, int], str] | None = None,
    breaker_open: bool = False,
) -> list[LinkChange]:
    """The changes that bring every link in line with who reaches what.

    `reachers` maps a company id to the ids of tokens whose current reach holds it; `lost_reasons` maps
    (token id, company id) to why that token lost that company (from the reach diff), for the reason text.
    """
    lost_reasons = lost_reasons or {}
    changes: list[LinkChange] = []
    for link in links:
        if link.state is LinkState.CANCELLED:
            continue
        candidates = [tokens[t] for t in reachers.get(link.company_id, ()) if t in tokens]
        candidates = [t for t in candidates if _matches(link, t)]
        serving = tokens.get(link.token_id) if link.token_id is not None else None
        # A suspected token keeps a link it serves, but only a good token (re)activates one.
        good_enough = TAKES_LINKS if link.state is not LinkState.ACTIVE else KEEPS_LINKS
        keeps = (
            serving is not None
            and serving.state in good_enough
            and (link.state is LinkState.ACTIVE or not serving.drop_suspected)
            and any(t.id == serving.id for t in candidates)
        )
        if keeps:
            if link.state is not LinkState.ACTIVE:
                changes.append(LinkChange(link.id, link.state, LinkState.ACTIVE, link.token_id, link.token_id,
                                          Reason.REACHED))
            continue
        takers = sorted((t for t in candidates if t.state in TAKES_LINKS and not t.drop_suspected), key=_preference)
        if takers:
            best = takers[0]
            reason = Reason.FAILOVER if link.state is LinkState.ACTIVE else Reason.REACHED
            changes.append(LinkChange(link.id, link.state, LinkState.ACTIVE, link.token_id, best.id, reason))
            continue
        if link.state is LinkState.ACTIVE and not breaker_open:
            lost = lost_reasons.get((link.token_id, link.company_id)) if link.token_id is not None else None
            changes.append(LinkChange(link.id, link.state, LinkState.SUSPENDED, link.token_id, link.token_id,
                                      suspension_reason(serving, lost)))
    return changes


def apply_link_changes(links: Iterable[LinkView], changes: Iterable[LinkChange]) -> list[LinkView]:
    """The links after the changes (for checking invariants and for dry runs)."""
    by_id = {c.link_id: c for c in changes}
    out = []
    for link in links:
        change = by_id.get(link.id)
        if change is None:
            out.append(link)
        else:
            out.append(LinkView(link.id, link.company_id, change.to_state, change.to_token, link.environment,
                                change.reason))
    return out
