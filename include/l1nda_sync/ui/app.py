"""`create_app()`: the token-health page's FastAPI app, mounted by the Airflow plugin at /l1nda.

Routes (every one behind Airflow's login: a router-level dependency, so no route can forget it; 401 without):
- GET  /                               overview: credentials by state, open problems, migration countdown, last runs
- GET  /credentials?state=&kind=&customer=&page=      credentials, 50 a page
- GET  /credentials/{id}               one credential: reach, links with reasons, checks, mails; actions
- POST /credentials/{id}/recheck       (CSRF) a sync run for this credential, as the user, via Airflow's API
- POST /credentials/{id}/dry-run       (CSRF) the same with dry_run
- POST /problems/{id}/mute | unmute    (CSRF, Op) mails about a problem stop / resume
- POST /credentials/{id}/invite        (CSRF, Op) a one-time invitation to the customer page, queued for mail
- GET  /links?customer=&state=&page=   links with the reason they are pending or suspended
- GET  /outbox                         uncertain/failed mails and parked webhook events
- POST /outbox/{kind}/{id}/resend      (CSRF, Op) back in line
- GET  /api/overview, /api/credentials, /api/credentials/{id}, /api/links, /api/outbox: the same as JSON
- GET  /static/style.css
Every answer carries a Content-Security-Policy (no script; framed only by Airflow's own origin).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from l1nda_sync.registry import db
from l1nda_sync.registry.errors import NotFound, RegistryError
from l1nda_sync.settings import Settings, SettingsError
from l1nda_sync.ui import actions, auth, csrf, filters, queries
from l1nda_sync.ui.airflow_api import airflow_root, api_base_url
from l1nda_sync.ui.rendering import html, json_response

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "Content-Security-Policy": "frame-ancestors 'self'; default-src 'self'; script-src 'none'; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Config:
    """What the routes share: the settings (read on first use), the clock and Airflow's API address."""

    def __init__(self, settings: Settings | None, clock: Callable[[], datetime], api_url: str | None) -> None:
        self._settings = settings
        self.clock = clock
        self._api_url = api_url
        self.readiness = queries.ReadinessCache()

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.load()
        return self._settings

    @property
    def api_url(self) -> str:
        """Where the actions post: the test's stand-in, the setting airflow_api_url (the API server's own address
        inside its container), else Airflow's [api] base_url."""
        return self._api_url or self.settings.airflow_api_url or api_base_url()

    @property
    def ui_url(self) -> str:
        """Where users reach Airflow (its [api] base_url), for links to it."""
        return self._api_url or api_base_url()


def _is_api(request: Request) -> bool:
    return request.url.path.removeprefix(request.scope.get("root_path", "")).startswith("/api/")


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def error_response(request: Request, status: int, message: str, field: str | None = None) -> Response:
    if _is_api(request):
        return json_response({"detail": message, **({"field": field} if field else {})}, status=status)
    return html("error.html", {"root": _root(request), "status": status, "message": message, "field": field,
                               "title": f"Error {status}"}, status=status)


