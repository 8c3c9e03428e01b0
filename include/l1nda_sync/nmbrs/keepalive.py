"""Keep-alive HTTP/1.1 connections for the SOAP POSTs and the REST GETs, without requests' and urllib3's per-call
work.

Two thirds of a SOAP call's CPU went to requests, urllib3 and `http.client` (adapters, pool keys, header
objects, `email`'s header parser) for a request that is the same every time but for its body. `KeepAlivePool`
writes the request in one `sendall` and reads the answer with llhttp (`httptools`, the parser uvicorn uses):
- the same time-outs as requests: connect (and TLS handshake) within the connect time-out, then each read within
  the read time-out;
- the same TLS as urllib3 (`create_urllib3_context`, the same CA bundle and hostname check);
- the same errors as requests (`ConnectTimeout`, `ReadTimeout`, `SSLError`, `ConnectionError`,
  `ChunkedEncodingError`, `ContentDecodingError`), so the client's fault handling is unchanged;
- a `requests.Response` with the status, headers (repeated ones joined as urllib3 joins them) and the body,
  gzip or deflate decoded.
A pooled connection is checked before reuse (anything to read on it, a close included, drops it); one that closes
before any byte of an answer came back is replaced once by a new connection, within the call's time left (every
SOAP operation and REST GET sent this way is a read, so a request the server may have read is safe to send again).
Only the transports decide what goes this way (`NmbrsTransport`, `DirectGets`): no proxy, no client certificate, no
cookies.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl
import threading
import time
import weakref
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.client import HTTPMessage
from urllib.parse import urlsplit

import httptools
import requests
from requests.structures import CaseInsensitiveDict
from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_encoding_from_headers
from urllib3.util.ssl_ import create_urllib3_context

RECV_BYTES = 65536
DECODED_ENCODINGS = "gzip, deflate"  # the Accept-Encoding this pool reads (requests adds br/zstd when installed)
MAX_HEADERS = 100  # as http.client (and so requests) refuses more
MAX_HEAD_BYTES = 256 * 1024  # the bytes read before the headers end (http.client: 64 KiB per line)
# Answers that never carry a body, whatever their headers say (RFC 9112 6.3).
_NO_BODY = frozenset({204, 304})


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a connection goes: scheme, host and port, and the Host header that names them."""

    scheme: str
    host: str
    port: int
    host_header: str

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
            raise ValueError(f"not an http(s) URL without credentials: {parts.scheme}://{parts.hostname}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        default = port == (443 if parts.scheme == "https" else 80)
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        return cls(parts.scheme, host, port, shown if default else f"{shown}:{port}")


@dataclass
class _Answer:
    """What llhttp's callbacks collect of one answer."""

    status: int = 0
    reason: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    headers_done: bool = False
    complete: bool = False
    extra: bool = False  # bytes after the answer: the connection cannot carry another request
    received: bool = False  # any byte of it came back
    keep_alive: bool = False  # llhttp's verdict (HTTP/1.0 without keep-alive, `Connection: close`, ...)
    too_large: bool = False  # more headers than http.client accepts
    parser: httptools.HttpResponseParser | None = None

    # -- httptools' protocol: what follows a complete answer (another message, trailers) changes nothing ---------
    def on_message_begin(self) -> None:
        if self.complete:
            self.extra = True

    def on_status(self, status: bytes) -> None:
        if not self.complete:
            self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.headers_done or self.complete:
            return  # a chunked answer's trailers are not headers
        self.headers.append((name, value))
        self.too_large = self.too_large or len(self.headers) > MAX_HEADERS

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        self.headers_done = True
        if self.parser is not None:
            self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if not self.complete:
            self.body.append(body)

    def on_message_complete(self) -> None:
        if self.complete:
            return
        if 100 <= self.status < 200:  # a 100 Continue nobody asked for: forget it, the answer follows
            self.status, self.reason, self.headers_done = 0, b"", False
            self.headers.clear()
            self.body.clear()
            return
        self.complete = True
        self.keep_alive = self.parser is not None and self.parser.should_keep_alive()

    # -- what the answer says -----------------------------------------------------------------------------------
    def header(self, name: bytes) -> bytes | None:
        values = [value for key, value in self.headers if key.lower() == name]
        return b", ".join(values) if values else None

    def reads_until_close(self) -> bool:
        """HTTP/1.x without a length and not chunked: the body ends when the server closes (RFC 9112 6.3)."""
        return (self.status not in _NO_BODY and self.header(b"content-length") is None
                and self.header(b"transfer-encoding") is None)


class _Connection:
    """One socket to an origin; `reused` once it has carried an exchange."""

    __slots__ = ("reused", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reused = False

    def dropped(self) -> bool:
        """A connection at rest has nothing to read: if it is readable, the server closed it (or sent junk)."""
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        try:
            poller = select.poll()
            poller.register(self.sock, select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class _Stale(Exception):
    """A reused connection closed before any byte of the answer came back (the server may have read the request:
    every SOAP operation sent this way is a read, so sending it again changes nothing)."""


class KeepAlivePool:
    """Idle connections per origin, shared by every thread (LIFO: the warmest socket first)."""

    def __init__(self, *, maxsize: int, verify: bool | str | None) -> None:
        self.maxsize = maxsize
        self.verify = verify
        self._idle: dict[Origin, list[_Connection]] = {}
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None
        self.opened = 0  # connections made (for tests and the bench)
        self.closed = False
        _POOLS.add(self)

    # -- one exchange -----------------------------------------------------------------------------------------------
    def send(self, url: str, origin: Origin, head: bytes, body: bytes, timeout: tuple[float, float]
             ) -> requests.Response:
        """Send `head` (request line and headers, ending in a blank line) and `body` (empty for a GET); read the
        whole answer."""
        request = head + body
        started = time.monotonic()
        for fresh in (False, True):  # a stale pooled connection: once more, on a new one (never another idle one)
            left = timeout[1] - (time.monotonic() - started)  # the retry gets only the time left
            if left <= 0:
                raise requests.exceptions.ReadTimeout(f"no answer within the read time-out ({timeout[1]:g} s)")
            connect = min(timeout[0], left)
            connection = self._connect(origin, connect) if fresh else self._checkout(origin, connect)
            try:
                answer = self._exchange(connection, request, left)
            except _Stale:
                connection.close()
                continue
            except BaseException:
                connection.close()
                raise
            if answer.extra or answer.reads_until_close() or not answer.keep_alive:
                connection.close()
            else:
                self._checkin(origin, connection)
            return _response(url, answer)
        raise AssertionError("unreachable: a new connection is never stale")  # pragma: no cover

    def _exchange(self, connection: _Connection, request: bytes, read_timeout: float) -> _Answer:
        answer = _Answer()
        try:
            connection.sock.settimeout(read_timeout)
            connection.sock.sendall(request)
            _read(connection, answer)
        except requests.RequestException:  # ours, already in requests' terms (they are OSErrors too)
            raise
        except TimeoutError:
            raise requests.exceptions.ReadTimeout(f"no answer within the read time-out ({read_timeout:g} s)") from None
        except ssl.SSLError as exc:
            if not answer.received and connection.reused:
                raise _Stale from None
            raise requests.exceptions.SSLError(f"TLS failed during the call: {exc.reason or exc}") from None
        except OSError as exc:
            if not answer.received and connection.reused:
                raise _Stale from None
            raise requests.ConnectionError(f"the connection failed during the call: {_os_error(exc)}") from None
        return answer

    # -- the pool -------------------------------------------------------------------------------------------------
    def _checkout(self, origin: Origin, connect_timeout: float) -> _Connection:
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                connection = idle.pop() if idle else None
            if connection is None:
                return self._connect(origin, connect_timeout)
            # Anything on a connection at rest (a close, an unasked-for 408, a late duplicate answer) is never
            # read as the next call's answer: such a connection is dropped, as urllib3 does. One that closes
            # after this check but before answering is `_Stale`.
            if not connection.dropped():
                connection.reused = True
                return connection
            connection.close()

    def _checkin(self, origin: Origin, connection: _Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < self.maxsize and not self.closed:
                idle.append(connection)
                return
        connection.close()

    def _connect(self, origin: Origin, connect_timeout: float) -> _Connection:
        try:
            sock = socket.create_connection((origin.host, origin.port), timeout=connect_timeout)
        except TimeoutError:
            raise requests.exceptions.ConnectTimeout(
                f"no connection to {origin.host}:{origin.port} within {connect_timeout:g} s") from None
        except OSError as exc:
            raise requests.ConnectionError(f"cannot connect to {origin.host}:{origin.port}: {_os_error(exc)}"
                                           ) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if origin.scheme == "https":
                sock = self._tls_context().wrap_socket(sock, server_hostname=origin.host)
        except TimeoutError:
            sock.close()
            raise requests.exceptions.ConnectTimeout(
                f"no TLS handshake with {origin.host}:{origin.port} within {connect_timeout:g} s") from None
        except ssl.SSLError as exc:
            sock.close()
            raise requests.exceptions.SSLError(f"TLS with {origin.host}:{origin.port} failed: {exc.reason or exc}"
                                               ) from None
        except OSError as exc:
            sock.close()
            raise requests.ConnectionError(f"cannot connect to {origin.host}:{origin.port}: {_os_error(exc)}"
                                           ) from None
        with self._lock:
            self.opened += 1
        return _Connection(sock)

    def _tls_context(self) -> ssl.SSLContext:
        """urllib3's context with requests' CA choice: certifi's bundle, a given file or directory, or none."""
        if self._tls is None:
            if self.verify is False:
                context = create_urllib3_context(cert_reqs=ssl.CERT_NONE)
                context.check_hostname = False
            else:
                context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
                context.check_hostname = True
                where = str(self.verify) if isinstance(self.verify, str) else DEFAULT_CA_BUNDLE_PATH
                if os.path.isdir(where):
                    context.load_verify_locations(capath=where)
                else:
                    context.load_verify_locations(cafile=where)
            self._tls = context
        return self._tls

    def close(self) -> None:
        """Closes the idle connections; one still in use is closed when its exchange ends."""
        with self._lock:
            self.closed = True
            connections = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for connection in connections:
            connection.close()


def _forget_after_fork() -> None:
    """A forked child (a Celery prefork worker) must never use its parent's sockets: two processes reading one
    connection would read each other's answers. The child drops them (closing only its own copies)."""
    for pool in list(_POOLS):
        connections = [c for idle in pool._idle.values() for c in idle]
        pool._idle = {}
        pool._lock = threading.Lock()
        for connection in connections:
            connection.close()


_POOLS: weakref.WeakSet[KeepAlivePool] = weakref.WeakSet()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def request_head(origin: Origin, path: str, headers: Mapping[str, str | bytes], *, method: str = "POST") -> bytes:
    """The request line and headers, up to and including the blank line; a POST's `headers` must carry
    Content-Length. Names and values were checked by requests when the PreparedRequest was made (a POST) or are
    checked by the caller (`DirectGets`)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {origin.host_header}"]
    lines.extend(f"{name}: {value.decode('latin-1') if isinstance(value, bytes) else value}"
                 for name, value in headers.items() if name.lower() != "host")
    head = "\r\n".join(lines) + "\r\n\r\n"
    if _latin1(head):
        return head.encode("latin-1")
    # UnicodeEncodeError's repr would carry the whole head, secrets included (also as a later error's context):
    # name the part only, raised outside any except block.
    where = next((name for name, value in headers.items() if isinstance(value, str) and not _latin1(value)),
                 "the request line or Host")
    raise requests.exceptions.InvalidHeader(f"{where} is not latin-1 text")


def _latin1(text: str) -> bool:
    return text.isascii() or all(ord(c) < 256 for c in text)


def _read(connection: _Connection, answer: _Answer) -> None:
    parser = answer.parser = httptools.HttpResponseParser(answer)
    head_bytes = 0
    while not answer.complete:
        data = connection.sock.recv(RECV_BYTES)
        if not data:
            _at_end_of_stream(connection, answer)
            break
        answer.received = True
        if not answer.headers_done:
            head_bytes += len(data)
            if head_bytes > MAX_HEAD_BYTES:
                raise requests.ConnectionError(f"the answer's headers go on past {MAX_HEAD_BYTES} bytes")
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise requests.ConnectionError("the server switched protocols on a SOAP call") from None
        except httptools.HttpParserError as exc:
            if answer.complete:  # junk after a whole answer: keep the answer, drop the connection
                answer.extra = True
                break
            raise requests.ConnectionError(f"not an HTTP/1.1 answer ({exc})") from None
        if answer.too_large:
            raise requests.ConnectionError(f"the answer has more than {MAX_HEADERS} headers")
    answer.parser = None


def _at_end_of_stream(connection: _Connection, answer: _Answer) -> None:
    if answer.headers_done and answer.reads_until_close():
        answer.complete = True
    elif not answer.received and connection.reused:
        raise _Stale
    elif answer.headers_done:
        raise requests.exceptions.ChunkedEncodingError("the connection closed before the answer's body was complete")
    else:
        raise requests.ConnectionError("the connection closed before the answer's headers were complete")


def _response(url: str, answer: _Answer) -> requests.Response:
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
    for name, value in answer.headers:
        key, text = name.decode("latin-1"), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    response = requests.Response()
    response.status_code = answer.status
    response.reason = answer.reason.decode("latin-1")
    response.headers = headers
    response.url = url
    response.encoding = get_encoding_from_headers(headers)
    response._content = _decoded(b"".join(answer.body), headers.get("Content-Encoding", ""))
    response._content_consumed = True  # type: ignore[attr-defined]
    if "set-cookie" in headers or "set-cookie2" in headers:
        response.raw = _CookieSource(answer.headers)
    return response


class _CookieSource:
    """What `requests.cookies.extract_cookies_to_jar` reads of `response.raw`: the headers as `http.client`
    keeps them (every Set-Cookie on its own)."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.msg = HTTPMessage()
        for name, value in raw:
            self.msg[name.decode("latin-1")] = value.decode("latin-1")
        self._original_response = self


def _decoded(body: bytes, encoding: str) -> bytes:
    """gzip and deflate (zlib-wrapped or raw, as urllib3 accepts both), last applied first; others as they are."""
    for coding in reversed([c.strip().lower() for c in encoding.split(",") if c.strip()]):
        try:
            if coding in ("gzip", "x-gzip"):
                body = _inflate(body, 16 + zlib.MAX_WBITS)
            elif coding == "deflate":
                try:
                    body = _inflate(body, zlib.MAX_WBITS)
                except zlib.error:
                    body = _inflate(body, -zlib.MAX_WBITS)
            else:
                break
        except zlib.error as exc:
            raise requests.exceptions.ContentDecodingError(f"cannot decode the {coding} answer: {exc}") from None
    return body


def _inflate(body: bytes, wbits: int) -> bytes:
    """Every member of a (possibly multi-member) stream, as urllib3's GzipDecoder reads it: what follows the first
    member and is no gzip member (zero padding, junk) is ignored. Unlike urllib3, a stream cut off is an error (a
    cut answer is never read as a whole one)."""
    out: list[bytes] = []
    first = True
    while body:
        decoder = zlib.decompressobj(wbits)
        try:
            out.append(decoder.decompress(body))
        except zlib.error:
            if first:
                raise
            break
        out.append(decoder.flush())
        if not decoder.eof:
            raise zlib.error("the compressed stream is cut off")
        body, first = decoder.unused_data, False
        if wbits != 16 + zlib.MAX_WBITS or not body.startswith(b"\x1f\x8b"):
            break  # no further gzip member: what follows is ignored, as urllib3 ignores it
    return b"".join(out)


def _os_error(exc: OSError) -> str:
    return f"{type(exc).__name__}" + (f" ({exc.strerror})" if exc.strerror else "")
