"""OAuth2 with Nmbrs' identity server, on authlib's `OAuth2Session` (requests): the authorization code flow with
PKCE S256, and rotating refresh tokens.

Client authentication is HTTP Basic with the id and secret percent-encoded first (RFC 6749 2.3.1; Nmbrs' secrets
hold `*` and `$`, and authlib's own `client_secret_basic` does not encode). Token endpoint answers are judged
before authlib reads them: 5xx, 408, 425, 429, an HTML page or unreadable JSON is transient (never a verdict);
an RFC 6749 error body becomes `InvalidGrant`, `InvalidClient` or `AuthorizationError`. Every server text that
ends up in an exception is scrubbed of the secrets the call sent (client secret, code, verifier, refresh token),
in every form a server may echo them in (`l1nda_sync.masking`); none of them ever reaches a log line.

Both token grants spend what they send (a code, a refresh token: single use), so a token call is retried only
when the request provably never reached the server: the connection could not be opened (refused, DNS, a connect
time-out) or the server refused it unprocessed (429). Everything after the request may have been sent (a reset or
read time-out, a 5xx, a truncated or unreadable answer) is transient but not retried (`retryable` False): the
server may have rotated the token already, so a repeat could only answer `invalid_grant`.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import requests
from authlib.integrations.requests_client import OAuth2Session
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NameResolutionError, NewConnectionError

from l1nda_sync.masking import Scrubber, Secret
from l1nda_sync.nmbrs.errors import (
    AuthorizationError,
    ConsentDenied,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    MalformedAnswer,
    NmbrsError,
    TransientError,
)
from l1nda_sync.nmbrs.redaction import guarding, install_log_redaction
from l1nda_sync.nmbrs.rest.config import RestApp
from l1nda_sync.nmbrs.retry import Deadline, RetryPolicy, call_with_retry

IDENTITY = "Identity"
TRANSIENT_STATUS = frozenset({408, 425, 429})
UNPROCESSED_STATUS = frozenset({429})  # the server refused the request without processing it: safe to send again
DEFAULT_TIMEOUT = (5.0, 30.0)
DEFAULT_RETRY = RetryPolicy(attempts=3, deadline=60.0)
BASIC = "client_secret_basic"  # authlib's name of the client authentication method


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A started consent: the URL to send the customer, and what must be kept (hashed state, encrypted verifier)."""

    url: str = field(repr=False)  # carries the state
    state: Secret
    code_verifier: Secret
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Callback:
    """What Nmbrs sent back to the redirect URI."""

    code: Secret | None
    state: Secret | None
    error: str | None = None
    error_description: str | None = None
    scopes: tuple[str, ...] = ()  # the granted scope (may be narrower than asked)


@dataclass(frozen=True, slots=True)
class Grant:
    """One token endpoint answer: an access token with its expiry, the (rotated) refresh token, the scopes."""

    access_token: Secret
    expires_at: datetime
    refresh_token: Secret | None
    scopes: tuple[str, ...]


# -- the authorize URL and the callback -------------------------------------------------------------------------
def start_authorization(app: RestApp, *, scopes: tuple[str, ...] | None = None) -> AuthorizationRequest:
    """The authorize URL for one consent, with a random `state` and a PKCE S256 verifier."""
    wanted = tuple(scopes or app.scopes)
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)  # 86 characters: within RFC 7636's 43-128
    with _session(app) as session:
        url, _ = session.create_authorization_url(app.authorize_url, state=state, code_verifier=verifier,
                                                  scope=" ".join(wanted))
    return AuthorizationRequest(str(url), Secret(state), Secret(verifier), wanted)


_CALLBACK_ERRORS: dict[str, type[AuthorizationError]] = {"access_denied": ConsentDenied,
                                                         "invalid_scope": InvalidScope}


def parse_callback(url: str, *, raise_errors: bool = True) -> Callback:
    """Read the URL Nmbrs redirected to. An `error` answer raises (ConsentDenied, InvalidScope, else
    AuthorizationError; the error carries `.state`) unless `raise_errors` is False; a URL with neither a code nor
    an error is a ValueError."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("not a callback URL: expected the whole address Nmbrs redirected to (http(s)://...?code=...)")
    params = dict(parse_qsl(parts.query))
    state = Secret(params["state"]) if params.get("state") else None
    error = params.get("error") or None
    if error is not None:
        callback = Callback(None, state, error, params.get("error_description"), ())
        if raise_errors:
            raise _callback_error(callback)
        return callback
    code = params.get("code")
    if not code:
        raise ValueError("the callback URL holds neither a code nor an error: copy the whole address from the browser")
    return Callback(Secret(code), state, None, None, tuple(params.get("scope", "").split()))


def _callback_error(callback: Callback) -> AuthorizationError:
    cls = _CALLBACK_ERRORS.get(callback.error or "", AuthorizationError)
    described = f": {callback.error_description}" if callback.error_description else ""
    error = cls(f"Nmbrs answered the consent with {callback.error}{described}"[:500], error=callback.error,
                description=callback.error_description, service=IDENTITY, operation="authorize")
    error.state = callback.state
    return error


# -- the token endpoint ----------------------------------------------------------------------------------------
def exchange_code(app: RestApp, code: str, code_verifier: str, *, now: datetime,
                  session: requests.Session | None = None, retry: RetryPolicy | None = None) -> Grant:
    """Trade a callback's code (single use, 5 minutes) for the first grant."""
    form = {"grant_type": "authorization_code", "code": _plain(code), "code_verifier": _plain(code_verifier),
            "redirect_uri": app.redirect_uri}
    return _token_call(app, form, now=now, operation="token", session=session, retry=retry,
                       secrets_sent=(_plain(code), _plain(code_verifier)))


