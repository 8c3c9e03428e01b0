"""Reading REST answers: a page (`{pagination, data}`, strictly), and every error status mapped onto the one
hierarchy of `l1nda_sync.nmbrs.errors`, never from wording, always from status and code.

| answer | error |
|---|---|
| 401 with 40101/40102 | `TokenRefused` (a `ConsentRevoked`): refreshed once and asked again, then final |
| 401 without an API code (the gateway's body) | `SubscriptionKeyRejected`: L1NDA's key, not the customer |
| 403/40303 when the granted scopes lack it (scopes unknown: on a path only a scope guards) | `ScopeMissing(scope)` |
| 403/40303 when the granted scopes include it; 40303 or 40305 on a debtor path | `DataNotAllowed` (rights) |
| 403/40304 | `NoSubscription` |
| 403 without an API code (a WAF's page) | transient, not retried within the call (as SOAP) |
| 429/42908 (or a 429 without a code) | `Throttled`: retried after `Retry-After`, else backoff |
| 429/42909 | `QuotaExceeded`: transient, never retried |
| 5xx, 408, 425 (HTML or JSON) | `TransientError` (retried) |
| 200 that is not `{pagination: {...}, data: [...]}` | `MalformedAnswer` (never an empty list) |
| a page whose rows or pages disagree with `totalRecords` / `totalPages` | `MalformedAnswer` (a partial reach) |
| anything else (400, 404 outside a debtor path, ...) | `UnknownNmbrsError` |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from l1nda_sync.nmbrs.errors import (
    ConsentRevoked,
    DataNotAllowed,
    ErrorContext,
    MalformedAnswer,
    NmbrsError,
    NoSubscription,
    QuotaExceeded,
    ScopeMissing,
    Throttled,
    TransientError,
    UnknownNmbrsError,
)

REST = "REST"
TOKEN_CODES = frozenset({40101, 40102})
SCOPE_OR_DATA = 40303
DATA_CODES = frozenset({40305, 40401, 40404})
NO_SUBSCRIPTION = 40304
TOO_MANY_CALLS = 42908
QUOTA_EXCEEDED = 42909
TRANSIENT_STATUS = frozenset({408, 425})


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One REST operation: its OpenAPI operationId, the scope that guards it, and whether it also refuses data
    (a path with an id can answer 40303 for a debtor the login may not see, even with the scope)."""

    operation: str
    scope: str
    refuses_data: bool = False


class TokenRefused(ConsentRevoked):
    """401/40101 or 40102: the access token was refused. Final only after one refresh (the client's job)."""


class SubscriptionKeyRejected(UnknownNmbrsError):
    """401 from the API gateway (no API code): L1NDA's `X-Subscription-Key` is not accepted; a deployment fault."""


def has_scope(granted: tuple[str, ...], scope: str) -> bool:
    """`scope` or a scope that satisfies it (a write scope also satisfies reads of its area)."""
    area = scope.removesuffix(".read")
    return bool({scope, area, f"{area}.write"} & set(granted))


def read_page(body: Any, endpoint: Endpoint) -> tuple[list[dict[str, Any]], bool]:
    """(rows, more pages follow) of one answer; anything else is MalformedAnswer."""
    where = f"{REST}.{endpoint.operation}"
    if not isinstance(body, Mapping) or not isinstance(body.get("data"), list) \
            or not isinstance(body.get("pagination"), Mapping):
        keys = sorted(str(k) for k in body) if isinstance(body, Mapping) else type(body).__name__
        raise MalformedAnswer(f"{where}: an answer without data and pagination ({keys})", service=REST,
                              operation=endpoint.operation)
    rows = body["data"]
    if not all(isinstance(row, Mapping) for row in rows):
        raise MalformedAnswer(f"{where}: data holds entries that are not objects", service=REST,
                              operation=endpoint.operation)
    following = body["pagination"].get("nextPage")
    _check_counts(body["pagination"], len(rows), bool(following), where, endpoint)
    return [dict(row) for row in rows], bool(following)


def _count(pagination: Mapping[str, Any], key: str) -> int | None:
    value = pagination.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _check_counts(pagination: Mapping[str, Any], rows: int, more: bool, where: str, endpoint: Endpoint) -> None:
    """The page's rows against what `pagination` announces (`totalRecords`, `totalPages`, `pageNumber`,
    `pageSize`, where given): a page short of its rows, or pages that end before `totalPages` (or go on past
    it), are a partial answer: MalformedAnswer, never a smaller reach (a partial reach must never move links)."""
    number, size = _count(pagination, "pageNumber"), _count(pagination, "pageSize")
    total, pages = _count(pagination, "totalRecords"), _count(pagination, "totalPages")
    problem = None
    if number is not None and pages is not None and more != (number < pages):
        problem = (f"page {number} of {pages} says {'more' if more else 'no more'} pages follow")
    elif number is not None and size is not None and total is not None:
        expected = max(0, min(size, total - (number - 1) * size))
        if rows != expected:
            problem = f"page {number} (size {size}) of {total} records holds {rows} rows, not {expected}"
    elif not more and number == 1 and total is not None and rows != total:
        problem = f"the only page holds {rows} of {total} records"
    if problem is not None:
        raise MalformedAnswer(f"{where}: a partial answer: {problem}", service=REST, operation=endpoint.operation)


