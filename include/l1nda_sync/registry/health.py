"""Read-only queries for the operators' token-health page (the Airflow plugin, `l1nda_sync.ui`).

Every function reads inside the caller's transaction (the page opens one read-only transaction per request) and
returns plain dataclasses. Lists are paginated (limit/offset, ordered by id) and fetch names for the rows on the
page only, so a page costs the same on 50 or 50,000 credentials (`python -m l1nda_dev.bench.ui_pages`).
Secrets never leave here: only `token_hint`, the masked tail stored beside the ciphertext, is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from l1nda_sync.registry.db import fetch_one

if TYPE_CHECKING:
    from psycopg2.extensions import cursor as Cursor


@dataclass(frozen=True, slots=True)
class Page:
    """Where a list page is: `total` rows match the filter, `offset` is the first shown."""

    total: int
    offset: int
    limit: int

    @property
    def number(self) -> int:
        return self.offset // self.limit + 1

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.limit))


@dataclass(frozen=True, slots=True)
class CredentialRow:
    """A credential as the list shows it: names and state, the masked tail only."""

    id: int
    label: str
    kind: str
    level: str
    state: str
    state_since: datetime
    token_hint: str
    last_checked_at: datetime | None
    last_outcome: str | None
    next_check_at: datetime
    customer_ref: str | None  # a REST connection's customer
    customers: tuple[str, ...] = ()  # customers of the links it serves


@dataclass(frozen=True, slots=True)
class LinkRow:
    """A link with the names around it: customer, company and debtor names, the credential serving it."""

    id: int
    customer_ref: str
    environment: str | None
    company_id: int
    company_name: str | None
    debtor_id: int | None
    debtor_name: str | None
    state: str
    reason: str | None
    token_id: int | None
    token_label: str | None
    token_kind: str | None
    requested_at: datetime
    updated_at: datetime
    pending_reason: str | None = None


@dataclass(frozen=True, slots=True)
class LinkEventRow:
    """One change of a link (link_events)."""

    link_id: int
    at: datetime
    actor: str
    from_state: str | None
    to_state: str
    from_token_id: int | None
    to_token_id: int | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class MailRow:
    """A mail of the outbox (no body: the subject, who it is for, its state)."""

    id: int
    problem_id: int | None
    event: str
    audience: str
    recipients: tuple[str, ...]
    subject: str
    state: str
    created_at: datetime
    sent_at: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class RunRow:
    """A sync run with its stored report (`runs.summary`)."""

    id: int
    dag_run_id: str | None
    started_at: datetime
    finished_at: datetime | None
    dry_run: bool
    forced: bool
    state: str
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StateCount:
    """How many live credentials of a kind are in a state."""

    kind: str
    state: str
    count: int


# -- overview ---------------------------------------------------------------------------------------------------

def state_counts(cur: Cursor) -> list[StateCount]:
    """Live credentials per kind and state."""
    cur.execute("""SELECT kind, state, count(*) FROM tokens WHERE removed_at IS NULL
                   GROUP BY kind, state ORDER BY kind, state""")
    return [StateCount(k, s, int(n)) for k, s, n in cur.fetchall()]


def last_runs(cur: Cursor, limit: int = 10) -> list[RunRow]:
    cur.execute("""SELECT id, dag_run_id, started_at, finished_at, dry_run, forced, state, summary FROM runs
                   ORDER BY started_at DESC, id DESC LIMIT %s""", (limit,))
    return [RunRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], dict(r[7] or {})) for r in cur.fetchall()]


def token_labels(cur: Cursor, ids: Sequence[int]) -> dict[int, str]:
    if not ids:
        return {}
    cur.execute("SELECT id, label FROM tokens WHERE id = ANY(%s)", (list(ids),))
    return {int(i): label for i, label in cur.fetchall()}


# -- credentials ------------------------------------------------------------------------------------------------

def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def list_credentials(cur: Cursor, *, state: str | None = None, kind: str | None = None, customer: str | None = None,
                     limit: int = 50, offset: int = 0) -> tuple[list[CredentialRow], Page]:
    """Credentials by id. `customer` matches the label (part of it, any case), a REST connection's customer or
    the customer of a link the credential serves; removed ones only when `state` is 'removed'."""
    where = ["t.state = %(state)s" if state else "t.removed_at IS NULL"]
    args: dict[str, Any] = {"state": state, "kind": kind, "limit": limit, "offset": offset}
    if kind:
        where.append("t.kind = %(kind)s")
    if customer:
        args.update(like=_like(customer), ref=customer.strip().upper())
        where.append("""(t.label ILIKE %(like)s OR rc.customer_ref = %(ref)s
                         OR EXISTS (SELECT 1 FROM links l WHERE l.token_id = t.id AND l.customer_ref = %(ref)s))""")
    base = f"FROM tokens t LEFT JOIN rest_connections rc ON rc.token_id = t.id WHERE {' AND '.join(where)}"
    cur.execute(f"SELECT count(*) {base}", args)
    total = int(fetch_one(cur)[0])
    cur.execute(f"""SELECT t.id, t.label, t.kind, t.level, t.state, t.state_since, t.token_hint, t.last_checked_at,
                           t.last_outcome, t.next_check_at, rc.customer_ref
                    {base} ORDER BY t.id LIMIT %(limit)s OFFSET %(offset)s""", args)
    rows = [CredentialRow(*r) for r in cur.fetchall()]
    customers = link_customers(cur, [r.id for r in rows])
    rows = [replace(r, customers=customers.get(r.id, ())) for r in rows]
    return rows, Page(total, offset, limit)


def link_customers(cur: Cursor, token_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
    """The customers of the links each credential serves (not cancelled)."""
    if not token_ids:
        return {}
    cur.execute("""SELECT token_id, array_agg(DISTINCT customer_ref ORDER BY customer_ref) FROM links
                   WHERE token_id = ANY(%s) AND state <> 'cancelled' GROUP BY token_id""", (list(token_ids),))
    return {int(t): tuple(refs) for t, refs in cur.fetchall()}


def credential_mails(cur: Cursor, token_id: int, limit: int = 20) -> list[MailRow]:
    """The newest mails about the credential's problems."""
    cur.execute("""SELECT o.id, o.problem_id, o.event, o.audience, o.recipients, o.subject, o.state, o.created_at,
                          o.sent_at, o.last_error
                   FROM outbox o JOIN problems p ON p.id = o.problem_id
                   WHERE p.token_id = %s ORDER BY o.id DESC LIMIT %s""", (token_id, limit))
    return [_mail(r) for r in cur.fetchall()]


