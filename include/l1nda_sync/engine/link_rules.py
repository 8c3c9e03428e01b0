"""Which token serves which link: pure, over plain records.

A link is active while an active token reaches its company. It stays with the token that serves it; when
that token is revoked, loses rights or the company, it fails over to another active token that reaches the
company (a REST connection before a SOAP token, then debtor level before accountant level, then the most recently
validated, then the lowest id); when none does, it is suspended with the reason. A REST connection serves and takes only
the links of its own customer (`TokenView.customer_ref` = `LinkView.customer_ref`); SOAP tokens match by
environment as before. A pending link activates as soon
as a token reaches it. The one exception to "it stays": a link that a SOAP token serves moves to an active REST
connection that reaches its company (`moved_to_rest`), since SOAP ends; never while the breaker is open, and
never to a connection that is only suspected or whose reach is in doubt, so a transient fault never moves it.
The breaker is judged per credential kind: a tripped kind freezes the suspension of the links its credentials
serve (and any move to REST), never the other kind's.

At `soap_end` every SOAP token is `retired` (`l1nda_sync.migration.cutover`): it serves and takes no link, so
its links fail over to a REST connection of their customer or suspend with `soap_ended`.

Tokens that are only `invalid` (one unconfirmed 1001) or `unreachable` (transient faults) keep the links
they serve: neither is a verdict on the token, and a transient fault never moves a link. While the circuit
breaker is open nothing is suspended.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from l1nda_sync.engine.breaker import Frozen, is_frozen
from l1nda_sync.engine.token_state import CredentialKind, TokenState


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
    MOVED_TO_REST = "moved_to_rest"  # a SOAP token served it; an active REST connection reaches it now
    SOAP_ENDED = "soap_ended"  # its SOAP token was retired at soap_end and no REST connection reaches it


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
    kind: CredentialKind = CredentialKind.SOAP_TOKEN
    # A REST connection's customer (rest_connections.customer_ref): it serves and takes that customer's links only.
    customer_ref: str | None = None

    @property
    def takes_links(self) -> bool:
        """May take on a link (activation, failover, a move to REST): active, and its reach not in doubt."""
        return self.state in TAKES_LINKS and not self.drop_suspected


@dataclass(frozen=True, slots=True)
class LinkView:
    """A wanted link as the link rules see it."""

    id: int
    company_id: int
    state: LinkState
    token_id: int | None = None
    environment: str | None = None
    reason: str | None = None
    customer_ref: str | None = None


@dataclass(frozen=True, slots=True)
class LinkChange:
    """One link's move from one state and token to another, and why."""

    link_id: int
    from_state: LinkState
    to_state: LinkState
    from_token: int | None
    to_token: int | None
    reason: str
    from_kind: CredentialKind | None = None  # the kind of from_token (None: no token)
    to_kind: CredentialKind | None = None


def _preference(token: TokenView) -> tuple[int, int, float, int]:
    validated = token.last_valid_at.timestamp() if token.last_valid_at else float("-inf")
    return (0 if token.kind is CredentialKind.REST_CONNECTION else 1, 0 if token.level == "debtor" else 1,
            -validated, token.id)


def _customer_key(value: str | None) -> str | None:
    return value.strip().upper() or None if value is not None else None


def _matches(link: LinkView, token: TokenView) -> bool:
    """Whether `token` may serve `link` at all. A REST connection has no environment, so its customer decides: it
    serves only its own customer's links (never another customer's company with the same numbers)."""
    if token.kind is CredentialKind.REST_CONNECTION:
        mine = _customer_key(token.customer_ref)
        return mine is not None and mine == _customer_key(link.customer_ref)
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
        case TokenState.RETIRED:
            return Reason.SOAP_ENDED
    return lost_reason or Reason.NOT_REACHED


def _kind_of(tokens: Mapping[int, TokenView], token_id: int | None) -> CredentialKind | None:
    token = tokens.get(token_id) if token_id is not None else None
    return token.kind if token is not None else None


def _keeps(link: LinkView, serving: TokenView | None, candidates: list[TokenView]) -> bool:
    """Whether the link stays with the token that serves it. A suspected token keeps a link it serves, but only
    a good token (re)activates one."""
    good_enough = TAKES_LINKS if link.state is not LinkState.ACTIVE else KEEPS_LINKS
    return (
        serving is not None
        and serving.state in good_enough
        and (link.state is LinkState.ACTIVE or not serving.drop_suspected)
        and any(t.id == serving.id for t in candidates)
    )


def _decide_link(
    link: LinkView, serving: TokenView | None, candidates: list[TokenView], *, breaker_open: Frozen,
    lost_reasons: Mapping[tuple[int, int], str],
) -> tuple[LinkState, int | None, str] | None:
    """(state, token, reason) the link moves to, or None when it stays as it is. `breaker_open` freezes the kinds
    whose breaker tripped: no move to REST while either kind involved is frozen, and no suspension of a link whose
    serving credential's kind is frozen."""
    if _keeps(link, serving, candidates):
        assert serving is not None
        if link.state is not LinkState.ACTIVE:
            return LinkState.ACTIVE, link.token_id, Reason.REACHED
        if serving.kind is not CredentialKind.SOAP_TOKEN:
            return None  # only a SOAP token's link moves to REST (most links stay: no takers sorted for them)
        rest = [t for t in candidates if t.takes_links and t.kind is CredentialKind.REST_CONNECTION]
        if (rest and not is_frozen(breaker_open, serving.kind)
                and not is_frozen(breaker_open, CredentialKind.REST_CONNECTION)):
            return LinkState.ACTIVE, min(rest, key=_preference).id, Reason.MOVED_TO_REST
        return None
    takers = sorted((t for t in candidates if t.takes_links), key=_preference)
    if takers:
        return LinkState.ACTIVE, takers[0].id, Reason.FAILOVER if link.state is LinkState.ACTIVE else Reason.REACHED
    if link.state is LinkState.ACTIVE and not is_frozen(breaker_open, serving.kind if serving is not None else None):
        lost = lost_reasons.get((link.token_id, link.company_id)) if link.token_id is not None else None
        return LinkState.SUSPENDED, link.token_id, suspension_reason(serving, lost)
    return None


def reconcile_links(
    links: Iterable[LinkView],
    tokens: Mapping[int, TokenView],
    reachers: Mapping[int, Iterable[int]],
    *,
    lost_reasons: Mapping[tuple[int, int], str] | None = None,
    breaker_open: Frozen = False,
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
        move = _decide_link(link, serving, candidates, breaker_open=breaker_open, lost_reasons=lost_reasons)
        if move is not None:
            to_state, to_token, reason = move
            changes.append(LinkChange(link.id, link.state, to_state, link.token_id, to_token, reason,
                                      _kind_of(tokens, link.token_id), _kind_of(tokens, to_token)))
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
                                change.reason, link.customer_ref))
    return out
