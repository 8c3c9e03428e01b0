"""The list pages' query parameters, checked: a bad one is a `BadFilter` naming the parameter and what it takes
(a 400 page or JSON answer), never a silently empty list."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PER_PAGE = 50
MAX_PAGE = 100_000
CUSTOMER_MAX = 100

CREDENTIAL_STATES = ("new", "active", "invalid", "revoked", "rejected", "rights_missing", "no_subscription",
                     "unreachable", "disabled", "retired", "removed")
KINDS = {"soap": "soap_token", "rest": "rest_connection", "soap_token": "soap_token",
         "rest_connection": "rest_connection"}
LINK_STATES = ("pending", "active", "suspended", "cancelled")


class BadFilter(ValueError):
    """A query parameter the page cannot use; `field` names it, `message` says what it takes."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class CredentialFilter:
    """The credentials list's filter and page."""

    state: str | None
    kind: str | None
    customer: str | None
    page: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * PER_PAGE

    def query(self, page: int) -> dict[str, str]:
        """The query string of another page of the same filter."""
        return _query({"state": self.state, "kind": self.kind, "customer": self.customer, "page": str(page)})


@dataclass(frozen=True, slots=True)
class LinkFilter:
    """The links list's filter and page."""

    state: str | None
    customer: str | None
    page: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * PER_PAGE

    def query(self, page: int) -> dict[str, str]:
        return _query({"state": self.state, "customer": self.customer, "page": str(page)})


def _query(values: Mapping[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in values.items() if v}


def _known(params: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    for name in params:
        if name not in allowed:
            raise BadFilter(name, f"not a filter of this page; use {', '.join(allowed)}")


def _choice(params: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = params.get(name, "").strip()
    if not value:
        return None
    if value not in allowed:
        raise BadFilter(name, f"{value[:40]!r} is not one of {', '.join(allowed)}")
    return value


def _page(params: Mapping[str, str]) -> int:
    value = params.get("page", "").strip() or "1"
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise BadFilter("page", f"{value[:40]!r} is not a page number (1 to {MAX_PAGE})")
    return int(value)


def _customer(params: Mapping[str, str]) -> str | None:
    value = " ".join(params.get("customer", "").split())
    if not value:
        return None
    if len(value) > CUSTOMER_MAX or not value.isprintable():
        raise BadFilter("customer", f"give a customer reference or part of a name, printable, at most "
                                    f"{CUSTOMER_MAX} characters")
    return value


def credentials(params: Mapping[str, str]) -> CredentialFilter:
    _known(params, ("state", "kind", "customer", "page"))
    kind = params.get("kind", "").strip()
    if kind and kind not in KINDS:
        raise BadFilter("kind", f"{kind[:40]!r} is not one of soap, rest")
    return CredentialFilter(_choice(params, "state", CREDENTIAL_STATES), KINDS.get(kind), _customer(params),
                            _page(params))


def links(params: Mapping[str, str]) -> LinkFilter:
    _known(params, ("state", "customer", "page"))
    return LinkFilter(_choice(params, "state", LINK_STATES), _customer(params), _page(params))
