"""What the customer page's forms and Nmbrs' callback do: start a consent, finish it, take a new SOAP token.

Each ends on a page: the result (what the credential reaches, the customer's links) or an error page by code.
Stored in one transaction, or nothing: the invitation is marked used in the same transaction as the connection
or token it made, so a link used twice at once makes one thing and the other attempt sees `used`. The customer's
links are brought in line right after (their own transaction: should that fail, the next sync run does it).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from l1nda_sync import consent
from l1nda_sync.consent import ConsentRefused
from l1nda_sync.registry import db, tokens
from l1nda_sync.registry import invitations as inv
from l1nda_sync.registry import validation as v
from l1nda_sync.registry.connections import ConnectionStore, state_hash
from l1nda_sync.registry.errors import InvalidInput, RegistryError
from l1nda_sync.registry.tokens import TokenStore
from l1nda_sync.token_check import NmbrsUnavailable, check_token, record_check
from l1nda_sync.web import mail, pages
from l1nda_sync.web.security import CsrfError

if TYPE_CHECKING:
    from datetime import datetime

    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor
    from starlette.requests import Request
    from starlette.responses import Response

    from l1nda_sync.engine.link_rules import LinkChange
    from l1nda_sync.nmbrs.rest.oauth import Callback
    from l1nda_sync.registry.connections import Authorization, SavedConnection
    from l1nda_sync.web.app import Page

log = logging.getLogger(__name__)


def _open(page: Page, request: Request, cur: Cursor, value: str, purpose: str, form: str,
          csrf: str | None) -> inv.Invitation | Response:
    """The invitation a form posts to, locked, after the rate limit, its state and the CSRF token; or the page
    that says why not."""
    found = inv.find(cur, value, for_update=True)
    lang = found.language if found else "en"
    if not page.allowed(request, found.id if found else None):
        return pages.error("rate_limited", lang)
    try:
        invitation = inv.usable(found, page.clock())
    except inv.InvitationUnusable as exc:
        return pages.error(exc.code, lang)
    if invitation.purpose != purpose:
        return pages.error("wrong_purpose", lang)
    try:
        page.check_csrf(request, form, invitation.id, csrf)
    except CsrfError:
        return pages.error("csrf", lang)
    return invitation


def start_consent(page: Page, request: Request, value: str, csrf: str | None) -> Response:
    from l1nda_sync.nmbrs.rest.oauth import start_authorization
    from l1nda_sync.web.app import redirect

    with page.connect() as conn, db.transaction(conn) as cur:
        opened = _open(page, request, cur, value, "rest", "invite_rest", csrf)
        if not isinstance(opened, inv.Invitation):
            return opened
        if page.rest_app is None:
            return pages.error("unavailable", opened.language)
        started = start_authorization(page.rest_app)
        authorization = ConnectionStore.from_settings(page.settings).start(
            conn, customer_ref=opened.customer_ref, contact=opened.contact, language=opened.language, label=None,
            state=started.state, code_verifier=started.code_verifier, actor=f"web:invitation {opened.id}")
        cur.execute("UPDATE rest_authorizations SET invitation_id = %s WHERE id = %s", (opened.id, authorization.id))
    return redirect(started.url, (page.rest_app.authorize_url + "?",))


def _of_state(conn: Connection, state: str | None) -> tuple[int | None, str]:
    """The invitation a callback's state belongs to (None for a consent `connections start` made), and the
    language to answer in."""
    if not state:
        return None, "en"
    with db.reading(conn) as cur:
        cur.execute("""SELECT a.invitation_id, coalesce(i.language, a.language) FROM rest_authorizations a
                       LEFT JOIN invitations i ON i.id = a.invitation_id WHERE a.state_hash = %s""",
                    (state_hash(state),))
        row = cur.fetchone()
    return (None, "en") if row is None else (row[0], row[1])


def _callback(conn: Connection, request: Request, state: str | None, now: datetime) -> Callback | ConsentRefused:
    """The callback as Nmbrs sent it, or why it cannot be finished (denied, bad state, used, expired)."""
    try:
        callback = consent.read_callback(str(request.url))
        with db.reading(conn) as cur:
            problem = consent.state_problem(cur, state, now)
    except ConsentRefused as exc:
        return exc
    return problem or callback


def finish_consent(page: Page, request: Request) -> Response:
    state = request.query_params.get("state")
    with page.connect() as conn:
        invitation_id, lang = _of_state(conn, state)
        if not page.allowed(request, invitation_id):
            return pages.error("rate_limited", lang)
        if page.rest_app is None:
            return pages.error("unavailable", lang)
        now = page.clock()
        callback = _callback(conn, request, state, now)
        if isinstance(callback, ConsentRefused):
            return pages.error(callback.code, lang)

        def taken(cur: Cursor, authorization: Authorization) -> None:
            if invitation_id is not None:
                inv.usable(inv.get(cur, invitation_id, for_update=True), now)

        def saved(cur: Cursor, authorization: Authorization, made: SavedConnection, reached: Any) -> None:
            if invitation_id is not None:
                inv.mark_used(cur, invitation_id, now=now, result_token_id=made.connection.id)
            consent.activate(cur, page.settings, made.connection.id, reached, now)

        actor = f"web:invitation {invitation_id}" if invitation_id else "web"
        try:
            finished = consent.finish(conn, page.settings, page.rest_app, callback, actor=actor, taken=taken,
                                      saved=saved)
        except (ConsentRefused, inv.InvitationUnusable) as exc:
            return pages.error(exc.code, lang)
        except NmbrsUnavailable:
            return pages.error("unavailable", lang)
        except RegistryError as exc:
            log.warning("finishing a consent failed: %s", type(exc).__name__)
            return pages.error("failed", lang)
        connection = finished.saved.connection
        changes = _reconcile(conn, page, connection.customer_ref, now)
        context = _result(conn, "rest", connection.id, connection.customer_ref, changes)
        context["consented_by"] = connection.user_email
        _notify(conn, page, "consented to L1NDA's Nmbrs app",
                f"REST connection {connection.id} ({connection.token.label})", context, now,
                invitation_id=invitation_id, authorization=finished.authorization)
    return pages.render("result", lang, context)


def hand_over_token(page: Page, request: Request, value: str, csrf: str | None, username: str | None,
                    token: str | None) -> Response:
    with page.connect() as conn:
        with db.transaction(conn) as cur:
            opened = _open(page, request, cur, value, "token", "invite_token", csrf)
        if not isinstance(opened, inv.Invitation):
            return opened
        lang = opened.language
        try:
            login = v.username(username or "", "username")
            secret = v.token(token)
        except InvalidInput:
            return pages.error("token_refused", lang)  # never echo what was typed
        assert opened.token_id is not None
        with db.reading(conn) as cur:
            current = tokens.fetch_token(cur, opened.token_id)
        if current.removed_at is not None or current.kind != "soap_token":
            return pages.error("failed", lang)
        if login.lower() != current.username.lower():
            return pages.error("token_refused", lang, "The login e-mail is not the one this token belongs to."
                               if lang == "en" else "Het login-e-mailadres hoort niet bij dit token.")
        store = TokenStore.from_settings(page.settings)
        try:
            store.refuse_replacement_clash(conn, current, secret)
            checked = check_token(page.settings, current.username, secret, current.domain)
        except InvalidInput:
            return pages.error("token_refused", lang)
        if not checked.accepted:
            return pages.error("unavailable", lang)
        now = page.clock()
        summary = checked.summary
        assert summary is not None
        try:
            with db.transaction(conn) as cur:
                inv.mark_used(cur, opened.id, now=now, result_token_id=current.id)
                store.replace(conn, current.id, secret, actor=f"web:invitation {opened.id}",
                              domain=summary.domain if not current.domain else None, detail=checked.event_detail())
                record_check(cur, current.id, checked, page.settings)
        except inv.InvitationUnusable as exc:
            return pages.error(exc.code, lang)
        except InvalidInput:
            return pages.error("token_refused", lang)
        except NmbrsUnavailable:
            return pages.error("unavailable", lang)
        changes = _reconcile(conn, page, opened.customer_ref, now)
        context = _result(conn, "token", current.id, opened.customer_ref, changes)
        _notify(conn, page, "handed over a new SOAP token", f"token {current.id} ({current.label})", context, now,
                invitation_id=opened.id)
    return pages.render("result", lang, context)


def _reconcile(conn: Connection, page: Page, customer_ref: str, now: datetime) -> list[LinkChange]:
    try:
        with db.transaction(conn) as cur:
            return consent.reconcile_customer(cur, page.settings, customer_ref, now)
    except Exception as exc:  # stored already; the next sync run reconciles
        log.warning("reconciling customer %s's links failed (%s); the next sync run does it", customer_ref,
                    type(exc).__name__)
        return []


def _result(conn: Connection, purpose: str, token_id: int, customer_ref: str,
            changes: list[LinkChange]) -> dict[str, Any]:
    """What the result page lists: the credential's current reach and the customer's links it serves."""
    activated = {c.link_id for c in changes if c.to_state.value == "active" and c.to_token == token_id}
    with db.reading(conn) as cur:
        cur.execute("""SELECT name, number FROM reach_debtors WHERE token_id = %s AND lost_at IS NULL
                       ORDER BY name NULLS LAST, debtor_id""", (token_id,))
        debtors = [{"name": n, "number": num} for n, num in cur.fetchall()]
        cur.execute("""SELECT name, number FROM reach_companies WHERE token_id = %s AND lost_at IS NULL
                       ORDER BY name NULLS LAST, company_id""", (token_id,))
        companies = [{"name": n, "number": num} for n, num in cur.fetchall()]
        cur.execute("""SELECT l.id, l.company_id, rc.name, l.state, l.reason FROM links l
                       LEFT JOIN reach_companies rc ON rc.token_id = %s AND rc.company_id = l.company_id
                       WHERE l.customer_ref = %s AND l.wanted AND (l.token_id = %s OR l.id = ANY(%s))
                       ORDER BY rc.name NULLS LAST, l.company_id""",
                    (token_id, customer_ref, token_id, sorted(activated)))
        links = [{"id": i, "company_id": c, "company_name": n, "state": s, "reason": r, "activated": i in activated}
                 for i, c, n, s, r in cur.fetchall()]
    return {"purpose": purpose, "customer_ref": customer_ref, "debtors": debtors, "companies": companies,
            "links": links, "consented_by": None}


def _notify(conn: Connection, page: Page, what: str, credential: str, context: dict[str, Any], now: datetime, *,
            invitation_id: int | None, authorization: Authorization | None = None) -> None:
    """Queue operations' notice: for an invitation, or for a consent `connections start` made (no invitation)."""
    try:
        with db.transaction(conn) as cur:
            if invitation_id is not None:
                invitation = inv.get(cur, invitation_id)
                customer_ref, contact, problem_id = invitation.customer_ref, invitation.contact, invitation.problem_id
                via = f"invitation {invitation_id}"
            else:
                assert authorization is not None
                customer_ref, contact, problem_id = authorization.customer_ref, authorization.contact, None
                via = f"the consent link of `l1nda-sync connections start`, authorization {authorization.id}"
            mail.queue_notice(cur, page.settings, what=what, customer_ref=customer_ref, contact=contact, via=via,
                              problem_id=problem_id, credential=credential, companies=len(context["companies"]),
                              links=[f"{lnk['company_name'] or lnk['company_id']} (link {lnk['id']})"
                                     for lnk in context["links"] if lnk["activated"]], now=now)
    except Exception as exc:
        log.warning("queueing the operations notice failed (%s)", type(exc).__name__)