def refresh(app: RestApp, refresh_token: str, *, now: datetime, session: requests.Session | None = None,
            retry: RetryPolicy | None = None) -> Grant:
    """Use a refresh token (single use): the new grant carries the rotated refresh token. Store it first."""
    token = _plain(refresh_token)
    form = {"grant_type": "refresh_token", "refresh_token": token}
    return _token_call(app, form, now=now, operation="refresh", session=session, retry=retry, secrets_sent=(token,),
                       refresh_token=token)


def revoke(app: RestApp, token: str, *, session: requests.Session | None = None,
           retry: RetryPolicy | None = None) -> None:
    """Revoke a refresh token (RFC 7009, `/connect/revocation`, client authentication as for the token endpoint):
    the consent's grant dies at Nmbrs. Idempotent (any token answers 200), so it is retried like any call; a
    failure is a TransientError (nothing to judge: the caller says what to do by hand)."""
    install_log_redaction()
    plain = _plain(token)
    hidden = (app.client_secret.reveal(), _basic_credentials(app.client_id, app.client_secret.reveal()), plain)
    with _guarded(hidden), _session(app, session) as oauth:

        def attempt(deadline: Deadline) -> None:
            timeout = (DEFAULT_TIMEOUT[0], max(0.1, min(DEFAULT_TIMEOUT[1], deadline.remaining())))
            try:
                response = oauth.revoke_token(app.revocation_url, token=plain, token_type_hint="refresh_token",  # noqa: S106
                                              timeout=timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(f"{IDENTITY}.revocation: {type(exc).__name__}", service=IDENTITY,
                                     operation="revocation") from None
            if response.status_code != 200:
                error = TransientError(f"{IDENTITY}.revocation: HTTP {response.status_code}", service=IDENTITY,
                                       operation="revocation")
                error.retryable = response.status_code >= 500 or response.status_code in TRANSIENT_STATUS
                raise error

        call_with_retry(attempt, retry or DEFAULT_RETRY)


def _token_call(app: RestApp, form: Mapping[str, str], *, now: datetime, operation: str,
                session: requests.Session | None, retry: RetryPolicy | None, secrets_sent: tuple[str, ...],
                refresh_token: str | None = None) -> Grant:
    install_log_redaction()
    hidden = (app.client_secret.reveal(), _basic_credentials(app.client_id, app.client_secret.reveal()), *secrets_sent)
    with _guarded(hidden) as scrub, _session(app, session) as oauth:

        def attempt(deadline: Deadline) -> dict[str, Any]:
            try:
                return _post_token(oauth, app, form, scrub, operation, deadline)
            except NmbrsError as error:
                if not getattr(error, "unsent", False):
                    error.retryable = False  # it may have been sent: the code or token may be spent
                raise

        body = call_with_retry(attempt, retry or DEFAULT_RETRY)
        return _grant(body, now, refresh_token, scrub)


def _post_token(oauth: OAuth2Session, app: RestApp, form: Mapping[str, str], scrub: Callable[[str], str],
                operation: str, deadline: Deadline) -> dict[str, Any]:
    timeout = (DEFAULT_TIMEOUT[0], max(0.1, min(DEFAULT_TIMEOUT[1], deadline.remaining())))
    grant_type = form["grant_type"]
    try:
        extra = {k: v for k, v in form.items() if k != "grant_type"}
        if grant_type == "refresh_token":
            token = oauth.refresh_token(app.token_url, refresh_token=extra["refresh_token"], timeout=timeout)
        else:
            token = oauth.fetch_token(app.token_url, grant_type=grant_type, timeout=timeout, **extra)
        return dict(token)
    except NmbrsError:
        raise
    except requests.ReadTimeout:
        raise TransientError(f"{IDENTITY}.{operation}: no answer in time", service=IDENTITY,
                             operation=operation) from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        error = TransientError(f"{IDENTITY}.{operation}: {type(exc).__name__}", service=IDENTITY,
                               operation=operation)
        error.unsent = _never_sent(exc)  # type: ignore[attr-defined]
        raise error from None
    except Exception as exc:  # authlib's OAuthError (RFC 6749 body) or anything it could not read
        raise _oauth_error(exc, scrub, operation) from None


def _never_sent(exc: requests.RequestException) -> bool:
    """True only when the request provably never left: no connection could be opened (refused, DNS, a connect
    time-out). A reset or a dropped connection after the request was written may follow its processing."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, NewConnectionError | ConnectTimeoutError | NameResolutionError)


def _oauth_error(exc: Exception, scrub: Callable[[str], str], operation: str) -> NmbrsError:
    error = getattr(exc, "error", None)
    description = scrub(str(getattr(exc, "description", "") or ""))[:300] or None
    if not isinstance(error, str):
        return MalformedAnswer(f"{IDENTITY}.{operation}: unreadable answer ({type(exc).__name__})",
                               service=IDENTITY, operation=operation)
    error = scrub(error)[:100]
    cls: type[AuthorizationError] = {"invalid_grant": InvalidGrant, "invalid_client": InvalidClient}.get(
        error, AuthorizationError)
    hint = " (check L1NDA's client id and secret: L1NDA_NMBRS_REST_CLIENT_ID / _SECRET)" if cls is InvalidClient else ""
    described = f": {description}" if description else ""
    return cls(f"{IDENTITY}.{operation}: {error}{described}{hint}", error=error, description=description,
               service=IDENTITY, operation=operation, text=description)


def _grant(body: Mapping[str, Any], now: datetime, refresh_token: str | None, scrub: Callable[[str], str]) -> Grant:
    access = body.get("access_token")
    expires_in = body.get("expires_in")
    if not isinstance(access, str) or not access or not isinstance(expires_in, int | float | str):
        raise MalformedAnswer(f"{IDENTITY}.token: an answer without access_token or expires_in "
                              f"(keys: {sorted(scrub(str(k)) for k in body)})", service=IDENTITY, operation="token")
    try:
        seconds = float(expires_in)
    except ValueError:
        raise MalformedAnswer(f"{IDENTITY}.token: expires_in is not a number", service=IDENTITY,
                              operation="token") from None
    rotated = body.get("refresh_token")
    scope = body.get("scope")
    scopes = tuple(scope.split()) if isinstance(scope, str) else tuple(scope or ())
    new_refresh = rotated if isinstance(rotated, str) and rotated else refresh_token
    return Grant(Secret(access), now + timedelta(seconds=seconds), Secret(new_refresh) if new_refresh else None,
                 scopes)


# -- authlib's session, our client authentication and answer checks --------------------------------------------
@contextmanager
def _session(app: RestApp, http: requests.Session | None = None) -> Iterator[OAuth2Session]:
    oauth = OAuth2Session(client_id=app.client_id, client_secret=app.client_secret.reveal(),
                          token_endpoint_auth_method=BASIC, redirect_uri=app.redirect_uri,
                          code_challenge_method="S256")
    oauth.register_client_auth_method((BASIC, _basic_percent_encoded))
    oauth.register_compliance_hook("access_token_response", _judge_answer)
    oauth.register_compliance_hook("refresh_token_response", _judge_answer)
    if http is not None:  # share a caller's connection pool (and its adapters)
        oauth.mount("http://", http.get_adapter("http://"))
        oauth.mount("https://", http.get_adapter("https://"))
    try:
        yield oauth
    finally:
        oauth.close()


def _basic_percent_encoded(client: Any, method: str, uri: str, headers: dict[str, str], body: str
                           ) -> tuple[str, dict[str, str], str]:
    """RFC 6749 2.3.1: form-encode id and secret, then Basic (authlib sends them raw)."""
    headers["Authorization"] = "Basic " + _basic_credentials(str(client.client_id), str(client.client_secret))
    return uri, headers, body


def _basic_credentials(client_id: str, secret: str) -> str:
    """base64 of the percent-encoded pair: as secret as the secret (a server may echo the header)."""
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return base64.b64encode(pair.encode()).decode("ascii")


def _judge_answer(response: requests.Response) -> requests.Response:
    """Before authlib reads it: what is not an RFC 6749 JSON answer is transient, never a verdict."""
    status = response.status_code
    if status >= 500 or status in TRANSIENT_STATUS:
        error = TransientError(f"{IDENTITY}.token: HTTP {status}", service=IDENTITY, operation="token")
        error.retry_after = _retry_after(response.headers.get("Retry-After"))
        error.unsent = status in UNPROCESSED_STATUS  # type: ignore[attr-defined]
        raise error
    try:
        body = response.json()
    except ValueError:
        raise TransientError(f"{IDENTITY}.token: HTTP {status} answered a page, not JSON (a proxy or firewall?)",
                             service=IDENTITY, operation="token") from None
    if not isinstance(body, dict):
        raise MalformedAnswer(f"{IDENTITY}.token: HTTP {status} answered JSON that is not an object",
                              service=IDENTITY, operation="token")
    return response


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


@contextmanager
def _guarded(values: tuple[str, ...]) -> Iterator[Callable[[str], str]]:
    """Scrub every one of `values` from log records while the block runs; yields one scrubber for all."""
    with ExitStack() as stack:
        scrubbers = [stack.enter_context(guarding(v)) for v in values if v]

        def scrub(text: str) -> str:
            return _scrub_all(text, scrubbers)

        yield scrub


def _scrub_all(text: str, scrubbers: list[Scrubber]) -> str:
    for scrubber in scrubbers:
        text = scrubber(text)
    return text


def _plain(value: str) -> str:
    return value.reveal() if isinstance(value, Secret) else value
