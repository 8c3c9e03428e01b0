"""What the REST client returns: small frozen records with Nmbrs' UUIDs and numbers as given (strings)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from l1nda_sync.masking import Secret


@dataclass(frozen=True, slots=True)
class RestDebtor:
    """A debtor a consent reaches (`/api/debtors`)."""

    uuid: str
    number: str
    name: str | None


@dataclass(frozen=True, slots=True)
class RestCompany:
    """A company a consent reaches (`/api/debtors/{debtorId}/companies`), with its debtor's UUID."""

    uuid: str
    number: str
    name: str | None
    debtor_uuid: str


@dataclass(frozen=True, slots=True)
class RestUser:
    """The consenting login (`/api/user/info`, scope `user.info.read`)."""

    user_id: str
    name: str | None
    email: str | None
    language: str | None
    debtor_uuid: str | None


@dataclass(frozen=True, slots=True)
class RestReach:
    """What a REST connection reaches, and the API requests it cost (every attempt counts)."""

    debtors: tuple[RestDebtor, ...]
    companies: tuple[RestCompany, ...]
    user: RestUser | None
    calls: int

    @property
    def debtor_uuids(self) -> frozenset[str]:
        return frozenset(d.uuid for d in self.debtors)

    @property
    def company_uuids(self) -> frozenset[str]:
        return frozenset(c.uuid for c in self.companies)

    def to_dict(self) -> dict[str, Any]:
        user = self.user
        return {
            "debtors": [{"uuid": d.uuid, "number": d.number, "name": d.name} for d in self.debtors],
            "companies": [{"uuid": c.uuid, "number": c.number, "name": c.name, "debtor_uuid": c.debtor_uuid}
                          for c in self.companies],
            "user": None if user is None else {"user_id": user.user_id, "name": user.name, "email": user.email,
                                               "language": user.language, "debtor_uuid": user.debtor_uuid},
            "calls": self.calls,
        }


@dataclass(frozen=True, slots=True)
class RestCredentials:
    """One REST connection as the client sees it: `access(force_refresh)` gives its access token
    (`grants.access_token` bound to the store), `scopes` the granted scopes when known (they tell a missing
    scope from a refused debtor)."""

    connection_id: int
    access: Callable[[bool], Secret] = field(repr=False)
    scopes: tuple[str, ...] | None = None
