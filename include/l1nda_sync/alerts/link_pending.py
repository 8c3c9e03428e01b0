"""`link_pending`: one operations problem while requested links stay pending longer than `link_pending_after`.

A link is pending until a sync finds an active token that reaches its company; when no registered token does
(the customer's token was never added, or its filter leaves the company out) that would otherwise go unseen.
`evaluate` is called once per delivery step (the sweep): it opens one provider-wide problem (token_id NULL) when
some wanted link has been pending longer than the setting, keeps its list current while it lasts, reminds like
every problem, and resolves it after the quiet period once no link is waiting. Operations only; the mails
say, per link, why it is pending (`registry.links.pending_reasons`). `link_pending_after = 0` turns it off
(an open problem then closes without mail).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from l1nda_sync.alerts import store
from l1nda_sync.alerts.problems import Action, Cause, Event, Kind, Policy, Verb, plan_problem, plan_quiet
from l1nda_sync.alerts.rendering import environment, one_line, tidy_text
from l1nda_sync.alerts.tracker import carry_out, new_message_id
from l1nda_sync.registry.links import pending_reasons

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor

    from l1nda_sync.settings import Settings

KIND = Kind.LINK_PENDING
CAP = store.CAP


def overdue_cause(cur: Cursor, now: datetime, settings: Settings) -> Cause:
    """The cause as the registry shows it now: the wanted links pending since before now - link_pending_after."""
    after = float(settings.link_pending_after)
    if after <= 0:
        return Cause(False, withdrawn=True)
    cur.execute(
        """SELECT id, customer_ref, company_id, environment, requested_at, count(*) OVER ()
           FROM links WHERE state = 'pending' AND wanted AND requested_at <= %s
           ORDER BY requested_at, id LIMIT %s""",
        (now - timedelta(seconds=after), CAP),
    )
    rows = cur.fetchall()
    if not rows:
        return Cause.absent()
    why = pending_reasons(cur, [r[0] for r in rows])
    entries = [{"link_id": i, "customer": c, "company_id": co, "environment": e, "requested_at": at.isoformat(),
                "why": why.get(i, "pending")} for i, c, co, e, at, _ in rows]
    total = int(rows[0][5])
    return Cause(True, detail={"links": total, "more": max(0, total - len(entries)), "entries": entries,
                               "after_hours": f"{after / 3600:g}"})


def evaluate(conn: Connection, now: datetime, settings: Settings) -> dict[str, int]:
    """Bring the one link_pending problem in line with the registry, in one transaction; counts per step."""
    policy = Policy.from_settings(settings)
    with conn, conn.cursor() as cur:
        store.lock_key(cur, None, KIND)
        row = store.open_problems(cur, None, [KIND]).get(KIND)
        cause = overdue_cause(cur, now, settings)
        action = plan_problem(row.decision() if row else None, cause, now, policy)
        if row is not None and action.verb is Verb.SEEN and not row.muted:
            quiet = plan_quiet(row.decision(), now, policy)  # still there: a reminder may be due
            if quiet.verb is Verb.REMIND:
                action = Action(Verb.SEEN, Event.REMINDER)
        if action.verb is Verb.NOTHING:
            return {}
        row = carry_out(cur, row, Action(action.verb, None, action.stage), token_id=None, kind=KIND, cause=cause,
                        now=now, settings=settings)
        if action.mail is not None and row is not None:
            queue_mail(cur, row, action.mail, now=now, settings=settings)
        return {action.verb.value: 1, **({"mailed": 1} if action.mail else {})}


def _context(row: store.ProblemRow, event: Event, lang: str, settings: Settings) -> dict[str, Any]:
    detail = dict(row.detail)
    detail["entries"] = [{**e, "requested_at": datetime.fromisoformat(e["requested_at"])}
                         for e in detail.get("entries") or ()]
    empty = {"count": 0, "entries": [], "more": 0}
    return {
        "problem": row.as_context(), "token": None, "detail": detail,
        "affected": {"debtors": empty, "companies": empty, "links": empty},
        "customer": {"mailed": False, "contacts": []},
        "support": settings.ops_recipients[0] if settings.ops_recipients else "",
        "reminder_hours": f"{float(settings.reminder_interval) / 3600:g}" if settings.reminder_interval else None,
        "kind": KIND.value, "event": event.value, "audience": "ops", "lang": lang,
    }


def render(row: store.ProblemRow, event: Event, lang: str, settings: Settings) -> tuple[str, str, str]:
    """(subject, text, html) of the operations mail about `event`."""
    env = environment()
    values = _context(row, event, lang, settings)
    subject = env.get_template(f"{lang}/link_pending_subject.txt").render(values)
    text = env.get_template(f"{lang}/link_pending.txt").render(values)
    html = env.get_template(f"{lang}/link_pending.html").render(values)
    return one_line(subject), tidy_text(text), html


def queue_mail(
    cur: Cursor, row: store.ProblemRow, event: Event, *, now: datetime, settings: Settings
) -> store.ProblemRow:
    """Queue the operations mail (nobody else hears about pending links) and note when it was written."""
    if not settings.ops_recipients:
        return row
    lang = settings.default_language
    subject, text, html = render(row, event, lang, settings)
    store.insert_outbox(cur, problem_id=row.id, event=event.value, audience="ops", language=lang,
                        recipients=list(settings.ops_recipients), subject=subject, body_text=text, body_html=html,
                        message_id=new_message_id(), now=now)
    return store.update_problem(cur, row.id, last_notified_at=now)
