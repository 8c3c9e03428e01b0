"""`run_probe`: what a REST connection reaches: `/api/debtors` (all pages), then `/api/debtors/{id}/companies`
(all pages) for each debtor; this works for single- and multi-debtor consents alike (`/api/companies` refuses a
multi-debtor consent with 40306). With `with_user`, `/api/user/info` (scope `user.info.read`) names the login.

Calls: P(debtors) + sum of P(companies of each debtor) (+1 with the user), where P(n) = max(1, ceil(n / 100));
a refresh of the access token on a 401 adds one repeat; every retry of a transient fault one more.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from l1nda_sync.nmbrs.errors import MalformedAnswer, NmbrsError
from l1nda_sync.nmbrs.rest.answers import REST, Endpoint, read_page
from l1nda_sync.nmbrs.rest.records import RestCompany, RestCredentials, RestDebtor, RestReach, RestUser

if TYPE_CHECKING:
    from l1nda_sync.nmbrs.rest.client import RestClient, RestConversation

COMPANY_SCOPE = "company.info.read"  # guards /api/debtors and the company lists (not debtor.info.read)
USER_SCOPE = "user.info.read"
DEBTORS = Endpoint("getDebtors", COMPANY_SCOPE)
COMPANIES_OF_DEBTOR = Endpoint("getCompaniesByDebtor", COMPANY_SCOPE, refuses_data=True)
USER_INFO = Endpoint("getUserInfo", USER_SCOPE)


def run_probe(client: RestClient, connection: RestCredentials, *, with_user: bool = False) -> RestReach:
    """Probe one connection. A failure raises the NmbrsError with `.calls` set to the requests this probe sent."""
    talk = client.conversation(connection)
    try:
        debtors = tuple(sorted((_debtor(row) for row in talk.pages(DEBTORS, "/api/debtors")),
                               key=lambda d: (d.number, d.uuid)))
        companies: dict[str, RestCompany] = {}
        for debtor in debtors:
            for row in talk.pages(COMPANIES_OF_DEBTOR, f"/api/debtors/{debtor.uuid}/companies"):
                company = _company(row, debtor.uuid)
                companies[company.uuid] = company
        user = _user(talk) if with_user else None
    except NmbrsError as error:
        error.calls = talk.calls
        raise
    ordered = tuple(sorted(companies.values(), key=lambda c: (c.debtor_uuid, c.number, c.uuid)))
    return RestReach(debtors, ordered, user, talk.calls)


def _user(talk: RestConversation) -> RestUser | None:
    rows, _ = read_page(talk.get(USER_INFO, "/api/user/info", {}), USER_INFO)
    if not rows:
        return None
    row = rows[0]
    return RestUser(_uuid(row, "userId", USER_INFO), _opt(row.get("name")), _opt(row.get("email")),
                    _opt(row.get("language")), _opt_uuid(row.get("debtorId")))


def _debtor(row: Mapping[str, Any]) -> RestDebtor:
    return RestDebtor(_uuid(row, "debtorId", DEBTORS), _number(row, DEBTORS), _opt(row.get("name")))


def _company(row: Mapping[str, Any], debtor_uuid: str) -> RestCompany:
    given = row.get("debtorId")
    owner = _uuid(row, "debtorId", COMPANIES_OF_DEBTOR) if given is not None else debtor_uuid
    return RestCompany(_uuid(row, "companyId", COMPANIES_OF_DEBTOR), _number(row, COMPANIES_OF_DEBTOR),
                       _opt(row.get("name")), owner)


def _uuid(row: Mapping[str, Any], key: str, endpoint: Endpoint) -> str:
    """A UUID in canonical form; anything else is malformed (and never lands in a request path)."""
    value = row.get(key)
    try:
        return str(uuid.UUID(str(value))) if isinstance(value, str) else _malformed(key, endpoint, row)
    except ValueError:
        return _malformed(key, endpoint, row)


def _number(row: Mapping[str, Any], endpoint: Endpoint) -> str:
    value = row.get("number")
    if value is None or isinstance(value, bool) or not isinstance(value, str | int):
        return _malformed("number", endpoint, row)
    return str(value)


def _malformed(key: str, endpoint: Endpoint, row: Mapping[str, Any]) -> str:
    raise MalformedAnswer(f"{REST}.{endpoint.operation}: a row without a valid {key} (keys: {sorted(map(str, row))})",
                          service=REST, operation=endpoint.operation)


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_uuid(value: Any) -> str | None:
    try:
        return str(uuid.UUID(str(value))) if value else None
    except ValueError:
        return None
