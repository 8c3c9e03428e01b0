"""The customer page: `create_app(settings)` builds the FastAPI app that `l1nda-sync web` serves with uvicorn.

Routes (a customer never sees Airflow):
- GET  /invite/{value}            the invitation: a REST consent page or a token hand-over form (contact's language)
- POST /invite/{value}/connect    (CSRF) start a consent bound to the invitation: 303 to Nmbrs' authorize URL
- GET  <redirect URI's path>      Nmbrs' callback: exchange, probe, store, activate, reconcile: the result page
- POST /invite/{value}/token      (CSRF) a new SOAP token, checked live, then `tokens replace`: the result page
- GET  /static/style.css, /healthz
Every failure is a page `<main id="error" data-error="CODE">` with a 4xx/5xx status and nothing half-written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from l1nda_sync.registry import db
from l1nda_sync.registry import invitations as inv
from l1nda_sync.registry.errors import ConfigError
from l1nda_sync.settings import Settings, SettingsError
from l1nda_sync.web import flows, pages
from l1nda_sync.web.security import (
    CSRF_COOKIE,
    Csrf,
    CsrfError,
    RateLimiter,
    install_log_masking,
    security_headers,
)

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection

log = logging.getLogger(__name__)
DEFAULT_CALLBACK_PATH = "/nmbrs/callback"


class WebConfigError(SettingsError):
    """The customer page cannot start: a setting it needs is missing (the message names it)."""


def _now() -> datetime:
    return datetime.now(UTC)


class Page:
    """What every route needs: settings, the clock, a registry connection, CSRF and the rate limiter."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime]) -> None:
        if not settings.web_secret:
            raise WebConfigError("the customer page needs L1NDA_WEB_SECRET (32+ random characters; it signs forms "
                                 "and derives invitation links): `python -c 'import secrets; "
                                 "print(secrets.token_urlsafe(32))'`")
        self.settings = settings
        self.database_url = settings.require_database_url()
        self.clock = clock
        self.csrf = Csrf(settings.web_secret.reveal())
        self.limiter = RateLimiter(settings.web_rate_limit, settings.web_rate_window)
        base = settings.web_base_url or ""
        self.secure_cookies = base.startswith("https://")
        try:
            self.rest_app = settings.rest_app()
        except (SettingsError, ValueError) as exc:
            raise WebConfigError(f"L1NDA's Nmbrs REST app is half configured: {exc}") from None
        identity = ""
        if self.rest_app is not None:
            parts = urlsplit(self.rest_app.identity_base)
            identity = f"{parts.scheme}://{parts.netloc}"
        self.headers = security_headers(identity)
        self.callback_path = urlsplit(self.rest_app.redirect_uri).path if self.rest_app and \
            self.rest_app.redirect_uri else DEFAULT_CALLBACK_PATH

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        conn = db.connect(self.database_url)
        try:
            yield conn
        finally:
            conn.close()

    def allowed(self, request: Request, invitation_id: int | None = None) -> bool:
        """Count one attempt against the client's address (and the invitation); False when over the limit."""
        keys = [f"addr:{request.client.host if request.client else '?'}"]
        if invitation_id is not None:
            keys.append(f"inv:{invitation_id}")
        return self.limiter.hit(*keys)

    def form(self, name: str, lang: str, context: dict[str, Any], invitation_id: int,
             request: Request) -> Response:
        """A page with a form: a fresh CSRF token, bound to this browser's cookie (set when missing)."""
        cookie = request.cookies.get(CSRF_COOKIE) or Csrf.new_cookie()
        response = pages.render(name, lang, {**context, "csrf": self.csrf.token(name, invitation_id, cookie)})
        response.set_cookie(CSRF_COOKIE, cookie, max_age=3600, path="/invite/", secure=self.secure_cookies,
                            httponly=True, samesite="strict")
        return response

    def check_csrf(self, request: Request, name: str, invitation_id: int, token: str | None) -> None:
        self.csrf.check(token, name, invitation_id, request.cookies.get(CSRF_COOKIE))


def create_app(settings: Settings, *, clock: Callable[[], datetime] = _now) -> FastAPI:
    """The customer page's app. Raises WebConfigError when a setting it needs is missing."""
    install_log_masking()
    page = Page(settings, clock)
    app = FastAPI(title="L1NDA customer page", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.page = page
    static = resources.files("l1nda_sync.web").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    _install_handlers(app, page)
    _add_routes(app, page)
    return app


def _install_handlers(app: FastAPI, page: Page) -> None:
    """Security headers on every answer; errors as pages, never FastAPI's JSON (a 422 echoes the input)."""

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        for name, value in page.headers.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return pages.error("failed", "en")  # never FastAPI's 422, which echoes the input (a token)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return pages.error("unknown" if exc.status_code == 404 else "failed", "en", status=exc.status_code)


def _add_routes(app: FastAPI, page: Page) -> None:
    @app.get("/healthz")
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/invite/{value}")
    def invitation(value: str, request: Request) -> Response:
        with page.connect() as conn, db.transaction(conn) as cur:
            found = inv.find(cur, value, for_update=True)
            if found is None and not page.allowed(request):
                return pages.error("rate_limited", "en")
            try:
                invitation = inv.usable(found, page.clock())
            except inv.InvitationUnusable as exc:
                return pages.error(exc.code, found.language if found else "en")
            inv.mark_opened(cur, invitation.id, page.clock())
        context = {"invitation": invitation, "value": value}
        if invitation.purpose == "rest":
            scopes = page.rest_app.scopes if page.rest_app else ()
            return page.form("invite_rest", invitation.language, {**context, "scopes": pages.scope_texts(
                scopes, invitation.language)}, invitation.id, request)
        return page.form("invite_token", invitation.language, context, invitation.id, request)

    @app.post("/invite/{value}/connect")
    def connect(value: str, request: Request, csrf: str | None = Form(None)) -> Response:
        return flows.start_consent(page, request, value, csrf)

    @app.get(page.callback_path)
    def callback(request: Request) -> Response:
        return flows.finish_consent(page, request)

    @app.post("/invite/{value}/token")
    def token(value: str, request: Request, csrf: str | None = Form(None), username: str | None = Form(None),
              token: str | None = Form(None)) -> Response:
        return flows.hand_over_token(page, request, value, csrf, username, token)


def redirect(location: str, allowed: tuple[str, ...]) -> RedirectResponse:
    """A 303 only to one of the allowed prefixes (Nmbrs' authorize URL): never an open redirect."""
    if not any(location.startswith(prefix) for prefix in allowed):
        raise ConfigError("refusing to redirect outside Nmbrs' authorize URL")
    return RedirectResponse(location, status_code=303)


__all__ = ["CsrfError", "Page", "WebConfigError", "create_app", "redirect"]
