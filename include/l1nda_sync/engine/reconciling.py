"""Reconcile every wanted link with the registry's current tokens and reach, in one transaction.

Reads three sets in bulk (links, tokens, who reaches the linked companies), decides with the pure
`reconcile_links`, and writes only the links that change, each with a link event.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from l1nda_sync.engine.breaker import Frozen
from l1nda_sync.engine.link_rules import LinkChange, LinkState, LinkView, TokenView, reconcile_links
from l1nda_sync.engine.token_state import CredentialKind, TokenState, member_of

if TYPE_CHECKING:
    from psycopg2.extensions import cursor as Cursor


class LinkHooks(Protocol):
    """What the alerting side does inside the same transaction as the link changes that cause it."""

    def links_changed(self, cur: Cursor, changes: list[LinkChange], *, run_id: int | None, now: datetime) -> None: ...


_LINK_STATE, _STATE, _KIND = member_of(LinkState), member_of(TokenState), member_of(CredentialKind)

# A token reaching a company: its debtor there (None when not known).
DebtorOf = dict[tuple[int, int], int | None]


def load_link_world(cur: Cursor, customer_ref: str | None = None, *, lock: bool = True
                    ) -> tuple[list[LinkView], dict[int, TokenView], dict[int, set[int]], DebtorOf]:
    """The wanted links (locked for update unless `lock` is off; only one customer's when given), the tokens not
    removed, and who reaches the linked companies."""
    cur.execute(
        """SELECT id, company_id, state, token_id, environment, reason, customer_ref FROM links
           WHERE state <> 'cancelled' AND wanted AND (%s::text IS NULL OR customer_ref = %s)
           ORDER BY id""" + (" FOR UPDATE" if lock else ""), (customer_ref, customer_ref)
    )
    links = [LinkView(i, c, _LINK_STATE(s), t, e, r, ref) for i, c, s, t, e, r, ref in cur.fetchall()]
    cur.execute("""SELECT t.id, t.level, t.state, t.domain, t.last_valid_at, t.drop_since IS NOT NULL, t.kind,
                          rc.customer_ref
                   FROM tokens t LEFT JOIN rest_connections rc ON rc.token_id = t.id
                   WHERE t.state <> 'removed'""")
    tokens = {i: TokenView(i, lvl, _STATE(s), d, v, dropped, _KIND(k), ref)
              for i, lvl, s, d, v, dropped, k, ref in cur.fetchall()}
    cur.execute(
        """SELECT company_id, token_id, debtor_id FROM reach_companies
           WHERE lost_at IS NULL AND company_id = ANY(%s)""",
        (sorted({link.company_id for link in links}),),
    )
    reachers: dict[int, set[int]] = {}
    debtor_of: DebtorOf = {}
    for company_id, token_id, debtor_id in cur.fetchall():
        reachers.setdefault(company_id, set()).add(token_id)
        debtor_of[(token_id, company_id)] = debtor_id
    return links, tokens, reachers, debtor_of


def _lost_reasons(cur: Cursor, pairs: list[tuple[int, int]]) -> dict[tuple[int, int], str]:
    """Why each (token, company) pair was last lost, from the reach events."""
    if not pairs:
        return {}
    cur.execute(
        """SELECT DISTINCT ON (e.token_id, e.entity_id) e.token_id, e.entity_id, e.detail->>'why'
           FROM reach_events e
           JOIN unnest(%s::bigint[], %s::int[]) AS p(token_id, company_id)
             ON e.token_id = p.token_id AND e.entity_id = p.company_id
           WHERE e.entity = 'company' AND e.change = 'lost'
           ORDER BY e.token_id, e.entity_id, e.at DESC, e.id DESC""",
        ([p[0] for p in pairs], [p[1] for p in pairs]),
    )
    return {(t, c): why for t, c, why in cur.fetchall() if why}


def reconcile_all(
    cur: Cursor,
    *,
    now: Callable[[], datetime],
    run_id: int | None = None,
    breaker_open: Frozen = False,
    hooks: LinkHooks | None = None,
    customer_ref: str | None = None,
) -> list[LinkChange]:
    """Bring every link (or one customer's links) in line, inside the caller's transaction; returns the changes
    made."""
    links, tokens, reachers, debtor_of = load_link_world(cur, customer_ref)
    changes = reconcile_links(links, tokens, reachers, breaker_open=breaker_open)
    by_id = {link.id: link for link in links}
    suspended = [(c.from_token, by_id[c.link_id].company_id) for c in changes
                 if c.to_state is LinkState.SUSPENDED and c.from_token is not None]
    if suspended:
        reasons = _lost_reasons(cur, suspended)
        if reasons:
            changes = reconcile_links(links, tokens, reachers, lost_reasons=reasons, breaker_open=breaker_open)
    if not changes:
        return []
    at = now()
    write_link_changes(cur, changes, links, debtor_of, at=at, run_id=run_id, hooks=hooks)
    return changes


def write_link_changes(cur: Cursor, changes: list[LinkChange], links: list[LinkView], debtor_of: DebtorOf, *,
                       at: datetime, run_id: int | None, hooks: LinkHooks | None, actor: str = "sync") -> None:
    """Write decided link changes (rows and link events) and call the hooks, inside the caller's transaction."""
    if not changes:
        return
    by_id = {link.id: link for link in links}
    from psycopg2.extras import execute_values

    execute_values(
        cur,
        """UPDATE links AS l SET state = v.state, token_id = v.token_id, reason = v.reason,
               debtor_id = COALESCE(v.debtor_id, l.debtor_id),
               activated_at = CASE WHEN v.state = 'active' AND l.state <> 'active' THEN v.at ELSE l.activated_at END,
               suspended_at = CASE WHEN v.state = 'suspended' THEN v.at ELSE l.suspended_at END,
               updated_at = v.at
           FROM (VALUES %s) AS v(id, state, token_id, reason, debtor_id, at)
           WHERE l.id = v.id""",
        [
            (c.link_id, c.to_state.value, c.to_token, str(c.reason),
             debtor_of.get((c.to_token, by_id[c.link_id].company_id)) if c.to_token is not None else None, at)
            for c in changes
        ],
        template="(%s::bigint, %s::text, %s::bigint, %s::text, %s::int, %s::timestamptz)",
    )
    execute_values(
        cur,
        """INSERT INTO link_events (link_id, run_id, at, actor, from_state, to_state, from_token_id, to_token_id,
                                   reason)
           VALUES %s""",
        [(c.link_id, run_id, at, actor, c.from_state.value, c.to_state.value, c.from_token, c.to_token,
          str(c.reason)) for c in changes],
    )
    if hooks is not None:
        hooks.links_changed(cur, changes, run_id=run_id, now=at)


def describe(change: LinkChange) -> str:
    """One line for logs and reports."""
    arrow = f"{change.from_state.value} -> {change.to_state.value}"
    token = f"token {change.from_token} -> {change.to_token}" if change.from_token != change.to_token else (
        f"token {change.to_token}")
    return f"link {change.link_id}: {arrow} ({token}; {change.reason})"


