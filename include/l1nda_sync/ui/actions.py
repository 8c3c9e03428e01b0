"""The page's actions. Handlers only parse the form, check its CSRF token and call a core:

- recheck / dry run: `airflow_api.trigger` (Airflow's public API, the user's JWT; conf `{"token_ids": [id]}`)
- mute / unmute: `alerts.muting.set_muted` (as `l1nda-sync problems mute|unmute`)
- resend: `registry.outbox_rows.resend` (as `l1nda-sync outbox resend|requeue`)
- invite: `registry.invitations.create` + `web.mail.queue_invitation` (as `l1nda-sync invite --no-send`; the
  outbox DAG mails it, the link is never shown here)

Each answers 303 back to the page with a signed flash message (`#flash`): what happened, or why not. A bad CSRF
token is a 403 page; the registry's refusals (NotFound, Conflict, InvalidInput) become the flash.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Request
from starlette.responses import RedirectResponse, Response

from l1nda_sync.alerts.muting import set_muted
from l1nda_sync.registry import db, outbox_rows
from l1nda_sync.registry import invitations as inv
from l1nda_sync.registry import validation as v
from l1nda_sync.registry.errors import InvalidInput
from l1nda_sync.registry.tokens import get_token
from l1nda_sync.ui import airflow_api, auth, csrf

if TYPE_CHECKING:
    from l1nda_sync.settings import Settings

DAY = 86400.0


def _config(request: Request) -> Any:
    return request.app.state.config


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def back(request: Request, path: str, kind: str, text: str, **extra: Any) -> RedirectResponse:
    """303 to `path` of this app with a signed flash message."""
    url = f"{_root(request)}{path}?{urlencode({'flash': csrf.sign_flash({'kind': kind, 'text': text, **extra})})}"
    return RedirectResponse(url, status_code=303)


def _check(token: str | None, form: str, target: str, user: Any) -> None:
    try:
        csrf.check(token, form, target, auth.user_name(user))
    except csrf.CsrfError as exc:
        raise HTTPException(403, str(exc)) from None


def _connect(request: Request) -> db.Connection:
    return db.connect(_config(request).settings.require_database_url(), connect_timeout=5)


def actor(user: Any) -> str:
    """Who acted, for the registry's audit trail: 'airflow:<user>'."""
    return f"airflow:{auth.user_name(user)}"


# -- cores ------------------------------------------------------------------------------------------------------

def start_sync(request: Request, user: Any, token_id: int, *, dry_run: bool) -> airflow_api.Triggered:
    """A run of the sync DAG for one live credential, as the user."""
    conn = _connect(request)
    try:
        token = get_token(conn, token_id)
    finally:
        conn.close()
    if token.removed_at is not None:
        raise InvalidInput("ID", f"credential {token_id} ({token.label}) is removed; there is nothing to check")
    conf: dict[str, Any] = {"token_ids": [token_id]}
    if dry_run:
        conf["dry_run"] = True
    what = "dry run" if dry_run else "recheck"
    note = f"{what} of credential {token_id} ({token.label}) from L1NDA token health by {auth.user_name(user)}"
    config = _config(request)
    return airflow_api.trigger(config.api_url, auth.user_jwt(request), auth.SYNC_DAG, conf, note=note,
                               ui_base=config.ui_url)


def invite(conn: db.Connection, settings: Settings, *, customer: str, contact: str, purpose: str, language: str,
           token_id: int | None, actor: str, now: datetime) -> inv.Invitation:
    """An invitation to the customer page and its mail in the outbox, in one transaction (the link is derived
    from L1NDA_WEB_SECRET and never shown here: only the contact gets it, by mail)."""
    from l1nda_sync.web import mail

    if not settings.web_base_url or not settings.web_secret:
        raise InvalidInput("invite", "invitations need L1NDA_WEB_BASE_URL and L1NDA_WEB_SECRET on this API "
                                     "server (the customer page's); use `l1nda-sync invite` on a worker meanwhile")
    ref, address = v.customer_ref(customer, "customer"), v.email(contact, "contact")
    with db.transaction(conn) as cur:
        issued = inv.create(cur, secret=settings.web_secret, customer_ref=ref, contact=address, purpose=purpose,
                            language=language, now=now, ttl=settings.invitation_ttl, actor=actor,
                            token_id=token_id if purpose == "token" else None)
        mail.queue_invitation(cur, issued.invitation, settings, now=now)
        inv.mark_sent(cur, issued.invitation.id, now)
    return issued.invitation


