"""The identity server: discovery and JWKS, /connect/authorize (HTML login and consent), /connect/token
(authorization_code, refresh_token) and /connect/revocation, as Nmbrs' IdentityServer answers them."""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web

from nmbrs_sim import access_tokens
from nmbrs_sim.authorization import (
    AuthorizePageError,
    AuthorizeRequest,
    LoginRefused,
    RedirectError,
    check_request,
    consent_as,
    deny_location,
)
from nmbrs_sim.authorize_page import consent_page, error_page
from nmbrs_sim.consents import Grant, OAuthError
from nmbrs_sim.gateway import gated
from nmbrs_sim.rest_catalog import DISCOVERY_PATH, IDENTITY_SERVICE, JWKS_PATH
from nmbrs_sim.rest_clients import KNOWN_SCOPES, RestClient
from nmbrs_sim.simulator import Simulator

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def issuer(request: web.Request) -> str:
    """The identity server's base URL as the caller reached it."""
    return f"{request.scheme}://{request.host}"


def add_identity_routes(app: web.Application, sim_key: web.AppKey[Simulator]) -> None:
    async def discovery(request: web.Request) -> web.StreamResponse:
        sim = request.app[sim_key]
        return await gated(request, sim, IDENTITY_SERVICE, "discovery", "",
                           lambda: _json(discovery_document(issuer(request))))

    async def jwks(request: web.Request) -> web.StreamResponse:
        sim = request.app[sim_key]
        return await gated(request, sim, IDENTITY_SERVICE, "jwks", "", lambda: _json(access_tokens.jwks()))

    async def authorize(request: web.Request) -> web.StreamResponse:
        sim = request.app[sim_key]
        params = dict(await request.post()) if request.method == "POST" else dict(request.query)
        fields = {k: v for k, v in params.items() if isinstance(v, str)}
        return await gated(request, sim, IDENTITY_SERVICE, "authorize", fields.get("username", ""),
                           lambda: _authorize(sim, request.method, fields))

    async def token(request: web.Request) -> web.StreamResponse:
        sim = request.app[sim_key]
        form = await _form(request)
        grant_value = form.get("code") or form.get("refresh_token") or ""
        return await gated(request, sim, IDENTITY_SERVICE, "token", sim.consents.username_for(grant_value),
                           lambda: _token(sim, request, form))

    async def revocation(request: web.Request) -> web.StreamResponse:
        sim = request.app[sim_key]
        form = await _form(request)
        return await gated(request, sim, IDENTITY_SERVICE, "revocation",
                           sim.consents.username_for(form.get("token", "")), lambda: _revoke(sim, request, form))

    app.router.add_get(DISCOVERY_PATH, discovery)
    app.router.add_get(JWKS_PATH, jwks)
    app.router.add_route("GET", "/connect/authorize", authorize)
    app.router.add_route("POST", "/connect/authorize", authorize)
    app.router.add_post("/connect/token", token)
    app.router.add_post("/connect/revocation", revocation)