def error_for_status(status: int, body: Any, *, endpoint: Endpoint, scopes: tuple[str, ...] | None,
                     retry_after: float | None, scrub: Callable[[str], str]) -> NmbrsError:
    """The error for one non-2xx answer (`body`: the parsed JSON, or None for a page)."""
    code = body.get("code") if isinstance(body, Mapping) else None
    code = code if isinstance(code, int) else None
    detail = _detail(status, body, code, scrub)
    where = f"{REST}.{endpoint.operation}"
    common: ErrorContext = {"code": code, "service": REST, "operation": endpoint.operation, "text": detail}
    if status == 401:
        return _unauthorized(where, code, detail, common)
    if status == 403:
        return _forbidden(where, code, detail, common, endpoint, scopes)
    if status == 429:
        return _throttled(where, code, detail, common, retry_after)
    if status >= 500 or status in TRANSIENT_STATUS:
        error: NmbrsError = TransientError(f"{where}: {detail}", **common)
        error.retry_after = retry_after
        return error
    if status == 404 and code in DATA_CODES and endpoint.refuses_data:
        return DataNotAllowed(f"{where}: {detail}", data_kind="debtor", **common)
    return UnknownNmbrsError(f"{where}: unexpected answer: {detail}"[:1000], **common)


def _unauthorized(where: str, code: int | None, detail: str, common: ErrorContext) -> NmbrsError:
    if code in TOKEN_CODES:
        return TokenRefused(f"{where}: {detail} (the access token was refused)", **common)
    return SubscriptionKeyRejected(f"{where}: {detail} (the API gateway refused L1NDA's subscription key: check "
                                   "L1NDA_NMBRS_REST_SUBSCRIPTION_KEY)", **common)


def _forbidden(where: str, code: int | None, detail: str, common: ErrorContext, endpoint: Endpoint,
               scopes: tuple[str, ...] | None) -> NmbrsError:
    if code == NO_SUBSCRIPTION:
        return NoSubscription(f"{where}: {detail} (the environment has no valid subscription)", **common)
    if code == SCOPE_OR_DATA:
        granted = scopes is not None and has_scope(scopes, endpoint.scope)
        if not granted and (scopes is not None or not endpoint.refuses_data):
            # no service, operation = the scope: the engine's missing_operation is then the scope itself
            return ScopeMissing(f"{where}: {detail} (the consent lacks the scope {endpoint.scope})",
                                scope=endpoint.scope, code=code, text=detail)
        if granted and not endpoint.refuses_data:
            # the consent has the scope, so it is not the scope: the consenting login lacks the rights in Nmbrs
            return DataNotAllowed(f"{where}: {detail} (the consent has the scope {endpoint.scope}; the consenting "
                                  "login lacks the rights to read this in Nmbrs)", data_kind="debtor", **common)
        return DataNotAllowed(f"{where}: {detail}", data_kind="debtor", **common)
    if code in DATA_CODES:
        return DataNotAllowed(f"{where}: {detail}", data_kind="debtor", **common)
    if code is None:
        error = TransientError(f"{where}: {detail} (a proxy or firewall refused the call)", **common)
        error.retryable = False  # as SOAP: not within this call; the breaker judges a provider-wide block
        return error
    return UnknownNmbrsError(f"{where}: unexpected answer: {detail}"[:1000], **common)


def _throttled(where: str, code: int | None, detail: str, common: ErrorContext, retry_after: float | None
               ) -> NmbrsError:
    if code == QUOTA_EXCEEDED:
        error: NmbrsError = QuotaExceeded(f"{where}: {detail} (L1NDA's API quota is used up: not retried; "
                                          "operations must raise the quota with Nmbrs)", **common)
    else:
        error = Throttled(f"{where}: {detail} (too many calls)", **common)
    error.retry_after = retry_after
    return error


def _detail(status: int, body: Any, code: int | None, scrub: Callable[[str], str]) -> str:
    """'HTTP 403 40303 Unauthorized_AccessData: ...', scrubbed and short; a page is only its status."""
    if not isinstance(body, Mapping):
        return f"HTTP {status} (not JSON)"
    title = body.get("title") or body.get("message") or ""
    text = body.get("detail") or ""
    parts = [f"HTTP {status}", str(code) if code is not None else "", str(title), str(text)]
    return scrub(" ".join(p for p in parts if p).strip())[:300]
