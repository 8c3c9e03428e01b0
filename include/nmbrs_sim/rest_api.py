"""The REST API under /api/: who may call (subscription key, bearer token, scope, subscription), paging, and
the records of the world as the consenting login reaches them (the same reach rules as SOAP)."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from nmbrs_sim import access_tokens
from nmbrs_sim.gateway import gated
from nmbrs_sim.rest_catalog import REST_SERVICE
from nmbrs_sim.rest_clients import scope_satisfied
from nmbrs_sim.rest_errors import ApiError, subscription_key_error
from nmbrs_sim.simulator import Simulator
from nmbrs_sim.world import Company, Debtor, Login, World

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
COMPANY_SCOPE = "company.info.read"
USER_SCOPE = "user.info.read"
# SOAP LoonaangifteTijdvak -> REST periodType (Nmbrs knows month, 1-week and 4-weeks; the rest run per month)
PERIOD_TYPES = {"Month": "month", "Week4": "4-weeks"}


@dataclass(frozen=True, slots=True)
class Caller:
    """A verified call: the consenting login and what it granted."""

    login: Login
    scopes: list[str]


Records = Callable[[World, Caller, web.Request, float], list[dict[str, Any]]]  # float: simulated now


def add_rest_routes(app: web.Application, sim_key: web.AppKey[Simulator]) -> None:
    def route(operation: str, scope: str, records: Records, *, cacheable: bool = True
              ) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.StreamResponse:
            sim = request.app[sim_key]
            claims = _claims(sim, request)
            return await gated(request, sim, REST_SERVICE, operation, claims.username if claims else "",
                               lambda: _answer(sim, request, claims, scope, records, cacheable))
        return handler

    app.router.add_get("/api/debtors", route("getDebtors", COMPANY_SCOPE, _debtors))
    app.router.add_get("/api/companies", route("getCompanies", COMPANY_SCOPE, _companies))
    app.router.add_get("/api/debtors/{debtorId}/companies",
                       route("getCompaniesByDebtor", COMPANY_SCOPE, _companies_of_debtor))
    app.router.add_get("/api/user/info", route("getUserInfo", USER_SCOPE, _user_info))
    app.router.add_get("/api/companies/{companyId}/period", route("getCurrentPeriod", COMPANY_SCOPE, _period,
                                                                               cacheable=False))
    app.router.add_route("*", "/api/{tail:.*}", _not_found)


async def _not_found(request: web.Request) -> web.Response:
    return ApiError(40401, f"{request.method} {request.path} is not an endpoint of this API.").response()


def _claims(sim: Simulator, request: web.Request) -> access_tokens.AccessClaims | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() != "bearer ":
        return None
    try:
        return access_tokens.verify(header[7:].strip(), sim.clock.now())
    except access_tokens.InvalidAccessToken:
        return None


async def _answer(sim: Simulator, request: web.Request, claims: access_tokens.AccessClaims | None, scope: str,
                  records: Records, cacheable: bool) -> web.Response:
    """Check who calls, then answer; answers that depend only on the world are cached per world version (the
    period also depends on the clock)."""
    key = request.headers.get("X-Subscription-Key")
    if not key or not any(key in c.subscription_keys for c in sim.rest.clients.values()):
        return subscription_key_error(sim.rest.settings.subscription_key_status, missing=not key)
    try:
        caller = _caller(sim, request, claims)
        if not scope_satisfied(caller.scopes, scope):
            raise ApiError(40303, f"The consent does not include the scope {scope}.")
        page_number, page_size = _paging(request)
        with sim.world.lock:
            if not sim.world.environments[caller.login.environment].subscription_valid:
                raise ApiError(40304)
            cache_key = (caller.login.username, request.host, request.path_qs)
            text = sim.rest_cache.get(sim.world.version, cache_key) if cacheable else None
            if text is None:
                rows = records(sim.world, caller, request, sim.clock.now())
                text = json.dumps(envelope(request, rows, page_number, page_size,
                                           blank=sim.rest.settings.blank_page_links))
                if cacheable:
                    sim.rest_cache.put(cache_key, text)
    except ApiError as exc:
        return exc.response()
    return web.Response(text=text, content_type="application/json")


def _caller(sim: Simulator, request: web.Request, claims: access_tokens.AccessClaims | None) -> Caller:
    """40101 without a bearer token; 40102 for a bad or expired token, a withdrawn consent, a deleted login."""
    if claims is None:
        header = request.headers.get("Authorization", "")
        raise ApiError(40101 if header[:7].lower() != "bearer " or not header[7:].strip() else 40102)
    consent = sim.consents.consent(claims.consent_id)
    login = sim.world.logins.get(claims.username.lower())
    if consent is None or not consent.active or login is None or login.deleted:
        raise ApiError(40102)
    return Caller(login, claims.scopes)


def _paging(request: web.Request) -> tuple[int, int]:
    values = []
    for name, default, maximum in (("pageNumber", 1, None), ("pageSize", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)):
        raw = request.query.get(name)
        try:
            value = default if raw is None or raw == "" else int(raw)
        except ValueError:
            value = 0
        if value < 1 or (maximum is not None and value > maximum):
            bound = f"from 1 to {maximum}" if maximum else "1 or more"
            raise ApiError(40033, invalid_params=[{"name": name, "reason": f"The parameter must be {bound}."}])
        values.append(value)
    return values[0], values[1]


def envelope(request: web.Request, rows: list[dict[str, Any]], page_number: int, page_size: int, *,
             blank: bool = False) -> dict[str, Any]:
    """The {pagination, data} answer; page links are absolute URLs, next/previous null (or "") at the ends."""
    total = len(rows)
    pages = math.ceil(total / page_size)

    def link(number: int) -> str:
        return f"{request.scheme}://{request.host}{request.path}?pageNumber={number}&pageSize={page_size}"

    start = (page_number - 1) * page_size
    end = "" if blank else None
    return {"pagination": {"pageNumber": page_number, "pageSize": page_size, "firstPage": link(1),
                           "lastPage": link(max(pages, 1)), "totalPages": pages, "totalRecords": total,
                           "nextPage": link(page_number + 1) if page_number < pages else end,
                           "previousPage": link(page_number - 1) if 1 < page_number <= pages + 1 else end},
            "data": rows[start:start + page_size]}


# ---------------------------------------------------------------------- records
def _debtor(debtor: Debtor) -> dict[str, Any]:
    return {"debtorId": debtor.uuid, "number": debtor.number or "", "name": debtor.name or ""}


def _company(world: World, company: Company) -> dict[str, Any]:
    return {"companyId": company.uuid, "number": str(company.number), "name": company.name or "",
            "debtorId": world.debtors[company.debtor_id].uuid}


def _debtors(world: World, caller: Caller, request: web.Request, now: float) -> list[dict[str, Any]]:
    return [_debtor(d) for d in world.visible_debtors(caller.login)]


def _companies(world: World, caller: Caller, request: web.Request, now: float) -> list[dict[str, Any]]:
    if len(world.visible_debtors(caller.login)) > 1:
        raise ApiError(40306)
    return [_company(world, c) for c in world.visible_companies(caller.login)]


def _path_uuid(request: web.Request, name: str) -> str:
    try:
        return str(uuid.UUID(request.match_info[name]))
    except ValueError:
        raise ApiError(40033, invalid_params=[{"name": name, "reason": "The parameter must be a UUID."}]) from None


def _companies_of_debtor(world: World, caller: Caller, request: web.Request, now: float) -> list[dict[str, Any]]:
    debtor = world.debtor_by_uuid(_path_uuid(request, "debtorId"))
    if debtor is None:
        raise ApiError(40401, "The debtor was not found.")
    if debtor not in world.visible_debtors(caller.login):
        raise ApiError(40303)
    return [_company(world, c) for c in world.visible_companies(caller.login) if c.debtor_id == debtor.id]


def _user_info(world: World, caller: Caller, request: web.Request, now: float) -> list[dict[str, Any]]:
    login = caller.login
    debtors = world.visible_debtors(login)
    debtor = world.debtors.get(login.debtor) if login.debtor is not None else (debtors[0] if debtors else None)
    row: dict[str, Any] = {"name": login.name or login.username.split("@", 1)[0], "email": login.username,
                           "language": "NL", "userId": login.uuid}
    if debtor is not None:
        row["debtorId"] = debtor.uuid
    return [row]


def _period(world: World, caller: Caller, request: web.Request, now: float) -> list[dict[str, Any]]:
    company = world.company_by_uuid(_path_uuid(request, "companyId"))
    if company is None:
        raise ApiError(40404)
    if company not in world.visible_companies(caller.login):
        raise ApiError(40303)
    return [current_period(company.period, datetime.fromtimestamp(now, UTC))]


def current_period(soap_period: str, now: datetime) -> dict[str, Any]:
    """The running period on the simulated clock: the month, or the 4-week period of the year (1..13)."""
    period_type = PERIOD_TYPES.get(soap_period, "month")
    if period_type == "4-weeks":
        number = min(13, (now.timetuple().tm_yday - 1) // 28 + 1)
        display = f"{now.year}-{number}-4W"
    else:
        number = now.month
        display = f"{now.year}-{number}-M"
    return {"period": {"year": now.year, "period": number}, "periodType": period_type, "displayPeriod": display}
