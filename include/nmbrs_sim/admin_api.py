"""The admin JSON API under /_sim/ (a prefix Nmbrs never uses): change the world while it runs, read the
call log, inject faults. Errors answer {"error": "..."} with 400 (bad input), 404 (unknown thing) or 409."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from nmbrs_sim.scenario import ScenarioError, login_to_dict
from nmbrs_sim.world import WorldError

if TYPE_CHECKING:
    from nmbrs_sim.simulator import Simulator

ADMIN_PREFIX = "/_sim/"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _BadInput(Exception):
    pass


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _guarded(handler: Handler) -> Handler:
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except WorldError as exc:
            return _error(exc.status, str(exc))
        except (ScenarioError, _BadInput) as exc:
            return _error(400, str(exc))
    return wrapper


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = json.loads(await request.read() or b"{}")
    except ValueError as exc:
        raise _BadInput(f"the request body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _BadInput("the request body must be a JSON object")
    return data


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise _BadInput(f"{name} must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _BadInput(f"{name} must be an integer, got {value!r}") from None


def _bool(data: dict[str, Any], name: str) -> bool:
    value = data.get(name)
    if not isinstance(value, bool):
        raise _BadInput(f"{name} must be true or false, got {value!r}")
    return value


def _number(data: dict[str, Any], name: str, default: float | None = None) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _BadInput(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def _strings(data: dict[str, Any], name: str) -> list[str]:
    value = data.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _BadInput(f"{name} must be a list of strings")
    return value


class _AdminHandlers:
    """The /_sim/ endpoints, bound to the app key of the simulator they change."""

    def __init__(self, sim_key: web.AppKey[Simulator]) -> None:
        self.sim_key = sim_key

    def sim(self, request: web.Request) -> Simulator:
        return request.app[self.sim_key]

    @staticmethod
    def ok(**extra: Any) -> web.Response:
        return web.json_response({"ok": True, **extra})

    async def health(self, request: web.Request) -> web.Response:
        world = self.sim(request).world
        return web.json_response({"status": "ok", "environments": len(world.environments),
                                  "logins": len(world.logins), "companies": len(world.companies)})

    async def get_world(self, request: web.Request) -> web.Response:
        return web.json_response(self.sim(request).snapshot())

    async def put_world(self, request: web.Request) -> web.Response:
        self.sim(request).load_world(await _body(request))
        return self.ok()

    async def reset_world(self, request: web.Request) -> web.Response:
        self.sim(request).reset_world()
        return self.ok()

    async def list_logins(self, request: web.Request) -> web.Response:
        world = self.sim(request).world
        with world.lock:
            rows = [login_to_dict(login, include_environment=True) for login in world.logins.values()]
        return web.json_response(rows)

    async def get_login(self, request: web.Request) -> web.Response:
        return web.json_response(login_to_dict(self.sim(request).world.login(request.match_info["username"]),
                                               include_environment=True))

    async def add_login(self, request: web.Request) -> web.Response:
        data = await _body(request)
        allowed = {"environment", "username", "level", "token", "tag_filter", "company_filter", "debtor",
                   "template", "deleted", "password", "name"}
        unknown = set(data) - allowed
        if unknown or not data.get("environment") or not data.get("username") or not data.get("level"):
            raise _BadInput(f"give environment, username and level (and optionally {sorted(allowed)}); "
                            f"unknown: {sorted(unknown)}")
        environment = data.pop("environment")
        login = self.sim(request).world.add_login(environment, **data)
        return web.json_response(login_to_dict(login, include_environment=True), status=201)

    async def patch_login(self, request: web.Request) -> web.Response:
        data = await _body(request)
        unknown = set(data) - {"tag_filter", "company_filter", "template", "debtor", "password"}
        if unknown:
            raise _BadInput(f"unknown field(s) {sorted(unknown)}: a login has tag_filter, company_filter, template, "
                            "debtor, password")
        if "password" in data:
            self.sim(request).world.set_password(request.match_info["username"], data.pop("password"))
        company_filter = data.get("company_filter")
        if company_filter is not None:
            if not isinstance(company_filter, list):
                raise _BadInput("company_filter must be a list of company ids")
            company_filter = [_int(c, "company_filter[]") for c in company_filter]
        debtor = _int(data["debtor"], "debtor") if data.get("debtor") is not None else None
        login = self.sim(request).world.update_login(request.match_info["username"], tag_filter=data.get("tag_filter"),
                                                company_filter=company_filter, template=data.get("template"),
                                                debtor=debtor)
        return web.json_response(login_to_dict(login, include_environment=True))

    async def reset_token(self, request: web.Request) -> web.Response:
        return web.json_response({"token": self.sim(request).world.reset_token(request.match_info["username"])})

    async def delete_login(self, request: web.Request) -> web.Response:
        self.sim(request).world.set_deleted(request.match_info["username"], True)
        return self.ok()

    async def restore_login(self, request: web.Request) -> web.Response:
        self.sim(request).world.set_deleted(request.match_info["username"], False)
        return self.ok()

    async def set_operation(self, request: web.Request) -> web.Response:
        data = await _body(request)
        m = request.match_info
        self.sim(request).world.set_operation_allowed(m["username"], m["service"], m["operation"],
                                                      _bool(data, "allowed"))
        return self.ok()

    async def add_debtor(self, request: web.Request) -> web.Response:
        data = await _body(request)
        if "id" not in data:
            raise _BadInput("id is required")
        debtor = self.sim(request).world.add_debtor(
            request.match_info["environment"], id=_int(data["id"], "id"),
            number=None if data.get("number") is None else str(data["number"]),
            name=data.get("name"), tags=_strings(data, "tags"))
        return web.json_response({"id": debtor.id, "tags": debtor.tags}, status=201)

    async def set_subscription(self, request: web.Request) -> web.Response:
        data = await _body(request)
        self.sim(request).world.set_subscription(request.match_info["environment"], _bool(data, "valid"))
        return self.ok()

    async def debtor_tags(self, request: web.Request) -> web.Response:
        data = await _body(request)
        tags = self.sim(request).world.set_debtor_tags(_int(request.match_info["debtor_id"], "debtor_id"),
                                                  add=_strings(data, "add"), remove=_strings(data, "remove"))
        return web.json_response({"tags": tags})

    async def add_company(self, request: web.Request) -> web.Response:
        data = await _body(request)
        for key in ("id", "number"):
            if key not in data:
                raise _BadInput(f"{key} is required")
        company = self.sim(request).world.add_company(
            _int(request.match_info["debtor_id"], "debtor_id"), id=_int(data["id"], "id"),
            number=_int(data["number"], "number"), name=data.get("name"), period=data.get("period") or "Month",
            kvk=None if data.get("kvk") is None else str(data["kvk"]))
        return web.json_response({"id": company.id, "debtor_id": company.debtor_id}, status=201)

    async def move_company(self, request: web.Request) -> web.Response:
        data = await _body(request)
        self.sim(request).world.move_company(_int(request.match_info["company_id"], "company_id"),
                                        _int(data.get("debtor_id"), "debtor_id"))
        return self.ok()

    async def end_company(self, request: web.Request) -> web.Response:
        self.sim(request).world.end_company(_int(request.match_info["company_id"], "company_id"))
        return self.ok()

    async def reopen_company(self, request: web.Request) -> web.Response:
        self.sim(request).world.end_company(_int(request.match_info["company_id"], "company_id"), ended=False)
        return self.ok()

    async def get_calls(self, request: web.Request) -> web.Response:
        calls = self.sim(request).calls
        query = request.query
        if any(k in query for k in ("service", "operation", "username")):
            return web.json_response({"count": calls.count(service=query.get("service"),
                                                           operation=query.get("operation"),
                                                           username=query.get("username"))})
        return web.json_response(calls.rows())

    async def clear_calls(self, request: web.Request) -> web.Response:
        self.sim(request).calls.clear()
        return self.ok()

    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response([rule.to_dict() for rule in self.sim(request).faults.rules()])

    async def add_fault(self, request: web.Request) -> web.Response:
        data = await _body(request)
        username = data.get("username")
        if username is not None and str(username).lower() not in self.sim(request).world.logins:
            raise _BadInput(f"username {username!r} is no login of this world; the fault would never fire")
        try:
            rule_id = self.sim(request).faults.add_dict(data)
        except ValueError as exc:
            raise _BadInput(str(exc)) from None
        return web.json_response({"id": rule_id}, status=201)

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.sim(request).faults.clear()
        return self.ok()

    async def delete_fault(self, request: web.Request) -> web.Response:
        if not self.sim(request).faults.remove(request.match_info["fault_id"]):
            return _error(404, f"no fault {request.match_info['fault_id']!r}")
        return self.ok()

    async def get_latency(self, request: web.Request) -> web.Response:
        s = self.sim(request)
        return web.json_response({"ms": s.latency_ms, "jitter_ms": s.latency_jitter_ms})

    async def put_latency(self, request: web.Request) -> web.Response:
        data = await _body(request)
        self.sim(request).set_latency(_number(data, "ms"), _number(data, "jitter_ms", 0.0))
        return self.ok()

    async def get_settings(self, request: web.Request) -> web.Response:
        return web.json_response({"accept_missing_domain": self.sim(request).world.accept_missing_domain})

    async def put_settings(self, request: web.Request) -> web.Response:
        data = await _body(request)
        unknown = set(data) - {"accept_missing_domain"}
        if unknown:
            raise _BadInput(f"unknown setting(s) {sorted(unknown)}; known: accept_missing_domain")
        if "accept_missing_domain" in data:
            self.sim(request).world.set_accept_missing_domain(_bool(data, "accept_missing_domain"))
        return self.ok()


def add_admin_routes(app: web.Application, sim_key: web.AppKey[Simulator]) -> None:
    h = _AdminHandlers(sim_key)
    p = ADMIN_PREFIX
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "health", h.health),
        ("GET", "world", h.get_world),
        ("PUT", "world", h.put_world),
        ("POST", "world/reset", h.reset_world),
        ("GET", "logins", h.list_logins),
        ("POST", "logins", h.add_login),
        ("GET", "logins/{username}", h.get_login),
        ("PATCH", "logins/{username}", h.patch_login),
        ("POST", "logins/{username}/reset-token", h.reset_token),
        ("POST", "logins/{username}/delete", h.delete_login),
        ("POST", "logins/{username}/restore", h.restore_login),
        ("PUT", "logins/{username}/operations/{service}/{operation}", h.set_operation),
        ("POST", "environments/{environment}/debtors", h.add_debtor),
        ("PUT", "environments/{environment}/subscription", h.set_subscription),
        ("POST", "debtors/{debtor_id}/tags", h.debtor_tags),
        ("POST", "debtors/{debtor_id}/companies", h.add_company),
        ("POST", "companies/{company_id}/move", h.move_company),
        ("POST", "companies/{company_id}/end", h.end_company),
        ("POST", "companies/{company_id}/reopen", h.reopen_company),
        ("GET", "calls", h.get_calls),
        ("DELETE", "calls", h.clear_calls),
        ("GET", "faults", h.get_faults),
        ("POST", "faults", h.add_fault),
        ("DELETE", "faults", h.clear_faults),
        ("DELETE", "faults/{fault_id}", h.delete_fault),
        ("GET", "latency", h.get_latency),
        ("PUT", "latency", h.put_latency),
        ("GET", "settings", h.get_settings),
        ("PUT", "settings", h.put_settings),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, p + path, _guarded(handler))
