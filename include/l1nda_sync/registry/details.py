"""Everything known about one token, for `l1nda-sync tokens show`: reach, checks, links, problems, history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from l1nda_sync.registry.db import fetch_one, reading
from l1nda_sync.registry.links import LINK_COLUMNS, Link
from l1nda_sync.registry.tokens import Token, fetch_token

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection


@dataclass(frozen=True, slots=True)
class ReachedDebtor:
    """A debtor the token reaches now."""

    debtor_id: int
    number: str | None
    name: str | None
    tags: list[str]
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class ReachedCompany:
    """A company the token reaches now."""

    company_id: int
    debtor_id: int | None
    number: int | None
    name: str | None
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class CheckRow:
    """One stored check of the token."""

    id: int
    run_id: int | None
    checked_at: datetime
    outcome: str
    fault_code: int | None
    detail: str | None
    duration_ms: int
    calls: int
    debtors: int | None
    companies: int | None


@dataclass(frozen=True, slots=True)
class ProblemRow:
    """An open problem of the token."""

    id: int
    kind: str
    state: str
    opened_at: datetime
    last_seen_at: datetime
    muted: bool
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """One entry of the token's history (token_events)."""

    id: int
    at: datetime
    actor: str
    action: str
    from_state: str | None
    to_state: str | None
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TokenDetail:
    """Everything `tokens show` prints about one token."""

    token: Token
    debtors: list[ReachedDebtor]
    companies: list[ReachedCompany]
    lost_debtors: int
    lost_companies: int
    checks: list[CheckRow]
    links: list[Link]
    problems: list[ProblemRow]
    events: list[TokenEvent]


def token_detail(conn: Connection, token_id: int, *, checks: int = 10, events: int = 10) -> TokenDetail:
    """One consistent read of a token and what hangs off it (the newest `checks` and `events` only)."""
    with reading(conn) as cur:
        token = fetch_token(cur, token_id)
        cur.execute(
            """SELECT debtor_id, number, name, tags, first_seen, last_seen FROM reach_debtors
               WHERE token_id = %s AND lost_at IS NULL ORDER BY debtor_id""",
            (token_id,),
        )
        debtors = [ReachedDebtor(*r) for r in cur.fetchall()]
        cur.execute(
            """SELECT company_id, debtor_id, number, name, first_seen, last_seen FROM reach_companies
               WHERE token_id = %s AND lost_at IS NULL ORDER BY company_id""",
            (token_id,),
        )
        companies = [ReachedCompany(*r) for r in cur.fetchall()]
        cur.execute(
            """SELECT (SELECT count(*) FROM reach_debtors WHERE token_id = %(t)s AND lost_at IS NOT NULL),
                      (SELECT count(*) FROM reach_companies WHERE token_id = %(t)s AND lost_at IS NOT NULL)""",
            {"t": token_id},
        )
        lost_debtors, lost_companies = fetch_one(cur)
        cur.execute(
            """SELECT id, run_id, checked_at, outcome, fault_code, detail, duration_ms, calls, debtors, companies
               FROM checks WHERE token_id = %s ORDER BY checked_at DESC, id DESC LIMIT %s""",
            (token_id, checks),
        )
        check_rows = [CheckRow(*r) for r in cur.fetchall()]
        cur.execute(
            f"SELECT {LINK_COLUMNS} FROM links WHERE token_id = %s AND state <> 'cancelled' ORDER BY id", (token_id,)
        )
        links = [Link(*r) for r in cur.fetchall()]
        cur.execute(
            """SELECT id, kind, state, opened_at, last_seen_at, muted, detail FROM problems
               WHERE token_id = %s AND state = 'open' ORDER BY opened_at""",
            (token_id,),
        )
        problems = [ProblemRow(*r) for r in cur.fetchall()]
        cur.execute(
            """SELECT id, at, actor, action, from_state, to_state, detail FROM token_events
               WHERE token_id = %s ORDER BY at DESC, id DESC LIMIT %s""",
            (token_id, events),
        )
        history = [TokenEvent(*r) for r in cur.fetchall()]
    return TokenDetail(token, debtors, companies, int(lost_debtors), int(lost_companies), check_rows, links,
                       problems, history)
