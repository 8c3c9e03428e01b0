"""Failures that look the same whatever the protocol: a proxy's HTML error pages, a WAF page, a plain-text 429,
connection resets and hangs. SOAP (server.py) and REST/identity (gateway.py) both answer with these."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import NoReturn

from aiohttp import web

HTML = "text/html"
ERROR_PAGES = {"http_500": (500, "500 - Internal server error."), "http_502": (502, "502 - Bad Gateway"),
               "http_503": (503, "503 - Service Unavailable")}
WAF_PAGE = ("<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head><body><h1>Access Denied</h1>"
            "<p>The request was blocked by the web application firewall.</p>"
            "<p>Reference #18.4f2a3b17.1717228800.2c9e1a</p></body></html>")
STOPPING_KEY = web.AppKey("stopping", asyncio.Event)


def error_page(kind: str) -> web.Response:
    """An HTML page as IIS or a proxy sends it: not the protocol's format, and (like most) not well-formed XML."""
    status, title = ERROR_PAGES[kind]
    page = (f"<!DOCTYPE html>\n<html><head><title>{title}</title></head><body><h1>{title}</h1>"
            "<p>The page cannot be displayed.<br></body></html>")
    return web.Response(status=status, text=page, content_type=HTML)


def plain_429(seconds: int) -> web.Response:
    """A proxy's or gateway's rate limit: no protocol body, a Retry-After in seconds."""
    return web.Response(status=429, text="Too Many Requests: rate limit exceeded, retry later.",
                        content_type="text/plain", headers={"Retry-After": str(seconds)})


def waf_page() -> web.Response:
    return web.Response(status=403, text=WAF_PAGE, content_type=HTML)


def proxy_answer(kind: str, retry_after: int) -> web.Response | None:
    """The answer of a proxy-level failure kind (http_5xx, http_403_html, http_429), None for other kinds."""
    if kind in ERROR_PAGES:
        return error_page(kind)
    if kind == "http_403_html":
        return waf_page()
    if kind == "http_429":
        return plain_429(retry_after)
    return None


async def drop_connection(request: web.Request, *, hang: bool) -> NoReturn:
    """Reset the connection (after holding it until the client gives up, for `hang`); never returns."""
    if hang:
        await wait_until_gone(request)
    reset_connection(request)
    raise asyncio.CancelledError  # nothing to send: the connection is gone (aiohttp treats it as a disconnect)


async def wait_until_gone(request: web.Request) -> None:
    """Hold the call until the client gives up (closes the connection) or the server stops."""
    stopping = request.app[STOPPING_KEY]
    while not stopping.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), 0.2)


def reset_connection(request: web.Request) -> None:
    """Close with an RST (SO_LINGER 0), which clients see as 'connection reset by peer'."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
