"""The one exception hierarchy the engine and the CLI switch on (`outcome`), and how Nmbrs faults map to it.

Nmbrs wraps every error as `Server was unable to process request. ---> NNNN: Text`; the code is read from
that form (`--->\\s*(\\d{4}):`) or, when a server or proxy leaves the .NET wrapper out, from a leading
`NNNN:` ("1001: Invalid Authentication"); never from the wording. Messages carry the server's text, the
service, the operation and the id concerned, never a token: the client scrubs the token (in every form a
server may echo it in, see `l1nda_sync.masking.secret_pattern`) from any server text before it builds an error.

HTTP answers that are not SOAP faults (`error_for_http`): 5xx, 408, 425 and 429 are transient and retried
(429/503 honour `Retry-After` within the call deadline); 403 without a SOAP fault is a proxy's or WAF's page,
transient but not retried within the call (hammering a block makes it worse; the engine checks again soon and
its circuit breaker judges a provider-wide block); any other status (400, 404, 405, 415, ...) says the request
or the base URL is wrong: unknown.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypedDict, Unpack

FAULT_CODE = re.compile(r"--->\s*(\d{4}):")
LEADING_CODE = re.compile(r"^\s*(\d{4})\s*:")  # the code without the .NET wrapper: "1001: Invalid ..."

# The number after `--->` of each class.
INVALID_CREDENTIALS = 1001
OPERATION_NOT_ALLOWED = 1002
DATA_NOT_ALLOWED = 1003
NO_SUBSCRIPTION = 1004
LOGIN_SECURITY_FAILURE = 1006
UNKNOWN_SERVER_ERROR = 9999
# 2003 / 2004 / 2009: no right to that employee / company / debtor id.
ID_KIND_BY_CODE = {DATA_NOT_ALLOWED: None, 2003: "employee", 2004: "company", 2009: "debtor"}
TRANSIENT_CODES = frozenset({LOGIN_SECURITY_FAILURE, UNKNOWN_SERVER_ERROR})


def _code_match(text: str) -> re.Match[str] | None:
    return FAULT_CODE.search(text) or LEADING_CODE.match(text)


def fault_code(text: str | None) -> int | None:
    """The Nmbrs error number in a fault string (`---> NNNN:` or a leading `NNNN:`), or None."""
    match = _code_match(text or "")
    return int(match.group(1)) if match else None


def fault_text(text: str | None) -> str:
    """The part after the code ('Invalid Authentication'), or the whole string when there is no code."""
    text = (text or "").strip()
    match = _code_match(text)
    return text[match.end():].strip() if match else text


class ErrorContext(TypedDict, total=False):
    """Where an error happened and what the server said: the keyword arguments every `NmbrsError` takes."""

    code: int | None
    service: str | None
    operation: str | None
    text: str | None


class NmbrsError(Exception):
    """Base of every error the client raises. `outcome` is what the engine records for the token."""

    outcome = "unknown"
    retryable = False

    def __init__(self, message: str, *, code: int | None = None, service: str | None = None,
                 operation: str | None = None, text: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.service = service
        self.operation = operation
        self.text = text
        self.calls: int | None = None  # set by probe(): requests the failed probe sent
        self.retry_after: float | None = None  # seconds the server asked us to wait (HTTP Retry-After)

    @property
    def where(self) -> str:
        return ".".join(p for p in (self.service, self.operation) if p) or "Nmbrs"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, where={self.where!r}, message={str(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:  # picklable subclasses (Airflow may ship exceptions between processes)
        return _rebuild, (type(self), str(self), self.__dict__.copy())


def _rebuild(cls: type[NmbrsError], message: str, state: dict[str, Any]) -> NmbrsError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class CredentialInvalid(NmbrsError):
    """1001: the e-mail, the token or the domain is wrong; the token was reset or the user deleted."""

    outcome = "invalid"


class OperationNotAllowed(NmbrsError):
    """1002: the operation is switched off in the login's API user template."""

    outcome = "rights_missing"


class DataNotAllowed(NmbrsError):
    """1003, 2003, 2004, 2009: no right to that id (outside the login's filter, or it does not exist)."""

    outcome = "data_not_allowed"

    def __init__(self, message: str, *, data_id: int | None = None, data_kind: str | None = None,
                 **kwargs: Unpack[ErrorContext]) -> None:
        super().__init__(message, **kwargs)
        self.data_id = data_id
        self.data_kind = data_kind


class NoSubscription(NmbrsError):
    """1004: the environment has no valid subscription."""

    outcome = "no_subscription"


class TransientError(NmbrsError):
    """1006, 9999, HTTP 5xx without a SOAP fault, connection errors, time-outs, malformed XML: try again later."""

    outcome = "transient"
    retryable = True


class MalformedAnswer(TransientError):
    """A well-formed HTTP 200 answer that is not what the operation returns (e.g. no `<OpResult>` element at
    all): never read as an empty list; transient, so the previous reach is kept and the call is tried again."""


class UnknownNmbrsError(NmbrsError):
    """Anything else; keeps the code (if any) and the server's text."""

    outcome = "unknown"


