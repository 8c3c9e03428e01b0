"""The aiohttp application: SOAP endpoints at /soap/v3/<Service>.asmx (WSDL on GET ?WSDL), admin API at /_sim/.

Injected latency is an `asyncio.sleep`, so a waiting call holds no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import socket
import struct
import time

from aiohttp import web

from nmbrs_sim.admin_api import ADMIN_PREFIX, add_admin_routes
from nmbrs_sim.catalog import PATH_PREFIX, SERVICES, service_for_path
from nmbrs_sim.errors import ClientFault, NmbrsFault
from nmbrs_sim.operations import execute
from nmbrs_sim.simulator import Simulator
from nmbrs_sim.soap import (
    CONTENT_TYPES,
    SOAP11,
    SoapRequest,
    VersionMismatch,
    action_from_content_type,
    envelope,
    fault,
    parse_request,
    version_for,
)
from nmbrs_sim.wsdl import render_wsdl

SIM_KEY = web.AppKey("simulator", Simulator)
STOPPING_KEY = web.AppKey("stopping", asyncio.Event)
MALFORMED_BODY = b"<html><body><h1>Runtime Error</h1><p>This answer is not a SOAP envelope & not XML</b></html>"
_HTML = "text/html"
_ERROR_PAGES = {"http_500": (500, "500 - Internal server error."), "http_502": (502, "502 - Bad Gateway"),
                "http_503": (503, "503 - Service Unavailable")}


def create_app(sim: Simulator) -> web.Application:
    app = web.Application(client_max_size=sim.max_body_bytes)
    app[SIM_KEY] = sim
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    add_admin_routes(app, SIM_KEY)
    app.router.add_route("*", "/{tail:.*}", handle_soap)
    return app


async def _on_startup(app: web.Application) -> None:
    app[STOPPING_KEY] = asyncio.Event()


async def _on_shutdown(app: web.Application) -> None:
    app[STOPPING_KEY].set()  # releases "hang" faults so the server stops at once


def _page(status: int, title: str, text: str = "") -> web.Response:
    body = f"<html><head><title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>" \
           f"<p>{html.escape(text)}</p></body></html>"
    return web.Response(status=status, text=body, content_type=_HTML)


def _location(request: web.Request, service: str) -> str:
    host = request.host
    if not host or any(ch in host for ch in "\"'<>\\/ "):
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        host = f"{sockname[0]}:{sockname[1]}" if sockname else "127.0.0.1"
    return f"{request.scheme}://{host}{PATH_PREFIX}{service}.asmx"


def _help_page(service: str, operation: str | None) -> web.Response:
    if operation is None:
        items = "".join(f'<li><a href="?op={op}">{op}</a></li>' for op in SERVICES[service])
        body = (f"<html><head><title>{service}</title></head><body><h1>{service}</h1>"
                f"<p>Nmbrs SOAP API v3 simulator. The service description is at "
                f'<a href="?WSDL">?WSDL</a>.</p><ul>{items}</ul></body></html>')
        return web.Response(text=body, content_type=_HTML)
    op = SERVICES[service].get(operation)
    if op is None:
        return _page(400, "Bad Request", f"{service} has no operation {operation!r}.")
    body = (f"<html><head><title>{service}.{op.name}</title></head><body><h1>{op.name}</h1>"
            f"<p>SOAPAction: {html.escape(op.soap_action)}</p><p>Header: {op.header}</p>"
            f"<p>Parameters: {', '.join(op.int_params) or 'none'}</p></body></html>")
    return web.Response(text=body, content_type=_HTML)


async def handle_soap(request: web.Request) -> web.StreamResponse:
    service = service_for_path(request.path)
    if service is None:
        if request.path.startswith(ADMIN_PREFIX):
            return web.json_response({"error": f"no admin endpoint {request.method} {request.path}"}, status=404)
        return _page(404, "The resource cannot be found.", f"{request.path} is not a service of this simulator; "
                     f"try {PATH_PREFIX}DebtorService.asmx or {PATH_PREFIX}CompanyService.asmx.")
    if request.method in ("GET", "HEAD"):
        query = {k.lower(): v for k, v in request.query.items()}
        if "wsdl" in query:
            return web.Response(body=render_wsdl(service, _location(request, service)),
                                content_type="text/xml", charset="utf-8")
        return _help_page(service, query.get("op"))
    if request.method != "POST":
        return _page(405, "Method Not Allowed", "Send SOAP requests with POST.")
    content_type = request.headers.get("Content-Type", "")
    version = version_for(content_type)
    if version is None:
        return _page(415, "Unsupported Media Type",
                     f"Content-Type {content_type!r} is not SOAP: use 'text/xml; charset=utf-8' (SOAP 1.1) "
                     "or 'application/soap+xml; charset=utf-8' (SOAP 1.2).")
    try:
        body = await request.read()  # aiohttp answers 413 beyond client_max_size
    except ConnectionResetError:
        raise asyncio.CancelledError from None  # the client left mid-request; aiohttp drops it quietly
    sim = request.app[SIM_KEY]
    action = request.headers.get("SOAPAction") if version == SOAP11 else action_from_content_type(content_type)
    try:
        soap_request = parse_request(service, version, action, body)
    except VersionMismatch as exc:
        return _soap(version, fault(version, exc.faultstring, version_mismatch=True), 500)
    except ClientFault as exc:
        return _soap(version, fault(version, exc.faultstring, client=True), 500)
    op = soap_request.operation
    username = soap_request.username or ""
    started = time.perf_counter()
    log_key = sim.calls.start(service, op.name, username)
    plan = sim.faults.plan(service, op.name, username)
    delay = plan.delay_s
    if sim.latency_ms or sim.latency_jitter_ms:
        delay += sim.faults.jitter(sim.latency_ms, sim.latency_jitter_ms)
    if delay > 0:
        await asyncio.sleep(delay)
    failed = True
    try:
        if plan.failure is not None:
            return await _failure(request, plan.failure, version, sim, soap_request)
        try:
            payload, status = envelope(version, execute(sim.world, soap_request, sim.cache)), 200
            failed = False
        except NmbrsFault as exc:
            payload, status = fault(version, exc.faultstring), 500
        return _soap(version, payload, status)
    finally:
        sim.calls.finish(log_key, time.perf_counter() - started, fault=failed)


def _soap(version: str, payload: bytes, status: int) -> web.Response:
    return web.Response(body=payload, status=status, headers={"Content-Type": CONTENT_TYPES[version]})


async def _failure(request: web.Request, kind: str, version: str, sim: Simulator, soap_request: SoapRequest
                   ) -> web.StreamResponse:
    if kind in _ERROR_PAGES:
        status, title = _ERROR_PAGES[kind]
        # An HTML page as IIS or a proxy sends it: not a SOAP envelope, and (like most) not well-formed XML.
        page = (f"<!DOCTYPE html>\n<html><head><title>{title}</title></head><body><h1>{title}</h1>"
                "<p>The page cannot be displayed.<br></body></html>")
        return web.Response(status=status, text=page, content_type=_HTML)
    if kind == "fault_1006":
        return _soap(version, fault(version, NmbrsFault(1006).faultstring), 500)
    if kind == "fault_9999":
        return _soap(version, fault(version, NmbrsFault(9999).faultstring), 500)
    if kind == "malformed":
        return web.Response(body=MALFORMED_BODY, status=200, headers={"Content-Type": CONTENT_TYPES[version]})
    if kind == "truncated":
        try:
            payload, status = envelope(version, execute(sim.world, soap_request, sim.cache)), 200
        except NmbrsFault as exc:
            payload, status = fault(version, exc.faultstring), 500
        return _soap(version, payload[: max(1, len(payload) // 2)], status)
    if kind == "hang":
        await _wait_until_gone(request)
    _reset_connection(request)
    raise asyncio.CancelledError  # nothing to send: the connection is gone (aiohttp treats it as a disconnect)


async def _wait_until_gone(request: web.Request) -> None:
    """Hold the call until the client gives up (closes the connection) or the server stops."""
    stopping = request.app[STOPPING_KEY]
    while not stopping.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), 0.2)


def _reset_connection(request: web.Request) -> None:
    """Close with an RST (SO_LINGER 0), which clients see as 'connection reset by peer'."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
