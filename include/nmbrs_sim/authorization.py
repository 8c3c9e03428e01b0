"""The rules of /connect/authorize, shared by the HTML page and the admin API's POST /_sim/rest/authorize:
which requests are shown an error page, which are sent back with an error, and who may consent."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from nmbrs_sim.consents import ConsentBook
from nmbrs_sim.rest_clients import KNOWN_SCOPES, RestClient, RestConfig
from nmbrs_sim.world import ACCOUNTANT, World

PKCE_METHODS = ("S256", "plain")


class AuthorizePageError(Exception):
    """Shown as an error page; the browser is not sent back to the client (unknown client or redirect URI,
    an unknown or disallowed scope)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(f"{title}: {message}")
        self.status = status
        self.title = title
        self.message = message


class LoginRefused(Exception):
    """The login cannot consent (wrong credentials, a master login): the page asks again."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    """A checked authorize request."""

    client: RestClient
    redirect_uri: str
    scopes: list[str]
    state: str | None
    code_challenge: str | None
    code_challenge_method: str | None


def redirect_location(redirect_uri: str, params: dict[str, str | None]) -> str:
    """The callback URL with `params` (None left out) added to the redirect URI's own query."""
    query = urlencode({k: v for k, v in params.items() if v is not None}, quote_via=quote)
    return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{query}"


class RedirectError(Exception):
    """Sent back to the client's redirect URI as ?error=...&error_description=...&state=..."""

    def __init__(self, request_state: str | None, redirect_uri: str, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.location = redirect_location(redirect_uri, {"error": error, "error_description": description,
                                                         "state": request_state})


def check_request(rest: RestConfig, params: dict[str, str]) -> AuthorizeRequest:
    """Validate an authorize request in the order IdentityServer does: client, redirect URI, then the rest."""
    client = rest.clients.get(params.get("client_id", ""))
    if client is None:
        raise AuthorizePageError(400, "Unknown client", "The application that sent you here is not registered.")
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in client.redirect_uris:
        raise AuthorizePageError(400, "Invalid redirect_uri",
                                 "The redirect URI is not registered for this application (it must match exactly).")
    state = params.get("state") or None
    if params.get("response_type") != "code":
        raise RedirectError(state, redirect_uri, "unsupported_response_type", "Only response_type=code is supported.")
    scopes = list(dict.fromkeys(params.get("scope", "").split()))
    bad = [s for s in scopes if s not in KNOWN_SCOPES or s not in client.scopes]
    if not scopes or bad:
        raise AuthorizePageError(400, "Invalid scope",
                                 f"The application asked for a scope it may not use: {' '.join(bad) or '(none)'}.")
    challenge = params.get("code_challenge") or None
    method = params.get("code_challenge_method") or None
    if method is not None and (challenge is None or method not in PKCE_METHODS):
        raise RedirectError(state, redirect_uri, "invalid_request",
                            "code_challenge_method must be S256 or plain, with a code_challenge.")
    if challenge is not None and not 43 <= len(challenge) <= 128:
        raise RedirectError(state, redirect_uri, "invalid_request", "code_challenge must be 43 to 128 characters.")
    return AuthorizeRequest(client, redirect_uri, scopes, state, challenge,
                            (method or "plain") if challenge else None)


def consent_as(world: World, book: ConsentBook, request: AuthorizeRequest, username: str, password: str | None,
               now: float) -> str:
    """Consent as `username` (checking `password` unless it is None) and answer the callback location."""
    with world.lock:
        login = world.logins.get(username.strip().lower())
        ok = login is not None and not login.deleted and login.password is not None and (
            password is None or hmac.compare_digest(login.password.encode(), password.encode()))
        if login is None or not ok:
            raise LoginRefused(401, "Invalid username or password.")
        if login.level == ACCOUNTANT:
            raise LoginRefused(403, "An accountant (master) login cannot connect apps: sign in with the client or "
                                    "company login of the debtor to connect.")
        code = book.grant(request.client, login.username, request.scopes, request.redirect_uri, now,
                          challenge=request.code_challenge, method=request.code_challenge_method)
    return redirect_location(request.redirect_uri, {"code": code, "scope": " ".join(request.scopes),
                                                    "state": request.state})


def deny_location(request: AuthorizeRequest) -> str:
    return redirect_location(request.redirect_uri, {"error": "access_denied",
                                                    "error_description": "The user denied the request.",
                                                    "state": request.state})