def _mail(r: Sequence[Any]) -> MailRow:
    return MailRow(r[0], r[1], r[2], r[3], tuple(r[4] or ()), r[5], r[6], r[7], r[8], r[9])


def rest_customer(cur: Cursor, token_id: int) -> str | None:
    cur.execute("SELECT customer_ref FROM rest_connections WHERE token_id = %s", (token_id,))
    row = cur.fetchone()
    return None if row is None else str(row[0])


# -- links ------------------------------------------------------------------------------------------------------

_LINK_SELECT = """
SELECT l.id, l.customer_ref, l.environment, l.company_id,
       (SELECT rc.name FROM reach_companies rc WHERE rc.company_id = l.company_id AND rc.name IS NOT NULL
          ORDER BY rc.lost_at IS NULL DESC, rc.lost_at DESC, rc.token_id LIMIT 1),
       l.debtor_id,
       (SELECT rd.name FROM reach_debtors rd WHERE rd.debtor_id = l.debtor_id AND rd.name IS NOT NULL
          ORDER BY rd.lost_at IS NULL DESC, rd.token_id LIMIT 1),
       l.state, l.reason, l.token_id, t.label, t.kind, l.requested_at, l.updated_at
FROM links l LEFT JOIN tokens t ON t.id = l.token_id
"""


