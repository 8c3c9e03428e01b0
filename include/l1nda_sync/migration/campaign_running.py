"""Carry out the campaign's decisions (`campaign.plan_campaign`) in the registry: one pass, one transaction.

Called by the sweep (the run pipeline's delivery step) after the other problems. Under one advisory lock it loads
the readiness (`migration.world`), the targets (a business customer's SOAP token contacts; an accountant's
debtor's contacts from `customer_contacts` and earlier invitations) and the open campaign problems, asks the pure
plan what is due, and writes it: problems opened or resolved, mails queued in the outbox with the invitation as a
placeholder (`alerts.invitation_links`: the drain fills in the link, renews an expired one, drops a used one).
A pass that dies writes nothing; a second pass at the same time finds nothing due.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from l1nda_sync.alerts import store
from l1nda_sync.alerts.invitation_links import link_placeholder, until_placeholder
from l1nda_sync.alerts.problems import Kind
from l1nda_sync.alerts.rendering import environment, one_line, tidy_text
from l1nda_sync.alerts.tracker import new_message_id
from l1nda_sync.migration import world
from l1nda_sync.migration.campaign import Decision, LinkFact, Open, Schedule, Step, Target, plan_campaign
from l1nda_sync.migration.readiness import LinkReadiness, Readiness, World, assess
from l1nda_sync.migration.report import countdown
from l1nda_sync.registry import invitations, locks

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor

    from l1nda_sync.settings import Settings

log = logging.getLogger(__name__)
KINDS = (Kind.MIGRATION_INVITE, Kind.MIGRATION_ACCOUNTANT, Kind.MIGRATION_WEEKLY)
NO_REACTION = timedelta(days=7)
ACTOR = "campaign"


def schedule(settings: Settings) -> Schedule:
    return Schedule(settings.migration_campaign_start, settings.soap_end,
                    weekly=timedelta(seconds=float(settings.migration_reminder_interval)),
                    daily=timedelta(seconds=float(settings.migration_final_reminder_interval)),
                    final_window=timedelta(seconds=float(settings.migration_final_window)))


def _open_rows(cur: Cursor) -> list[tuple[Any, ...]]:
    cur.execute("""SELECT p.id, p.kind, p.subject, p.token_id, p.last_notified_at, p.muted, p.unmuted_at, p.detail,
                          p.opened_at, i.state, i.expires_at, i.opened_at, i.used_at
                   FROM problems p
                   LEFT JOIN LATERAL (SELECT state, expires_at, opened_at, used_at FROM invitations
                                      WHERE problem_id = p.id ORDER BY id DESC LIMIT 1) i ON true
                   WHERE p.state = 'open' AND p.kind = ANY(%s) ORDER BY p.id FOR UPDATE OF p""",
                [[k.value for k in KINDS]])
    return cur.fetchall()


def _targets(cur: Cursor, rows: list[LinkReadiness], current: World) -> tuple[list[Target], set[str]]:
    """The (customer, contact) pairs to reach, and the soap_only customers without any contact known."""
    cur.execute("SELECT id, level, kind, contact_language FROM tokens WHERE state <> 'removed'")
    tokens = {i: (level, kind, lang) for i, level, kind, lang in cur.fetchall()}
    cur.execute("""SELECT customer_ref, contact, language FROM customer_contacts
                   UNION SELECT customer_ref, contact, language FROM invitations ORDER BY 1, 2""")
    known: dict[str, list[tuple[str, str | None]]] = {}
    for ref, contact, lang in cur.fetchall():
        if contact.casefold() not in {c.casefold() for c, _ in known.get(ref, [])}:
            known.setdefault(ref, []).append((contact, lang))
    targets: dict[str, Target] = {}
    reached: set[str] = set()
    soap_only = {r.customer_ref for r in rows if r.readiness is Readiness.SOAP_ONLY}
    for row in rows:
        if row.customer_ref not in soap_only:
            continue
        served = tokens.get(row.served_by) if row.served_by is not None else None
        if row.served_by is not None and served is not None and served[1] == "soap_token" \
                and served[0] == "debtor":
            info = current.info.get(row.served_by)
            pairs = [(c, served[2]) for c in (info.contacts if info else ())]
            accountant = None
        else:
            pairs = [(c, lang) for c, lang in known.get(row.customer_ref, [])]
            accountant = row.accountant_token
        for contact, lang in pairs:
            target = Target(row.customer_ref, contact, lang, accountant)
            targets.setdefault(target.key, target)
            reached.add(row.customer_ref)
    return list(targets.values()), soap_only - reached


def evaluate(conn: Connection, now: datetime, settings: Settings) -> dict[str, int]:
    """One campaign pass at `now`; counts per step and mails queued."""
    plan = schedule(settings)
    with conn, conn.cursor() as cur:
        locks.lock_migration_campaign(cur)
        open_rows = _open_rows(cur)
        if not open_rows and not plan.running(now):
            return {}
        current, _ = world.load(cur)
        rows = assess(current, now)
        targets, uncontacted = _targets(cur, rows, current)
        by_id = {r[0]: r for r in open_rows}
        invites = [Open(r[0], r[2] or "", r[4], r[5], r[6],
                        LinkFact(r[9], r[10], r[11], r[12]) if r[9] is not None else None)
                   for r in open_rows if r[1] == Kind.MIGRATION_INVITE.value]
        summaries = [Open(r[0], str(r[3]), r[4], r[5], r[6]) for r in open_rows
                     if r[1] == Kind.MIGRATION_ACCOUNTANT.value]
        weekly = next((Open(r[0], "ops", r[4], r[5], r[6]) for r in open_rows
                       if r[1] == Kind.MIGRATION_WEEKLY.value), None)
        accountants = {r.accountant_token: True for r in rows
                       if r.readiness is Readiness.SOAP_ONLY and r.accountant_token is not None
                       and current.info.get(r.accountant_token) is not None
                       and current.info[r.accountant_token].contacts}
        pending = any(r.readiness is not Readiness.REST_READY for r in rows)
        decisions = plan_campaign(plan, now, targets, invites, accountants, summaries,
                                  pending and bool(settings.ops_recipients), weekly)
        counts: Counter[str] = Counter()
        for decision in decisions:
            row = by_id.get(decision.problem_id) if decision.problem_id is not None else None
            mailed = _carry_out(cur, decision, row, now=now, settings=settings, rows=rows, current=current,
                                targets=targets, uncontacted=uncontacted, open_rows=open_rows, plan=plan)
            counts[f"{decision.what}_{decision.step.value}"] += 1
            counts["mailed"] += mailed
        if decisions:
            log.info("migration campaign at %s: %s", now.isoformat(), dict(counts))
        return {k: v for k, v in counts.items() if v}


def _open_problem(cur: Cursor, kind: Kind, token_id: int | None, subject: str | None, detail: dict[str, Any],
                  now: datetime) -> int:
    cur.execute("""INSERT INTO problems (token_id, kind, subject, state, stage, opened_at, last_seen_at, detail)
                   VALUES (%s, %s, %s, 'open', 'confirmed', %s, %s, %s::jsonb) RETURNING id""",
                (token_id, kind.value, subject, now, now, json.dumps(detail, default=str)))
    found = cur.fetchone()
    assert found is not None
    return int(found[0])


def _carry_out(cur: Cursor, decision: Decision, row: tuple[Any, ...] | None, *, now: datetime, settings: Settings,
               rows: list[LinkReadiness], current: World, targets: list[Target], uncontacted: set[str],
               open_rows: list[tuple[Any, ...]], plan: Schedule) -> int:
    """Write one decision; returns the number of mails queued."""
    if decision.step is Step.RESOLVE:
        assert decision.problem_id is not None
        store.update_problem(cur, decision.problem_id, state="resolved", resolved_at=now, cause_cleared_at=now)
        return 0
    event = "opened" if decision.step is Step.INVITE else "reminder"
    if decision.what == "invite":
        target = decision.target
        assert target is not None
        problem_id = decision.problem_id or _open_problem(
            cur, Kind.MIGRATION_INVITE, None, target.key,
            {"customer": target.customer_ref, "accountant_token": target.accountant_token}, now)
        links = [r for r in rows if r.customer_ref == target.customer_ref]
        context = {"customer_ref": target.customer_ref, "links": len(links),
                   "via_accountant": target.accountant_token is not None,
                   "accountant": current.info[target.accountant_token].label
                   if target.accountant_token is not None and target.accountant_token in current.info else None,
                   "renewed": decision.step is Step.REINVITE}
        lang = target.language or settings.default_language
        context["invitation"] = _invitation(cur, problem_id, target, lang, now=now, settings=settings)
        return _queue(cur, problem_id, "campaign_invite", event, "customer", [target.contact], lang, context,
                      now=now, settings=settings, plan=plan)
    if decision.what == "accountant":
        token_id = int(decision.key)
        info = current.info[token_id]
        problem_id = decision.problem_id or _open_problem(cur, Kind.MIGRATION_ACCOUNTANT, token_id, None, {}, now)
        invited = {t.customer_ref for t in targets if t.accountant_token == token_id}
        debtors = sorted({r.customer_ref for r in rows
                          if r.accountant_token == token_id and r.readiness is Readiness.SOAP_ONLY})
        cur.execute("SELECT contact_language FROM tokens WHERE id = %s", (token_id,))
        found = cur.fetchone()
        lang = (found[0] if found else None) or settings.default_language
        context = {"label": info.label, "debtors": [{"customer_ref": d, "invited": d in invited} for d in debtors],
                   "ready": sorted({r.customer_ref for r in rows if r.accountant_token == token_id
                                    and r.readiness is Readiness.REST_READY})}
        return _queue(cur, problem_id, "campaign_accountant", event, "customer", list(info.contacts), lang, context,
                      now=now, settings=settings, plan=plan)
    problem_id = decision.problem_id or _open_problem(cur, Kind.MIGRATION_WEEKLY, None, None, {}, now)
    silent = sorted({r[2].split(" ")[0] for r in open_rows if r[1] == Kind.MIGRATION_INVITE.value and r[2]
                     and now - r[8] >= NO_REACTION and r[9] in ("created", "sent", "expired")})
    totals = Counter(r.readiness.value for r in rows)
    context = {"totals": {r.value: totals.get(r.value, 0) for r in Readiness}, "no_reaction": silent,
               "no_contact": sorted(uncontacted),
               "invited": len({t.customer_ref for t in targets}),
               "customers": len({r.customer_ref for r in rows})}
    return _queue(cur, problem_id, "campaign_weekly", event, "ops", list(settings.ops_recipients),
                  settings.default_language, context, now=now, settings=settings, plan=plan)


def _invitation(cur: Cursor, problem_id: int, target: Target, lang: str, *, now: datetime,
                settings: Settings) -> dict[str, Any] | None:
    """The problem's open REST invitation (a reminder repeats its link; an expired one is replaced), as
    placeholders the outbox drain fills in; None without the customer page configured."""
    if not settings.web_base_url or not settings.web_secret:
        return None
    issued = invitations.for_problem(cur, secret=settings.web_secret, problem_id=problem_id,
                                     customer_ref=target.customer_ref, contact=target.contact, purpose="rest",
                                     language=lang, now=now, ttl=settings.invitation_ttl, actor=ACTOR)
    invitations.mark_sent(cur, issued.invitation.id, now)
    made = issued.invitation
    return {"id": made.id, "url": link_placeholder(made.id), "until": until_placeholder(made.id)}


def _queue(cur: Cursor, problem_id: int, template: str, event: str, audience: str, recipients: list[str],
           lang: str, context: dict[str, Any], *, now: datetime, settings: Settings, plan: Schedule) -> int:
    if not recipients:
        store.update_problem(cur, problem_id, last_notified_at=now)
        return 0
    env = environment()
    values = {"invitation": None, **context, "event": event, "lang": lang, "kind": template,
              "soap_end": settings.soap_end, "countdown": countdown(now, settings.soap_end),
              "days_left": max(0, (settings.soap_end - now).days),
              "support": settings.ops_recipients[0] if settings.ops_recipients else ""}
    subject = one_line(env.get_template(f"{lang}/campaign_subject.txt").render(values))
    text = tidy_text(env.get_template(f"{lang}/{template}.txt").render(values))
    html = env.get_template(f"{lang}/campaign_mail.html").render(lang=lang, body=text)  # autoescaped
    store.insert_outbox(cur, problem_id=problem_id, event=event, audience=audience, language=lang,
                        recipients=recipients, subject=subject, body_text=text, body_html=html,
                        message_id=new_message_id(), now=now)
    store.update_problem(cur, problem_id, last_notified_at=now)
    return 1
