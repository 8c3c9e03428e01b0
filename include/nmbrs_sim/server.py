"""The aiohttp application: SOAP endpoints at /soap/v3/<Service>.asmx (WSDL on GET ?WSDL), the REST API at
/api/, the identity server at /connect/ and /.well-known/openid-configuration, the admin API at /_sim/.

Injected latency is an `asyncio.sleep`, so a waiting call holds no thread. An answer is read from the world when
its request arrives and sent when the latency has passed since then: the simulator's own work on a wave of calls
that arrived together is hidden inside the latency, as a real server's is inside the network's, instead of queueing
after it.
"""

from __future__ import annotations

import asyncio
import functools
import html
import time
from collections.abc import Callable

from aiohttp import web
from lxml import etree

from nmbrs_sim.admin_api import ADMIN_PREFIX, add_admin_routes
from nmbrs_sim.catalog import PATH_PREFIX, SERVICES, service_for_path
from nmbrs_sim.errors import FAULT_TEXTS, SERVER_PREFIX, ClientFault, NmbrsFault
from nmbrs_sim.http_faults import HTML, STOPPING_KEY, drop_connection, proxy_answer
from nmbrs_sim.identity import add_identity_routes
from nmbrs_sim.injection import ANSWERING_KINDS, param
from nmbrs_sim.latency import arrive, due, hold_until
from nmbrs_sim.operations import execute
from nmbrs_sim.rest_admin_api import add_rest_admin_routes
from nmbrs_sim.rest_api import add_rest_routes
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
MALFORMED_BODY = b"<html><body><h1>Runtime Error</h1><p>This answer is not a SOAP envelope & not XML</b></html>"
_HTML = HTML
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
_STATUS_TITLES = {429: "Too Many Requests", 403: "Forbidden", 500: "Internal Server Error", 502: "Bad Gateway",
                  503: "Service Unavailable"}


def create_app(sim: Simulator) -> web.Application:
    app = web.Application(client_max_size=sim.max_body_bytes)
    app[SIM_KEY] = sim
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    add_admin_routes(app, SIM_KEY)
    add_rest_admin_routes(app, SIM_KEY)
    add_identity_routes(app, SIM_KEY)
    add_rest_routes(app, SIM_KEY)
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


def _unknown_path(request: web.Request) -> web.Response:
    if request.path.startswith(ADMIN_PREFIX):
        return web.json_response({"error": f"no admin endpoint {request.method} {request.path}"}, status=404)
    return _page(404, "The resource cannot be found.", f"{request.path} is not a service of this simulator; "
                 f"try {PATH_PREFIX}DebtorService.asmx or {PATH_PREFIX}CompanyService.asmx.")


def _get_page(request: web.Request, service: str) -> web.Response:
    """GET ?WSDL (any case) answers the WSDL; anything else a help page."""
    query = {k.lower(): v for k, v in request.query.items()}
    if "wsdl" in query:
        return web.Response(body=render_wsdl(service, _location(request, service)),
                            content_type="text/xml", charset="utf-8")
    return _help_page(service, query.get("op"))


async def handle_soap(request: web.Request) -> web.StreamResponse:
    arrived = await arrive()  # the latency runs from here (`latency`)
    service = service_for_path(request.path)
    if service is None:
        return _unknown_path(request)
    if request.method in ("GET", "HEAD"):
        return _get_page(request, service)
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
    log_key = sim.calls.start(service, op.name, username)
    plan = sim.faults.plan(service, op.name, username, path=request.path)
    leaves = due(sim, plan, arrived)  # however long the simulator takes to make the answer
    failed = plan.failure not in ANSWERING_KINDS
    try:
        if plan.failure is not None:
            await hold_until(leaves)
            return await _failure(request, plan.failure, plan.params, version, sim, soap_request)
        try:
            payload, status = envelope(version, execute(sim.world, soap_request, sim.cache)), 200
            failed = False
        except NmbrsFault as exc:
            payload, status = fault(version, exc.faultstring), 500
        await hold_until(leaves)
        return _soap(version, payload, status)
    finally:
        sim.calls.finish(log_key, time.perf_counter() - arrived, fault=failed)


def _soap(version: str, payload: bytes, status: int) -> web.Response:
    return web.Response(body=payload, status=status, headers={"Content-Type": CONTENT_TYPES[version]})


def _answer(version: str, sim: Simulator, soap_request: SoapRequest, change: Callable[[etree._Element], None]
            ) -> web.Response:
    """The real answer with `change(response_element)` applied; a fault (1001, ...) is answered unchanged."""
    try:
        response = etree.fromstring(execute(sim.world, soap_request, sim.cache))
    except NmbrsFault as exc:
        return _soap(version, fault(version, exc.faultstring), 500)
    change(response)
    return _soap(version, envelope(version, etree.tostring(response, encoding="unicode")), 200)


def _result(response: etree._Element) -> etree._Element:
    result = response[0] if len(response) else None
    if result is None:  # execute() always writes the result element
        raise AssertionError(f"{response.tag} has no result element")
    return result