def list_links(cur: Cursor, *, customer: str | None = None, state: str | None = None, token_id: int | None = None,
               limit: int = 50, offset: int = 0) -> tuple[list[LinkRow], Page]:
    """Links by id (cancelled ones only when `state` asks), with names and, for a pending link, why."""
    where = ["l.state = %(state)s" if state else "l.state <> 'cancelled'"]
    args: dict[str, Any] = {"state": state, "limit": limit, "offset": offset}
    if customer:
        where.append("l.customer_ref = %(ref)s")
        args["ref"] = customer.strip().upper()
    if token_id is not None:
        where.append("l.token_id = %(token)s")
        args["token"] = token_id
    clause = " AND ".join(where)
    cur.execute(f"SELECT count(*) FROM links l WHERE {clause}", args)
    total = int(fetch_one(cur)[0])
    cur.execute(f"{_LINK_SELECT} WHERE {clause} ORDER BY l.id LIMIT %(limit)s OFFSET %(offset)s", args)
    rows = [LinkRow(*r) for r in cur.fetchall()]
    return with_pending_reasons(cur, rows), Page(total, offset, limit)


def links_of_credential(cur: Cursor, token_id: int) -> list[LinkRow]:
    """Links the credential serves or last served (a suspended link remembers it), cancelled ones left out."""
    cur.execute(f"{_LINK_SELECT} WHERE l.token_id = %s AND l.state <> 'cancelled' ORDER BY l.id", (token_id,))
    return with_pending_reasons(cur, [LinkRow(*r) for r in cur.fetchall()])


def with_pending_reasons(cur: Cursor, rows: list[LinkRow]) -> list[LinkRow]:
    from l1nda_sync.registry.links import pending_reasons

    pending = [r.id for r in rows if r.state == "pending"]
    if not pending:
        return rows
    reasons = pending_reasons(cur, pending)
    return [replace(r, pending_reason=reasons[r.id]) if r.id in reasons else r for r in rows]


def link_history(cur: Cursor, link_ids: Sequence[int], per_link: int = 5) -> dict[int, list[LinkEventRow]]:
    """The newest `per_link` events of each link."""
    if not link_ids:
        return {}
    cur.execute("""SELECT e.link_id, e.at, e.actor, e.from_state, e.to_state, e.from_token_id, e.to_token_id, e.reason
                   FROM unnest(%s::bigint[]) AS w(id)
                   CROSS JOIN LATERAL (SELECT * FROM link_events le WHERE le.link_id = w.id
                                       ORDER BY le.at DESC, le.id DESC LIMIT %s) e""",
                (list(link_ids), per_link))
    history: dict[int, list[LinkEventRow]] = {}
    for row in cur.fetchall():
        history.setdefault(int(row[0]), []).append(LinkEventRow(*row))
    return history


# -- outbox -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class WebhookRow:
    """A webhook event of the outbox (its payload left out)."""

    id: int
    event: str
    state: str
    attempts: int
    created_at: datetime
    last_error: str | None


def stuck_mails(cur: Cursor, limit: int = 200) -> list[MailRow]:
    """Mails that need a person: 'uncertain' (may have arrived) and 'failed' (refused for good)."""
    cur.execute("""SELECT id, problem_id, event, audience, recipients, subject, state, created_at, sent_at, last_error
                   FROM outbox WHERE state IN ('uncertain', 'failed') ORDER BY id LIMIT %s""", (limit,))
    return [_mail(r) for r in cur.fetchall()]


def parked_webhooks(cur: Cursor, limit: int = 200) -> list[WebhookRow]:
    cur.execute("""SELECT id, event, state, attempts, created_at, last_error FROM webhook_outbox
                   WHERE state = 'failed' ORDER BY id LIMIT %s""", (limit,))
    return [WebhookRow(*r) for r in cur.fetchall()]
