"""What every REST and identity call goes through before its handler: the call log, injected latency and
failures (by service, operation, path and login), like the API gateway in front of Nmbrs."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from nmbrs_sim.http_faults import drop_connection, proxy_answer
from nmbrs_sim.latency import arrive, due, hold_until
from nmbrs_sim.rest_errors import ApiError
from nmbrs_sim.simulator import Simulator

Answer = Callable[[], Awaitable[web.StreamResponse]]


async def gated(request: web.Request, sim: Simulator, service: str, operation: str, username: str,
                answer: Answer) -> web.StreamResponse:
    """Count the call, apply the fault plan, else answer; 4xx/5xx answers count as faults in the call log. The
    answer is made when the call arrives and leaves once its latency has passed since then (`latency`)."""
    arrived = await arrive()
    key = sim.calls.start(service, operation, username)
    plan = sim.faults.plan(service, operation, username, path=request.path)
    leaves = due(sim, plan, arrived)
    failed = True
    try:
        if plan.failure is not None:
            await hold_until(leaves)
            return await _failure(request, plan.failure, plan.params)
        try:
            response = await answer()
        except Exception:  # an answer raised as an HTTP exception leaves on time too
            await hold_until(leaves)
            raise
        await hold_until(leaves)
        failed = response.status >= 400
        return response
    finally:
        sim.calls.finish(key, time.perf_counter() - arrived, fault=failed)


async def _failure(request: web.Request, kind: str, params: dict[str, float]) -> web.StreamResponse:
    if kind == "too_many_calls":  # Retry-After only when the rule asks for one: Nmbrs does not promise it
        headers = {"Retry-After": str(int(params["retry_after"]))} if "retry_after" in params else None
        return ApiError(42908).response(headers)
    if kind == "quota_exceeded":
        return ApiError(42909).response()
    page = proxy_answer(kind, int(params.get("retry_after", 1)))
    if page is not None:
        return page
    await drop_connection(request, hang=kind == "hang")  # reset, hang