def create_app(settings: Settings | None = None, *, clock: Callable[[], datetime] | None = None,
               api_url: str | None = None) -> FastAPI:
    """The app. `settings` default to `Settings.load()` on the first request; `api_url` to Airflow's
    `[api] base_url` (where "Recheck now" posts the DAG run)."""
    config = Config(settings, clock or (lambda: datetime.now(UTC)), api_url)
    app = FastAPI(title="L1NDA token health", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config = config

    @app.middleware("http")
    async def security(request: Request, call_next: Callable[[Request], Any]) -> Response:
        try:
            response: Response = await call_next(request)
        except Exception:  # no traceback to the browser: a page that says where to look
            log.exception("token-health page failed on %s", request.url.path)
            response = error_response(request, 500, "the page failed; the API server's log has the details")
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
        return response

    _handlers(app)
    router = APIRouter(dependencies=[auth.READ])
    _pages(router)
    _api(router)
    actions.routes(router)
    app.include_router(router)
    return app


def _handlers(app: FastAPI) -> None:
    """Every error as a page (or JSON under /api/) with its status and a sentence, never a traceback."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = str(exc.detail)
        if exc.status_code == 401:
            message = "log in to Airflow first (this page uses Airflow's login)"
        elif exc.status_code == 404 and message == "Not Found":
            message = "no such page here"
        return error_response(request, exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        field = str(first.get("loc", ["", "?"])[-1])
        if first.get("loc", [""])[0] == "path":
            return error_response(request, 404, f"no such {field.replace('_', ' ')}: give a number", field)
        return error_response(request, 400, f"{field}: {first.get('msg', 'not valid')}", field)

    @app.exception_handler(filters.BadFilter)
    async def bad_filter(request: Request, exc: filters.BadFilter) -> Response:
        return error_response(request, 400, f"{exc.field}: {exc.message}", exc.field)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return error_response(request, 404, exc.message)

    @app.exception_handler(SettingsError)
    async def settings_error(request: Request, exc: SettingsError) -> Response:
        return error_response(request, 503, f"the page is not configured on this API server: {exc}")

    @app.exception_handler(RegistryError)
    async def registry_error(request: Request, exc: RegistryError) -> Response:
        return error_response(request, 503, str(exc))


def registry(request: Request) -> Iterator[db.Connection]:
    """A short-lived registry connection in a read-only session for this request (actions open their own)."""
    config: Config = request.app.state.config
    conn = db.connect(config.settings.require_database_url(), connect_timeout=5)
    try:
        conn.set_session(readonly=True)
        yield conn
    finally:
        conn.close()


REGISTRY = Depends(registry)


def _context(request: Request, user: Any, **values: Any) -> dict[str, Any]:
    config: Config = request.app.state.config
    return {"root": _root(request), "user": auth.user_name(user), "airflow_root": airflow_root(config.ui_url),
            **values}


def _pages(router: APIRouter) -> None:
    @router.get("/", include_in_schema=False)
    def overview(request: Request, user: Any = auth.USER, conn: db.Connection = REGISTRY) -> Response:
        config: Config = request.app.state.config
        data = queries.overview(conn, config.settings, config.clock(), config.readiness)
        return html("overview.html", _context(request, user, title="Token health", **data))

    @router.get("/credentials")
    def credentials(request: Request, user: Any = auth.USER, conn: db.Connection = REGISTRY) -> Response:
        chosen = filters.credentials(request.query_params)
        data = queries.credentials(conn, chosen)
        return html("credentials.html", _context(request, user, title="Credentials", **data))

    @router.get("/credentials/{token_id}")
    def credential(request: Request, token_id: int, user: Any = auth.USER,
                   conn: db.Connection = REGISTRY) -> Response:
        data = queries.credential(conn, token_id)
        name = auth.user_name(user)
        forms = {form: csrf.token(form, str(token_id), name) for form in ("recheck", "dry-run", "invite")}
        mute_forms = {p.id: csrf.token("unmute" if p.muted else "mute", str(p.id), name) for p in data["problems"]}
        flash = csrf.read_flash(request.query_params.get("flash"))
        return html("credential.html", _context(request, user, title=data["token"].label, csrf=forms,
                                                mute_csrf=mute_forms, flash=flash,
                                                may_operate=auth.may_operate(user), **data))

    @router.get("/links")
    def links(request: Request, user: Any = auth.USER, conn: db.Connection = REGISTRY) -> Response:
        chosen = filters.links(request.query_params)
        return html("links.html", _context(request, user, title="Links", **queries.links(conn, chosen)))

    @router.get("/outbox")
    def outbox(request: Request, user: Any = auth.USER, conn: db.Connection = REGISTRY) -> Response:
        data = queries.outbox(conn)
        name = auth.user_name(user)
        tokens = {f"mail:{m.id}": csrf.token("resend", f"mail:{m.id}", name) for m in data["mails"]}
        tokens.update({f"webhook:{w.id}": csrf.token("resend", f"webhook:{w.id}", name) for w in data["webhooks"]})
        flash = csrf.read_flash(request.query_params.get("flash"))
        return html("outbox.html", _context(request, user, title="Outbox", resend_csrf=tokens, flash=flash,
                                            may_operate=auth.may_operate(user), **data))

    @router.get("/static/style.css", include_in_schema=False)
    def style() -> Response:
        css = resources.files("l1nda_sync.ui").joinpath("static/style.css").read_text(encoding="utf-8")
        return Response(css, media_type="text/css")


def _api(router: APIRouter) -> None:
    @router.get("/api/overview")
    def api_overview(request: Request, conn: db.Connection = REGISTRY) -> Response:
        config: Config = request.app.state.config
        return json_response(queries.overview(conn, config.settings, config.clock(), config.readiness))

    @router.get("/api/credentials")
    def api_credentials(request: Request, conn: db.Connection = REGISTRY) -> Response:
        data = queries.credentials(conn, filters.credentials(request.query_params))
        return json_response({**data, "page": {**_page(data["page"])}})

    @router.get("/api/credentials/{token_id}")
    def api_credential(token_id: int, conn: db.Connection = REGISTRY) -> Response:
        return json_response(queries.credential(conn, token_id))

    @router.get("/api/links")
    def api_links(request: Request, conn: db.Connection = REGISTRY) -> Response:
        data = queries.links(conn, filters.links(request.query_params))
        return json_response({**data, "page": {**_page(data["page"])}})

    @router.get("/api/outbox")
    def api_outbox(conn: db.Connection = REGISTRY) -> Response:
        return json_response(queries.outbox(conn))


def _page(page: Any) -> dict[str, int]:
    return {"total": page.total, "offset": page.offset, "limit": page.limit, "number": page.number,
            "pages": page.pages}
