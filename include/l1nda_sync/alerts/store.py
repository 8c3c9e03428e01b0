"""The alerts' SQL: problem rows, what a mail about a problem shows, and new outbox rows.

Every function works inside the caller's transaction (a psycopg2 cursor) and never commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from l1nda_sync.alerts.problems import REACH_REASONS, Kind, Problem, Stage
from l1nda_sync.registry import locks
from l1nda_sync.registry.db import fetch_one

if TYPE_CHECKING:
    from psycopg2.extensions import cursor as Cursor

Row = tuple[Any, ...]  # a row as psycopg2 returns it

CAP = 20  # entries listed per group in a mail or a problem's detail; the rest are counted

_COLUMNS = (
    "id, token_id, kind, state, stage, opened_at, last_seen_at, cause_cleared_at, resolved_at, escalated_at, "
    "last_notified_at, muted, unmuted_at, detail"
)


@dataclass(frozen=True, slots=True)
class ProblemRow:
    """One row of `problems`, as read."""

    id: int
    token_id: int | None
    kind: Kind
    state: str
    stage: Stage
    opened_at: datetime
    last_seen_at: datetime
    cause_cleared_at: datetime | None
    resolved_at: datetime | None
    escalated_at: datetime | None
    last_notified_at: datetime | None
    muted: bool
    unmuted_at: datetime | None
    detail: dict[str, Any] = field(default_factory=dict)  # JSON, as stored

    @classmethod
    def from_db(cls, row: Sequence[Any]) -> ProblemRow:
        values = list(row)
        values[2] = Kind(values[2])
        values[4] = Stage(values[4])
        values[13] = dict(values[13] or {})
        return cls(*values)

    def decision(self) -> Problem:
        return Problem(self.kind, self.opened_at, self.stage, self.cause_cleared_at, self.last_notified_at,
                       self.muted, self.unmuted_at, self.detail.get("missing_operation"))

    def as_context(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind.value, "opened_at": self.opened_at, "last_seen_at": self.last_seen_at,
            "cause_cleared_at": self.cause_cleared_at, "resolved_at": self.resolved_at,
            "escalated_at": self.escalated_at, "last_notified_at": self.last_notified_at, "muted": self.muted,
        }


def lock_key(cur: Cursor, token_id: int | None, kind: Kind) -> None:
    """Serialise everyone who may open the problem (token, kind) until this transaction ends."""
    locks.lock_problem(cur, token_id, kind)


def open_problems(cur: Cursor, token_id: int | None, kinds: Iterable[Kind]) -> dict[Kind, ProblemRow]:
    """The open problems of one token (None: the provider's) among `kinds`, locked for update."""
    cur.execute(
        f"""SELECT {_COLUMNS} FROM problems
            WHERE coalesce(token_id, 0) = %s AND kind = ANY(%s) AND state = 'open' FOR UPDATE""",
        (token_id or 0, [str(k) for k in kinds]),
    )
    rows = [ProblemRow.from_db(r) for r in cur.fetchall()]
    return {r.kind: r for r in rows}


def open_problem_keys(cur: Cursor, token_ids: Sequence[int], kinds: Iterable[Kind]) -> set[tuple[int, Kind]]:
    """(token id, kind) of every open problem of these tokens among `kinds`, unlocked: a look-up that tells which
    tokens `open_problems` would find nothing for."""
    cur.execute("SELECT token_id, kind FROM problems WHERE token_id = ANY(%s) AND kind = ANY(%s) AND state = 'open'",
                (list(token_ids), [str(k) for k in kinds]))
    return {(token_id, Kind(kind)) for token_id, kind in cur.fetchall()}


def get_problem(cur: Cursor, problem_id: int, *, lock: bool = False) -> ProblemRow | None:
    cur.execute(f"SELECT {_COLUMNS} FROM problems WHERE id = %s" + (" FOR UPDATE" if lock else ""), (problem_id,))
    row = cur.fetchone()
    return ProblemRow.from_db(row) if row else None


def list_problems(
    cur: Cursor, *, state: str | None = "open", kind: str | None = None, token_id: int | None = None,
    limit: int = 200,
) -> list[ProblemRow]:
    where: list[str] = []
    args: list[object] = []
    if state is not None:
        where.append("state = %s")
        args.append(state)
    if kind is not None:
        where.append("kind = %s")
        args.append(kind)
    if token_id is not None:
        where.append("token_id = %s")
        args.append(token_id)
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    cur.execute(f"SELECT {_COLUMNS} FROM problems {clause} ORDER BY opened_at DESC, id DESC LIMIT %s",
                (*args, limit))
    return [ProblemRow.from_db(r) for r in cur.fetchall()]


def insert_problem(
    cur: Cursor, token_id: int | None, kind: Kind, stage: Stage, detail: Mapping[str, Any], now: datetime
) -> ProblemRow:
    cur.execute(
        f"""INSERT INTO problems (token_id, kind, state, stage, opened_at, last_seen_at, detail)
            VALUES (%s, %s, 'open', %s, %s, %s, %s::jsonb) RETURNING {_COLUMNS}""",
        (token_id, str(kind), str(stage), now, now, json.dumps(dict(detail), default=str)),
    )
    return ProblemRow.from_db(fetch_one(cur))


def update_problem(cur: Cursor, problem_id: int, *, detail: Mapping[str, Any] | None = None,
                   **columns: object) -> ProblemRow:
    """Set the given columns; `detail` merges into the stored detail."""
    sets = [f"{name} = %s" for name in columns]
    args = list(columns.values())
    if detail is not None:
        sets.append("detail = detail || %s::jsonb")
        args.append(json.dumps(dict(detail), default=str))
    cur.execute(f"UPDATE problems SET {', '.join(sets)} WHERE id = %s RETURNING {_COLUMNS}", (*args, problem_id))
    return ProblemRow.from_db(fetch_one(cur))


# -- what a mail shows --------------------------------------------------------------------------------------

_TOKEN_COLUMNS = (
    "id", "label", "username", "level", "token_hint", "domain", "state", "contact_emails", "contact_language",
    "first_invalid_at", "first_transient_at", "last_valid_at", "kind", "customer_ref",
)


def load_token(cur: Cursor, token_id: int) -> dict[str, Any] | None:
    """The token as mails show it: never its secret, only the stored hint ('…a7c3'); its `kind` (a REST
    connection shows as a connection) and, for a REST connection, the customer it was consented for."""
    columns = ", ".join(f"t.{c}" for c in _TOKEN_COLUMNS[:-1])
    cur.execute(f"""SELECT {columns}, rc.customer_ref FROM tokens t
                    LEFT JOIN rest_connections rc ON rc.token_id = t.id WHERE t.id = %s""", (token_id,))
    row = cur.fetchone()
    if row is None:
        return None
    token = dict(zip(_TOKEN_COLUMNS, row, strict=True))
    token["hint"] = token.pop("token_hint")
    token["contact_emails"] = list(token["contact_emails"] or [])
    return token


def _group(rows: Sequence[Row], names: Sequence[str]) -> dict[str, Any]:
    """Rows of (..., total) from a `count(*) OVER ()` query -> {count, entries (capped), more}."""
    count = rows[0][-1] if rows else 0
    entries = [dict(zip(names, r[:-1], strict=True)) for r in rows]
    return {"count": count, "entries": entries, "more": max(0, count - len(entries))}


# A link suspended with its token because the token stopped reaching its company (what access_lost is about).
_SUSPENDED_FOR_REACH = "l.state = 'suspended' AND l.reason = ANY(%s)"


def _links_suspended_for_reach(cur: Cursor, token_id: int, limit: int) -> list[Row]:
    cur.execute(
        f"""SELECT l.id, l.customer_ref, l.company_id, rc.name, l.state, l.reason, count(*) OVER ()
            FROM links l
            LEFT JOIN reach_companies rc ON rc.token_id = l.token_id AND rc.company_id = l.company_id
            WHERE l.token_id = %s AND {_SUSPENDED_FOR_REACH}
            ORDER BY rc.name NULLS LAST, l.company_id, l.id LIMIT %s""",
        (token_id, sorted(REACH_REASONS), limit),
    )
    return cur.fetchall()


def tokens_losing_access(cur: Cursor, token_ids: Sequence[int]) -> set[int]:
    """The tokens among these with a link suspended for reach (`access_lost_links` would count some)."""
    cur.execute(f"SELECT DISTINCT l.token_id FROM links l WHERE l.token_id = ANY(%s) AND {_SUSPENDED_FOR_REACH}",
                (list(token_ids), sorted(REACH_REASONS)))
    return {token_id for (token_id,) in cur.fetchall()}


_LINK_NAMES = ("id", "customer_ref", "company_id", "company_name", "state", "reason")
_COMPANY_NAMES = ("id", "number", "name", "debtor_name")
_DEBTOR_NAMES = ("id", "number", "name")


def access_lost_links(cur: Cursor, token_id: int) -> dict[str, Any]:
    """The links suspended with this token because it no longer reaches their company (capped), and counts."""
    return _group(_links_suspended_for_reach(cur, token_id, CAP), _LINK_NAMES)


def affected(cur: Cursor, kind: Kind, token_id: int | None) -> dict[str, Any]:
    """Debtors, companies and links a problem touches: counts and the first CAP of each, by name."""
    empty = {"count": 0, "entries": [], "more": 0}
    if token_id is None:
        return {"debtors": empty, "companies": empty, "links": empty}
    if kind is Kind.ACCESS_LOST:
        links = access_lost_links(cur, token_id)
        cur.execute(
            """SELECT DISTINCT l.company_id FROM links l
               WHERE l.token_id = %s AND l.state = 'suspended' AND l.reason = ANY(%s)""",
            (token_id, sorted(REACH_REASONS)),
        )
        company_ids = [r[0] for r in cur.fetchall()]
        company_filter, debtor_filter = "AND rc.company_id = ANY(%s)", (
            "AND rd.debtor_id IN (SELECT debtor_id FROM reach_companies "
            "WHERE token_id = %s AND company_id = ANY(%s))")
        company_args: tuple[object, ...] = (company_ids,)
        debtor_args: tuple[object, ...] = (token_id, company_ids)
    else:
        cur.execute(
            """SELECT id, customer_ref, company_id,
                      (SELECT name FROM reach_companies rc WHERE rc.token_id = l.token_id
                                                            AND rc.company_id = l.company_id),
                      state, reason, count(*) OVER ()
               FROM links l WHERE token_id = %s AND wanted AND state IN ('active', 'suspended')
               ORDER BY 4 NULLS LAST, company_id, id LIMIT %s""",
            (token_id, CAP),
        )
        links = _group(cur.fetchall(), _LINK_NAMES)
        company_filter, debtor_filter = "AND rc.lost_at IS NULL", "AND rd.lost_at IS NULL"
        company_args, debtor_args = (), ()
    cur.execute(
        f"""SELECT rc.company_id, rc.number, rc.name, rd.name, count(*) OVER ()
            FROM reach_companies rc
            LEFT JOIN reach_debtors rd ON rd.token_id = rc.token_id AND rd.debtor_id = rc.debtor_id
            WHERE rc.token_id = %s {company_filter}
            ORDER BY rc.name NULLS LAST, rc.company_id LIMIT %s""",
        (token_id, *company_args, CAP),
    )
    companies = _group(cur.fetchall(), _COMPANY_NAMES)
    cur.execute(
        f"""SELECT rd.debtor_id, rd.number, rd.name, count(*) OVER ()
            FROM reach_debtors rd WHERE rd.token_id = %s {debtor_filter}
            ORDER BY rd.name NULLS LAST, rd.debtor_id LIMIT %s""",
        (token_id, *debtor_args, CAP),
    )
    debtors = _group(cur.fetchall(), _DEBTOR_NAMES)
    return {"debtors": debtors, "companies": companies, "links": links}


def insert_outbox(
    cur: Cursor, *, problem_id: int | None, event: str, audience: str, language: str, recipients: Sequence[str],
    subject: str, body_text: str, body_html: str, message_id: str, now: datetime,
) -> int:
    cur.execute(
        """INSERT INTO outbox (problem_id, event, audience, language, recipients, subject, body_text, body_html,
                               message_id, created_at, next_attempt_at, state)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'pending') RETURNING id""",
        (problem_id, event, audience, language, list(recipients), subject, body_text, body_html, message_id, now,
         now),
    )
    outbox_id: int = fetch_one(cur)[0]
    return outbox_id
