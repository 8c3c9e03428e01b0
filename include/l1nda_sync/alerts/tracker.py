"""Carry out problem decisions in the database: open, see again, escalate, clear, resolve, remind, and write
the mails those steps announce, all inside the caller's transaction (the one that changed the cause), so a
state change and its notification commit together or not at all.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from l1nda_sync.alerts import store
from l1nda_sync.alerts.invitation_links import link_placeholder, until_placeholder
from l1nda_sync.alerts.problems import (
    Action,
    Cause,
    Event,
    Kind,
    Policy,
    Stage,
    Verb,
    audiences,
    plan_problem,
    plan_quiet,
)
from l1nda_sync.alerts.rendering import render
from l1nda_sync.alerts.store import ProblemRow

if TYPE_CHECKING:
    from psycopg2.extensions import cursor as Cursor

    from l1nda_sync.settings import Settings

log = logging.getLogger(__name__)


def new_message_id() -> str:
    return f"<outbox-{uuid.uuid4().hex}@l1nda-sync>"


def track(
    cur: Cursor, token_id: int | None, causes: Mapping[Kind, Cause], *, now: datetime, settings: Settings
) -> list[tuple[Kind, Action]]:
    """Bring the problems of one token (None: the provider) in line with fresh evidence for `causes`' kinds."""
    policy = Policy.from_settings(settings)
    existing = store.open_problems(cur, token_id, causes)
    done = []
    for kind, cause in causes.items():
        row = existing.get(kind)
        if row is None and cause.present:
            # Only an insert can race (the unique open index); take the key lock, then look again.
            store.lock_key(cur, token_id, kind)
            row = store.open_problems(cur, token_id, [kind]).get(kind)
        action = plan_problem(row.decision() if row else None, cause, now, policy)
        carry_out(cur, row, action, token_id=token_id, kind=kind, cause=cause, now=now, settings=settings)
        done.append((kind, action))
    return done


def carry_out(
    cur: Cursor, row: ProblemRow | None, action: Action, *, token_id: int | None, kind: Kind, cause: Cause | None,
    now: datetime, settings: Settings,
) -> ProblemRow | None:
    """Write what `action` says; returns the problem row afterwards."""
    detail = dict(cause.detail) if cause is not None else {}
    match action.verb:
        case Verb.NOTHING:
            return row
        case Verb.OPEN:
            row = store.insert_problem(cur, token_id, kind, action.stage or Stage.CONFIRMED, detail, now)
        case Verb.SEEN:
            assert row is not None
            row = store.update_problem(cur, row.id, last_seen_at=now, cause_cleared_at=None, detail=detail)
        case Verb.ESCALATE:
            assert row is not None
            row = store.update_problem(cur, row.id, stage=str(Stage.CONFIRMED), escalated_at=now, last_seen_at=now,
                                       cause_cleared_at=None, detail=detail)
        case Verb.CLEAR:
            assert row is not None
            row = store.update_problem(cur, row.id, cause_cleared_at=now)
        case Verb.RESOLVE:
            assert row is not None
            row = store.update_problem(cur, row.id, state="resolved", resolved_at=now,
                                       cause_cleared_at=row.cause_cleared_at or now)
        case Verb.REMIND:
            assert row is not None
    if action.mail is not None and row is not None:
        row = queue_mail(cur, row, action.mail, now=now, settings=settings)
    return row


def queue_mail(cur: Cursor, row: ProblemRow, event: Event, *, now: datetime, settings: Settings) -> ProblemRow:
    """Render the mails about `event` for every audience of the problem's kind and queue them in the outbox."""
    token = store.load_token(cur, row.token_id) if row.token_id is not None else None
    contacts = list(token["contact_emails"]) if token else []
    wanted = audiences(row.kind)
    customer_mailed = "customer" in wanted and bool(contacts)
    context = {
        "problem": row.as_context(),
        "token": token,
        "detail": row.detail,
        "affected": store.affected(cur, row.kind, row.token_id),
        "customer": {"mailed": customer_mailed, "contacts": contacts},
        "support": settings.ops_recipients[0] if settings.ops_recipients else "",
        "reminder_hours": f"{float(settings.reminder_interval) / 3600:g}" if settings.reminder_interval else None,
    }
    plan = []
    if "ops" not in wanted:
        pass  # the soap_ended notice: operations get the cutover's one summary instead
    elif settings.ops_recipients:
        plan.append(("ops", list(settings.ops_recipients), settings.default_language))
    else:
        log.warning("problem %s: no ops_recipients configured, operations gets no mail", row.id)
    if customer_mailed:
        language = (token or {}).get("contact_language") or settings.default_language
        plan.append(("customer", contacts, language))
    invitation = _invitation(cur, row, event, token, contacts, now=now, settings=settings) if customer_mailed else None
    if invitation is not None:
        context["invited"] = invitation["id"]
    for audience, recipients, language in plan:
        own = {"invitation": invitation} if audience == "customer" else {}  # the link only in the customer's mail
        mail = render(row.kind.value, event.value, audience, language, {**context, **own})
        store.insert_outbox(
            cur, problem_id=row.id, event=event.value, audience=audience, language=language, recipients=recipients,
            subject=mail.subject, body_text=mail.text, body_html=mail.html, message_id=new_message_id(), now=now,
        )
    return store.update_problem(cur, row.id, last_notified_at=now)