# -- routes -----------------------------------------------------------------------------------------------------

def routes(router: APIRouter) -> None:
    @router.post("/credentials/{token_id}/recheck")
    def recheck(request: Request, token_id: int, user: Any = auth.USER,
                csrf_token: str | None = Form(None, alias=csrf.FIELD)) -> Response:
        return _sync(request, user, token_id, csrf_token, dry_run=False)

    @router.post("/credentials/{token_id}/dry-run")
    def dry_run(request: Request, token_id: int, user: Any = auth.USER,
                csrf_token: str | None = Form(None, alias=csrf.FIELD)) -> Response:
        return _sync(request, user, token_id, csrf_token, dry_run=True)

    @router.post("/problems/{problem_id}/{action}")
    def mute(request: Request, problem_id: int, action: str, user: Any = auth.USER,
             csrf_token: str | None = Form(None, alias=csrf.FIELD), back_to: int | None = Form(None)) -> Response:
        if action not in ("mute", "unmute"):
            raise HTTPException(404, "no such action: mute or unmute")
        _check(csrf_token, action, str(problem_id), user)
        auth.require_operator(user)
        path = f"/credentials/{back_to}" if back_to else "/"
        conn = _connect(request)
        try:
            row, changed = set_muted(conn, problem_id, action == "mute", _config(request).clock())
        except InvalidInput as exc:
            return back(request, path, "error", exc.message)
        finally:
            conn.close()
        state = "muted: it stays open, no more mails about it" if row.muted else \
            "unmuted: no backlog is sent; reminders resume one interval from now"
        text = f"problem {row.id} ({row.kind.value}) {state}" if changed else \
            f"problem {row.id} was already {action}d; nothing changed"
        return back(request, path, "ok", text)

    @router.post("/outbox/{kind}/{row_id}/resend")
    def resend(request: Request, kind: str, row_id: int, user: Any = auth.USER,
               csrf_token: str | None = Form(None, alias=csrf.FIELD)) -> Response:
        if kind not in outbox_rows.KINDS:
            raise HTTPException(404, "no such outbox: mail or webhook")
        _check(csrf_token, "resend", f"{kind}:{row_id}", user)
        auth.require_operator(user)
        conn = _connect(request)
        try:
            before = outbox_rows.resend(conn, kind, row_id, _config(request).clock())
        except InvalidInput as exc:
            return back(request, "/outbox", "error", exc.message)
        finally:
            conn.close()
        return back(request, "/outbox", "ok", f"{kind} {row_id} was {before}; it is pending again and goes out "
                                              "with the next drain of the outbox DAG")

    @router.post("/credentials/{token_id}/invite")
    def send_invitation(request: Request, token_id: int, user: Any = auth.USER,
                        csrf_token: str | None = Form(None, alias=csrf.FIELD), customer: str = Form(""),
                        contact: str = Form(""), purpose: str = Form("rest"), language: str = Form("en")) -> Response:
        _check(csrf_token, "invite", str(token_id), user)
        auth.require_operator(user)
        path = f"/credentials/{token_id}"
        config = _config(request)
        conn = _connect(request)
        try:
            made = invite(conn, config.settings, customer=customer, contact=contact, purpose=purpose,
                          language=language, token_id=token_id, actor=actor(user), now=config.clock())
        except InvalidInput as exc:
            return back(request, path, "error", f"no invitation: {exc.field}: {exc.message}")
        finally:
            conn.close()
        return back(request, path, "ok", f"invitation {made.id} ({made.purpose}) for {made.customer_ref} queued "
                                         f"to {made.contact}; the outbox DAG mails it (the link is only in that mail)")


def _sync(request: Request, user: Any, token_id: int, csrf_token: str | None, *, dry_run: bool) -> Response:
    form = "dry-run" if dry_run else "recheck"
    _check(csrf_token, form, str(token_id), user)
    path = f"/credentials/{token_id}"
    try:
        run = start_sync(request, user, token_id, dry_run=dry_run)
    except airflow_api.TriggerError as exc:
        return back(request, path, "error", f"no run started: {exc}")
    except InvalidInput as exc:
        return back(request, path, "error", f"no run started: {exc.message}")
    what = "Dry run" if dry_run else "Recheck"
    return back(request, path, "ok", f"{what} started: DAG run {run.dag_run_id}", run_id=run.dag_run_id,
                href=run.ui_path)
