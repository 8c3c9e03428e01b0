"""The admin API's REST part (/_sim/rest/..., /_sim/clock): registered clients, consent without a browser,
the customer's App Manager (consents, withdrawal), refresh-token expiry and the simulated clock."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from nmbrs_sim.admin_api import ADMIN_PREFIX, Handler, _BadInput, _body, _error, _guarded
from nmbrs_sim.authorization import AuthorizePageError, LoginRefused, RedirectError, check_request, consent_as

if TYPE_CHECKING:
    from nmbrs_sim.simulator import Simulator

AUTHORIZE_FIELDS = ("username", "client_id", "redirect_uri", "scope", "state", "code_challenge",
                    "code_challenge_method")


class _RestAdminHandlers:
    """The /_sim/rest/ and /_sim/clock endpoints, bound to the app key of the simulator they change."""

    def __init__(self, sim_key: web.AppKey[Simulator]) -> None:
        self.sim_key = sim_key

    def sim(self, request: web.Request) -> Simulator:
        return request.app[self.sim_key]

    async def clients(self, request: web.Request) -> web.Response:
        return web.json_response([c.to_dict() for c in self.sim(request).rest.clients.values()])

    async def authorize(self, request: web.Request) -> web.Response:
        data = await _body(request)
        unknown = set(data) - set(AUTHORIZE_FIELDS)
        if unknown or not all(isinstance(data.get(k, ""), str) for k in AUTHORIZE_FIELDS):
            raise _BadInput(f"give strings for {', '.join(AUTHORIZE_FIELDS)}; unknown: {sorted(unknown)}")
        s = self.sim(request)
        params = {"response_type": "code", **{k: v for k, v in data.items() if k != "username"}}
        try:
            checked = check_request(s.rest, params)
            location = consent_as(s.world, s.consents, checked, data.get("username", ""), None, s.clock.now())
        except AuthorizePageError as exc:
            return _error(exc.status, f"{exc.title}: {exc.message}")
        except LoginRefused as exc:
            return _error(exc.status, exc.message)
        except RedirectError as exc:
            return web.json_response({"location": exc.location})
        return web.json_response({"location": location})

    async def consents(self, request: web.Request) -> web.Response:
        s = self.sim(request)
        return web.json_response(s.consents.rows(s.clock.now()))

    async def withdraw(self, request: web.Request) -> web.Response:
        s = self.sim(request)
        consent = s.consents.withdraw(request.match_info["consent_id"], s.clock.now())
        if consent is None:
            return _error(404, f"no consent {request.match_info['consent_id']!r}")
        return web.json_response({"ok": True, "id": consent.id, "withdrawn_at": consent.withdrawn_at})

    async def expire(self, request: web.Request) -> web.Response:
        data = await _body(request)
        consent_id = data.get("consent_id")
        s = self.sim(request)
        if consent_id is not None and s.consents.consent(str(consent_id)) is None:
            return _error(404, f"no consent {consent_id!r}")
        return web.json_response({"expired": s.consents.expire_refresh_tokens(consent_id)})

    async def get_clock(self, request: web.Request) -> web.Response:
        return web.json_response(self.sim(request).clock.to_dict())

    async def put_clock(self, request: web.Request) -> web.Response:
        _set_clock(self.sim(request), await _body(request))
        return web.json_response(self.sim(request).clock.to_dict())


def add_rest_admin_routes(app: web.Application, sim_key: web.AppKey[Simulator]) -> None:
    h = _RestAdminHandlers(sim_key)
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "rest/clients", h.clients),
        ("POST", "rest/authorize", h.authorize),
        ("GET", "rest/consents", h.consents),
        ("POST", "rest/consents/{consent_id}/withdraw", h.withdraw),
        ("POST", "rest/refresh-tokens/expire", h.expire),
        ("GET", "clock", h.get_clock),
        ("PUT", "clock", h.put_clock),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, ADMIN_PREFIX + path, _guarded(handler))


def _set_clock(s: Simulator, data: dict[str, Any]) -> None:
    """{"advance_seconds": n} moves the clock, {"now": ISO 8601 or epoch seconds} sets it, {"reset": true} puts
    it back to real time."""
    given = [k for k in ("advance_seconds", "now", "reset") if k in data]
    if len(given) != 1 or set(data) - set(given):
        raise _BadInput("give exactly one of advance_seconds (number), now (ISO 8601 or epoch seconds), reset (true)")
    value = data[given[0]]
    if given[0] == "reset":
        if value is not True:
            raise _BadInput("reset must be true")
        s.clock.reset()
    elif given[0] == "advance_seconds":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _BadInput(f"advance_seconds must be a number, got {value!r}")
        s.clock.advance(float(value))
    else:
        s.clock.set_now(_epoch(value))


def _epoch(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if moment.tzinfo is not None:
                return moment.timestamp()
    raise _BadInput(f"now must be epoch seconds or an ISO 8601 time with a zone (2027-03-01T00:00:00Z), got {value!r}")