# The customer page's purpose per problem kind (a REST connection always consents again).
INVITING = {Kind.REVOKED: "token", Kind.REJECTED: "token", Kind.CONSENT_REVOKED: "rest", Kind.SOAP_ENDED: "rest"}


def _invitation(cur: Cursor, row: ProblemRow, event: Event, token: dict[str, Any] | None, contacts: list[str], *,
                now: datetime, settings: Settings) -> dict[str, Any] | None:
    """The customer's one-time link to the customer page for a revoked token (hand over a new one) or a withdrawn
    consent (consent again): the problem's open invitation (a reminder repeats its link), else a new one. None
    without the page configured (L1NDA_WEB_BASE_URL and L1NDA_WEB_SECRET), for a resolved problem, or when no
    customer is known for the token (no link it serves or whose company it reaches). Its `url` and `until` are
    placeholders the outbox drain fills in: the link is never stored."""
    from l1nda_sync.registry import invitations

    purpose = INVITING.get(row.kind)
    if purpose is None or event is Event.RESOLVED or token is None or not settings.web_base_url \
            or not settings.web_secret:
        return None
    if row.kind is Kind.SOAP_ENDED and (token.get("level") == "accountant"
                                        or len(row.detail.get("customers", ())) != 1):
        return None  # an invitation is one customer's: an accountant's summary names its debtors instead
    is_rest = token.get("kind") == "rest_connection" or purpose == "rest"
    customer = token.get("customer_ref") or (row.detail.get("customers") or [None])[0]
    if not customer:
        cur.execute("""SELECT l.customer_ref FROM links l
                       LEFT JOIN reach_companies rc ON rc.token_id = %s AND rc.company_id = l.company_id
                       WHERE l.wanted AND (l.token_id = %s OR rc.company_id IS NOT NULL)
                       ORDER BY l.token_id = %s DESC NULLS LAST, l.id LIMIT 1""",
                    (row.token_id, row.token_id, row.token_id))
        found = cur.fetchone()
        customer = found[0] if found else None
    if not customer:
        return None
    cur.execute("SAVEPOINT invitation")
    try:
        issued = invitations.for_problem(
            cur, secret=settings.web_secret, problem_id=row.id, customer_ref=customer, contact=contacts[0],
            purpose="rest" if is_rest else purpose, language=token.get("contact_language"), now=now,
            ttl=settings.invitation_ttl, token_id=None if is_rest else row.token_id)
        invitations.mark_sent(cur, issued.invitation.id, now)
    except Exception as exc:  # a mail without a link is better than no mail
        cur.execute("ROLLBACK TO SAVEPOINT invitation")
        log.warning("problem %s: no invitation link (%s); the mail asks for a reply", row.id, type(exc).__name__)
        return None
    cur.execute("RELEASE SAVEPOINT invitation")
    made = issued.invitation
    # Placeholders, not the link: the outbox drain fills them in when the mail leaves (`invitation_links`).
    return {"id": made.id, "url": link_placeholder(made.id), "until": until_placeholder(made.id),
            "purpose": made.purpose, "expires_at": made.expires_at}


def follow_up(cur: Cursor, row: ProblemRow, *, now: datetime, settings: Settings) -> Action:
    """Without new evidence: resolve after the quiet period, or send a reminder that is due."""
    action = plan_quiet(row.decision(), now, Policy.from_settings(settings))
    carry_out(cur, row, action, token_id=row.token_id, kind=row.kind, cause=None, now=now, settings=settings)
    return action