def _add_extra_elements(response: etree._Element) -> None:
    """Fields the WSDL does not declare, the way Nmbrs has added them before (KvkNr to Company): at the end of
    every record, and (for Company) a nested one in the middle of the sequence."""
    ns = etree.QName(response).namespace
    result = _result(response)
    records = [child for child in result if len(child)] or [result]
    for record in records:
        if etree.QName(record).localname == "Company":
            address = etree.Element(f"{{{ns}}}Vestigingsadres")
            etree.SubElement(address, f"{{{ns}}}Straat").text = "Dorpsstraat 1"
            etree.SubElement(address, f"{{{ns}}}Plaats").text = "Utrecht"
            record.insert(3, address)
            etree.SubElement(record, f"{{{ns}}}Vestigingsnummer").text = "000012345678"
        else:
            etree.SubElement(record, f"{{{ns}}}KvkNr").text = "12345678"
            etree.SubElement(record, f"{{{ns}}}LaatstGewijzigd").text = "2026-06-01T08:00:00"


LIST_ITEMS = {("DebtorService", "List_GetAll"): "Debtor", ("DebtorService", "Tags_Get"): "DebtorTag",
              ("CompanyService", "List_GetAll"): "Company", ("CompanyService", "List_GetByDebtor"): "Company"}


def _add_null_entries(item: str, response: etree._Element) -> None:
    """An xsi:nil entry first and one after the first real entry (what .NET writes for a null in an array)."""
    result = _result(response)
    ns = etree.QName(response).namespace
    for position in (min(1, len(result)), 0):
        nil = etree.Element(f"{{{ns}}}{item}")
        nil.set(XSI_NIL, "true")
        result.insert(position, nil)


def _drop_result(response: etree._Element) -> None:
    response.remove(_result(response))


def _empty_result(response: etree._Element) -> None:
    result = _result(response)
    for child in list(result):
        result.remove(child)
    result.text = None


def token_echoes(token: str) -> list[str]:
    """The token as servers have echoed credentials back: verbatim, upper case, HTML-escaped (character
    references), URL-encoded (every character), and, when it is 32 hex characters, as a GUID."""
    echoes = [token, token.upper(), "".join(f"&#x{ord(ch):x};" for ch in token),
              "".join(f"%{ord(ch):02X}" for ch in token)]
    if len(token) == 32 and all(ch in "0123456789abcdefABCDEF" for ch in token):
        echoes.append("{" + "-".join((token[:8], token[8:12], token[12:16], token[16:20], token[20:])).upper() + "}")
        echoes.append("-".join((token[:8], token[8:12], token[12:16], token[16:20], token[20:])))
    return echoes


def _echo_token(version: str, sim: Simulator, soap_request: SoapRequest, params: dict[str, float]
                ) -> web.Response:
    echoes = token_echoes(soap_request.token or "")
    listed = " | ".join(echoes)
    status = int(param("echo_token", params, "status"))
    code = int(param("echo_token", params, "code"))
    if status == 200:  # the real answer, with an element (undeclared) that echoes the token
        def change(response: etree._Element) -> None:
            ns = etree.QName(response).namespace
            etree.SubElement(response, f"{{{ns}}}Diagnostics").text = f"caller token: {listed}"
        return _answer(version, sim, soap_request, change)
    if status == 500:  # a SOAP fault whose string (and detail) echo the token
        text = f"{SERVER_PREFIX}{code}: {FAULT_TEXTS[code]} (token {listed})"
        payload = fault(version, text).replace(b"<detail />", f"<detail><token>{listed}</token></detail>".encode())
        return _soap(version, payload, 500)
    title = _STATUS_TITLES.get(status, f"HTTP {status}")  # an error page (proxy, WAF) that echoes the request
    page = (f"<!DOCTYPE html>\n<html><head><title>{status} {title}</title></head><body><h1>{title}</h1>"
            f"<p>Request header Token={echoes[0]}</p><pre>{listed}</pre>"
            f"<!-- {echoes[3]} --></body></html>")
    return web.Response(status=status, text=page, content_type=_HTML)


_ANSWER_CHANGES = {"extra_element": _add_extra_elements, "missing_result": _drop_result,
                   "empty_list": _empty_result}


async def _failure(request: web.Request, kind: str, params: dict[str, float], version: str, sim: Simulator,
                   soap_request: SoapRequest) -> web.StreamResponse:
    if kind in _ANSWER_CHANGES:
        return _answer(version, sim, soap_request, _ANSWER_CHANGES[kind])
    if kind == "null_entry":
        op = soap_request.operation
        return _answer(version, sim, soap_request, functools.partial(_add_null_entries,
                                                                     LIST_ITEMS[(op.service, op.name)]))
    if kind == "code_no_wrapper":  # the code without ASMX's "Server was unable to process request. --->"
        code = int(param(kind, params, "code"))
        return _soap(version, fault(version, f"{code}: {FAULT_TEXTS[code]}"), 500)
    if kind == "unknown_code":
        code = int(param(kind, params, "code"))
        return _soap(version, fault(version, f"{SERVER_PREFIX}{code}: Unexpected error"), 500)
    page = proxy_answer(kind, int(param("http_429", params, "retry_after")))  # no SOAP: a proxy's page
    if page is not None:
        return page
    if kind == "echo_token":
        return _echo_token(version, sim, soap_request, params)
    if kind in ("fault_1006", "fault_9999"):
        return _soap(version, fault(version, NmbrsFault(int(kind[-4:])).faultstring), 500)
    if kind == "malformed":
        return web.Response(body=MALFORMED_BODY, status=200, headers={"Content-Type": CONTENT_TYPES[version]})
    if kind == "truncated":
        try:
            payload, status = envelope(version, execute(sim.world, soap_request, sim.cache)), 200
        except NmbrsFault as exc:
            payload, status = fault(version, exc.faultstring), 500
        return _soap(version, payload[: max(1, len(payload) // 2)], status)
    await drop_connection(request, hang=kind == "hang")