def discovery_document(base: str) -> dict[str, Any]:
    return {
        "issuer": base,
        "jwks_uri": f"{base}{JWKS_PATH}",
        "authorization_endpoint": f"{base}/connect/authorize",
        "token_endpoint": f"{base}/connect/token",
        "revocation_endpoint": f"{base}/connect/revocation",
        "scopes_supported": list(KNOWN_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["plain", "S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }


async def _json(body: dict[str, Any]) -> web.Response:
    return web.json_response(body)


async def _form(request: web.Request) -> dict[str, str]:
    if request.content_type != "application/x-www-form-urlencoded":
        return {}
    return {k: v for k, v in (await request.post()).items() if isinstance(v, str)}


# ---------------------------------------------------------------------- authorize
async def _authorize(sim: Simulator, method: str, params: dict[str, str]) -> web.StreamResponse:
    try:
        checked = check_request(sim.rest, params)
    except AuthorizePageError as exc:
        return error_page(exc.status, exc.title, exc.message)
    except RedirectError as exc:
        return _redirect(exc.location)
    if method == "GET":
        return consent_page(params, checked.client.name, checked.scopes)
    if params.get("action") == "deny":
        return _redirect(deny_location(checked))
    return _sign_in(sim, checked, params)


def _redirect(location: str) -> web.Response:
    """Back to the client's redirect URI (a 302, as IdentityServer answers)."""
    return web.Response(status=302, headers={"Location": location})


def _sign_in(sim: Simulator, checked: AuthorizeRequest, params: dict[str, str]) -> web.StreamResponse:
    username = params.get("username", "")
    try:
        location = consent_as(sim.world, sim.consents, checked, username, params.get("password", ""),
                              sim.clock.now())
    except LoginRefused as exc:
        return consent_page(params, checked.client.name, checked.scopes, username=username, error=exc.message,
                            status=exc.status)
    return _redirect(location)


# ---------------------------------------------------------------------- token and revocation
def _client(sim: Simulator, request: web.Request, form: dict[str, str]) -> RestClient:
    """RFC 6749 2.3.1: HTTP Basic with the id and secret form-encoded first, or both in the form body."""
    header = request.headers.get("Authorization", "")
    basic = header[:6].lower() == "basic "
    if basic:
        try:
            raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
            client_id, _, secret = raw.partition(":")
            client_id, secret = unquote_plus(client_id), unquote_plus(secret)
        except (binascii.Error, UnicodeDecodeError):
            client_id = secret = ""
    else:
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    client = sim.rest.clients.get(client_id)
    if client is None or not secret or not _same(client.client_secret, secret):
        raise OAuthError("invalid_client", "Client authentication failed.", 401 if basic else 400)
    return client


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _error(exc: OAuthError) -> web.Response:
    headers = dict(NO_STORE)
    if exc.error == "invalid_client" and exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="identityservice"'
    return web.json_response(exc.body(), status=exc.status, headers=headers)


async def _token(sim: Simulator, request: web.Request, form: dict[str, str]) -> web.Response:
    try:
        if not form:
            raise OAuthError("invalid_request", "Send the parameters as application/x-www-form-urlencoded.")
        client = _client(sim, request, form)
        grant = _grant(sim, client, form)
    except OAuthError as exc:
        return _error(exc)
    return web.json_response(_token_body(sim, request, grant), headers=NO_STORE)


def _grant(sim: Simulator, client: RestClient, form: dict[str, str]) -> Grant:
    grant_type = form.get("grant_type", "")
    now = sim.clock.now()
    if grant_type == "authorization_code":
        if not form.get("code"):
            raise OAuthError("invalid_request", "code is missing.")
        grant = sim.consents.exchange_code(client, form["code"], form.get("redirect_uri"),
                                           form.get("code_verifier"), now)
    elif grant_type == "refresh_token":
        if not form.get("refresh_token"):
            raise OAuthError("invalid_request", "refresh_token is missing.")
        grant = sim.consents.refresh(client, form["refresh_token"], now)
    else:
        raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported.")
    login = sim.world.logins.get(grant.consent.username.lower())
    if login is None or login.deleted:
        raise OAuthError("invalid_grant", "The user of this grant no longer exists.",
                         sim.consents.settings.token_error_status)
    return grant


def _token_body(sim: Simulator, request: web.Request, grant: Grant) -> dict[str, Any]:
    consent = grant.consent
    login = sim.world.logins[consent.username.lower()]
    lifetime = sim.consents.settings.access_token_seconds
    body: dict[str, Any] = {
        "access_token": access_tokens.issue(issuer=issuer(request), consent_id=consent.id,
                                            client_id=consent.client_id, username=login.username,
                                            user_id=login.uuid, scopes=grant.scopes, now=sim.clock.now(),
                                            lifetime=lifetime),
        "expires_in": lifetime, "token_type": "Bearer", "scope": " ".join(grant.scopes)}
    if grant.refresh_token is not None:
        body["refresh_token"] = grant.refresh_token
    return body


async def _revoke(sim: Simulator, request: web.Request, form: dict[str, str]) -> web.Response:
    try:
        if not form.get("token"):
            raise OAuthError("invalid_request", "token is missing.")
        client = _client(sim, request, form)
    except OAuthError as exc:
        return _error(exc)
    sim.consents.revoke(client, form["token"])  # RFC 7009: 200 whether or not the token was known
    return web.Response(status=200)