def error_for_fault(faultstring: str | None, *, service: str | None, operation: str | None,
                    params: Mapping[str, object] | None = None) -> NmbrsError:
    """The error for a SOAP fault answered by `service.operation` called with `params` (to name the id)."""
    code = fault_code(faultstring)
    text = fault_text(faultstring)
    where = ".".join(p for p in (service, operation) if p) or "Nmbrs"
    common: ErrorContext = {"code": code, "service": service, "operation": operation, "text": text}
    if code == INVALID_CREDENTIALS:
        return CredentialInvalid(f"{where}: {code} {text} (the login e-mail, token or domain is not accepted)",
                                 **common)
    if code == OPERATION_NOT_ALLOWED:
        return OperationNotAllowed(f"{where}: {code} {text} ({where} is switched off in the login's API "
                                   "user template)", **common)
    if code in ID_KIND_BY_CODE:
        data_id = _first_id(params)
        kind = ID_KIND_BY_CODE[code] or _id_kind(params)
        named = f" for {kind} {data_id}" if data_id is not None else ""
        return DataNotAllowed(f"{where}: {code} {text}{named}", data_id=data_id, data_kind=kind, **common)
    if code == NO_SUBSCRIPTION:
        return NoSubscription(f"{where}: {code} {text} (the environment has no valid subscription)", **common)
    if code in TRANSIENT_CODES:
        return TransientError(f"{where}: {code} {text}", **common)
    shown = f"{code} {text}" if code is not None else text
    return UnknownNmbrsError(f"{where}: unexpected fault: {shown}"[:1000], **common)


TRANSIENT_HTTP = frozenset({408, 425, 429})
WAF_FORBIDDEN = 403


def error_for_http(status: int, detail: str, *, service: str | None, operation: str | None,
                   retry_after: float | None = None) -> NmbrsError:
    """The error for an HTTP error status whose body is not a SOAP fault (`detail`: already scrubbed)."""
    where = ".".join(p for p in (service, operation) if p) or "Nmbrs"
    common: ErrorContext = {"service": service, "operation": operation, "text": detail}
    if status >= 500 or status in TRANSIENT_HTTP:
        error: NmbrsError = TransientError(f"{where}: {detail}", **common)
    elif status == WAF_FORBIDDEN:
        error = TransientError(f"{where}: {detail} (a proxy or firewall refused the call)", **common)
        error.retryable = False  # not within this call: the next check tries again
    else:
        error = UnknownNmbrsError(f"{where}: unexpected answer: {detail}"[:1000], **common)
    error.retry_after = retry_after
    return error


def _first_id(params: Mapping[str, object] | None) -> int | None:
    for key, value in (params or {}).items():
        if key.endswith("Id") and isinstance(value, int):
            return value
    return None


def _id_kind(params: Mapping[str, object] | None) -> str | None:
    for key in params or {}:
        if key.endswith("Id"):
            return key[: -len("Id")].lower() or None
    return None


# -- REST (issue 18): the same hierarchy, the REST API's codes and the identity server's RFC 6749 errors ------------
class ConsentRevoked(NmbrsError):
    """REST: the customer withdrew the consent in Nmbrs, or its refresh token expired or died (`invalid_grant`
    that no other worker explains; 401/40102 after one refresh). Confirmed like a 1001 before anything moves."""

    outcome = "consent_revoked"


class ScopeMissing(OperationNotAllowed):
    """REST 403/40303 on a path only a scope guards: the consent lacks `scope` (SOAP's 1002, rights missing).

    `operation` is the scope, so the engine's `missing_operation` names it."""

    def __init__(self, message: str, *, scope: str, **kwargs: Unpack[ErrorContext]) -> None:
        kwargs.setdefault("operation", scope)
        super().__init__(message, **kwargs)
        self.scope = scope

    @property
    def missing_operation(self) -> str:
        return self.scope


class Throttled(TransientError):
    """REST 429/42908 `Too_Many_Calls`: retried within the call after `Retry-After` (when given) or backoff."""


class QuotaExceeded(TransientError):
    """REST 429/42909 `Quota_Exceeded`: L1NDA's app used up its quota. Transient for the connection (it says
    nothing about the customer) but never retried: retrying cannot help and only burns more quota; ops must act."""

    retryable = False


class AuthorizationError(NmbrsError):
    """The identity server (OAuth2) refused: `error` and `description` as RFC 6749 names them (never a secret)."""

    def __init__(self, message: str, *, error: str | None = None, description: str | None = None,
                 **kwargs: Unpack[ErrorContext]) -> None:
        super().__init__(message, **kwargs)
        self.error = error
        self.description = description
        self.state: str | None = None  # a callback's `state` (a Secret), so a caller can match its request


class ConsentDenied(AuthorizationError):
    """The customer pressed 'deny' (callback `error=access_denied`)."""


class InvalidScope(AuthorizationError):
    """A scope Nmbrs does not know or does not allow this app (callback `error=invalid_scope`)."""


class InvalidGrant(AuthorizationError):
    """`invalid_grant`: a code or refresh token that is unknown, used, expired, or whose consent was withdrawn."""


class InvalidClient(AuthorizationError):
    """`invalid_client`: L1NDA's own client id or secret is wrong: a deployment fault, not the customer's."""
