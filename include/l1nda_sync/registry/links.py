"""The links table from the operator's side: request a link, list them, cancel one.

The sync engine activates, fails over and suspends links; these functions only record what L1NDA wants.
Every change writes a link event in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from l1nda_sync.registry import locks
from l1nda_sync.registry.db import fetch_one, reading
from l1nda_sync.registry.errors import Conflict, NotFound

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor

LINK_COLUMNS = (
    "id, customer_ref, environment, company_id, debtor_id, wanted, state, token_id, reason, requested_at, "
    "activated_at, suspended_at, cancelled_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class Link:
    """A row of links: a company L1NDA wants served, and the token serving it."""

    id: int
    customer_ref: str
    environment: str | None
    company_id: int
    debtor_id: int | None
    wanted: bool
    state: str
    token_id: int | None
    reason: str | None
    requested_at: datetime
    activated_at: datetime | None
    suspended_at: datetime | None
    cancelled_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Reacher:
    """A token whose current reach holds a company."""

    token_id: int
    label: str
    state: str
    domain: str | None


def _event(cur: Cursor, link_id: int, actor: str, before: str | None, after: str, token_before: int | None,
           token_after: int | None, reason: str) -> None:
    cur.execute(
        """INSERT INTO link_events (link_id, actor, from_state, to_state, from_token_id, to_token_id, reason)
           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        (link_id, actor, before, after, token_before, token_after, reason),
    )


def _fetch(cur: Cursor, link_id: int, *, for_update: bool = False) -> Link:
    cur.execute(f"SELECT {LINK_COLUMNS} FROM links WHERE id = %s" + (" FOR UPDATE" if for_update else ""), (link_id,))
    row = cur.fetchone()
    if row is None:
        raise NotFound("ID", f"no link with id {link_id}; see `l1nda-sync links list`")
    return Link(*row)


def get_link(conn: Connection, link_id: int) -> Link:
    with reading(conn) as cur:
        return _fetch(cur, link_id)


def list_links(conn: Connection, *, state: str | None = None, token_id: int | None = None) -> list[Link]:
    where: list[str] = []
    args: list[object] = []
    if state is not None:
        where.append("state = %s")
        args.append(state)
    if token_id is not None:
        where.append("token_id = %s")
        args.append(token_id)
    sql = f"SELECT {LINK_COLUMNS} FROM links" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
    with reading(conn) as cur:
        cur.execute(sql, args)
        return [Link(*r) for r in cur.fetchall()]


def reachers(conn: Connection, company_id: int, environment: str | None = None) -> list[Reacher]:
    """Live tokens that reach the company now (per their last successful check)."""
    with reading(conn) as cur:
        cur.execute(
            """SELECT t.id, t.label, t.state, t.domain FROM reach_companies r JOIN tokens t ON t.id = r.token_id
               WHERE r.company_id = %s AND r.lost_at IS NULL AND t.removed_at IS NULL
                 AND (%s::text IS NULL OR t.domain IS NULL OR t.domain = %s)
               ORDER BY t.id""",
            (company_id, environment, environment),
        )
        return [Reacher(*r) for r in cur.fetchall()]


def request_link(conn: Connection, *, customer_ref: str, company_id: int, environment: str | None, actor: str) -> Link:
    """A wanted link, pending until a sync finds an active token that reaches the company."""
    with conn.cursor() as cur:
        locks.lock_link_requests(cur, company_id)
        cur.execute(
            f"""SELECT {LINK_COLUMNS} FROM links
                WHERE wanted AND company_id = %s AND coalesce(environment, '') = coalesce(%s, '')""",
            (company_id, environment),
        )
        existing = cur.fetchone()
        if existing is not None:
            link = Link(*existing)
            raise Conflict("--company", f"company {company_id}{_in(environment)} already has link {link.id} "
                                        f"(customer {link.customer_ref}, state {link.state}); cancel it first with "
                                        f"`l1nda-sync links cancel {link.id}` if it should change")
        cur.execute(
            f"""INSERT INTO links (customer_ref, environment, company_id, reason)
                VALUES (%s, %s, %s, 'requested') RETURNING {LINK_COLUMNS}""",
            (customer_ref, environment, company_id),
        )
        link = Link(*fetch_one(cur))
        _event(cur, link.id, actor, None, link.state, None, None, "requested")
    return link


def cancel_link(conn: Connection, link_id: int, *, actor: str) -> tuple[Link, bool]:
    """No longer wanted: state 'cancelled'. Returns (link, changed); cancelling twice changes nothing."""
    with conn.cursor() as cur:
        link = _fetch(cur, link_id, for_update=True)
        if link.state == "cancelled":
            return link, False
        cur.execute(
            f"""UPDATE links SET wanted = false, state = 'cancelled', reason = 'cancelled', cancelled_at = now(),
                    updated_at = now() WHERE id = %s RETURNING {LINK_COLUMNS}""",
            (link_id,),
        )
        updated = Link(*fetch_one(cur))
        _event(cur, link_id, actor, link.state, "cancelled", link.token_id, link.token_id, "cancelled")
    return updated, True


def _in(environment: str | None) -> str:
    return f" in environment {environment}" if environment else ""


def pending_reasons(cur: Cursor, link_ids: list[int] | None = None) -> dict[int, str]:
    """Why each wanted pending link (or those of `link_ids`) is still pending, in words for `links list`.

    'no registered token reaches company 123' when no live token's current reach holds it; 'reached only by
    token 4 (revoked)' when the tokens that reach it are not active; 'reached by active token 2: the next sync
    run activates it' otherwise.
    """
    cur.execute(
        """SELECT l.id, l.company_id, l.environment,
                  array_remove(array_agg(t.id ORDER BY t.id), NULL),
                  array_remove(array_agg(t.state ORDER BY t.id), NULL)
           FROM links l
           LEFT JOIN reach_companies r ON r.company_id = l.company_id AND r.lost_at IS NULL
           LEFT JOIN tokens t ON t.id = r.token_id AND t.removed_at IS NULL
                              AND (l.environment IS NULL OR t.domain IS NULL OR t.domain = l.environment)
           WHERE l.state = 'pending' AND l.wanted AND (%s::bigint[] IS NULL OR l.id = ANY(%s::bigint[]))
           GROUP BY l.id, l.company_id, l.environment""",
        (link_ids, link_ids),
    )
    reasons: dict[int, str] = {}
    for link_id, company_id, environment, token_ids, states in cur.fetchall():
        where = f"company {company_id}{_in(environment)}"
        active = [t for t, s in zip(token_ids, states, strict=True) if s == "active"]
        if active:
            reasons[link_id] = (f"reached by active token {', '.join(map(str, active))}: the next sync run "
                                "activates it")
        elif token_ids:
            shown = ", ".join(f"{t} ({s})" for t, s in zip(token_ids, states, strict=True))
            reasons[link_id] = f"reached only by token {shown}, which is not active"
        else:
            reasons[link_id] = (f"no registered token reaches {where}: add the customer's token "
                                "(`l1nda-sync tokens add`) or check its filter in Nmbrs")
    return reasons
