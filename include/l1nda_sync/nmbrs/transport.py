"""The zeep transport: pooled requests session, connect/read time-outs capped by the call's deadline, WSDLs from
the disk cache, HTTP errors without a SOAP fault told apart from faults (with their `Retry-After`), and
envelopes logged only redacted. Our connections never print `http.client` debug output (which would show the
request with its token on stdout when someone sets `http.client.HTTPConnection.debuglevel`); the transport
logs the same exchange itself, scrubbed, at DEBUG."""

from __future__ import annotations

import email.utils
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlparse

import requests
import urllib3.connection
from lxml import etree
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar
from requests.hooks import default_hooks
from requests.models import PreparedRequest
from requests.structures import CaseInsensitiveDict
from requests.utils import select_proxy
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import PoolManager
from zeep.transports import Transport

from l1nda_sync.nmbrs.errors import TransientError, UnknownNmbrsError
from l1nda_sync.nmbrs.keepalive import DECODED_ENCODINGS, KeepAlivePool, Origin, request_head
from l1nda_sync.nmbrs.redaction import scrub_active
from l1nda_sync.nmbrs.wsdl_cache import WsdlCache

log = logging.getLogger(__name__)

USER_AGENT = "l1nda-nmbrs-sync (zeep)"
_SOAP_ENVELOPES = ("http://schemas.xmlsoap.org/soap/envelope/", "http://www.w3.org/2003/05/soap-envelope")


SCRUB_WINDOW = 65536  # bytes of a body scrubbed before any part of it is shown (cut only after scrubbing)
LOGGED_BODY = 4000


def body_text(body: bytes, limit: int) -> str:
    """At most `limit` characters of `body`, scrubbed of the tokens in flight *before* it is cut (so a cut
    never leaves the first characters of a token behind)."""
    return scrub_active(body[:SCRUB_WINDOW].decode("utf-8", "replace"))[:limit]


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """HTTP `Retry-After` as seconds from now: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if seconds == seconds else None  # NaN is no answer


class HttpStatusError(Exception):
    """An HTTP error status whose body is not a SOAP fault (an HTML error page, an empty 502, a 429, ...).

    Keeps no body: only a short, scrubbed snippet, the status, the content type and `Retry-After`."""

    def __init__(self, status: int, body: bytes, *, content_type: str = "", retry_after: float | None = None
                 ) -> None:
        self.status = status
        self.content_type = content_type
        self.retry_after = retry_after
        snippet = body_text(body, 200).strip().replace("\n", " ")
        kind = f", {content_type.split(';', 1)[0].strip()}" if content_type else ""
        wait = f", Retry-After {retry_after:g} s" if retry_after is not None else ""
        super().__init__(f"HTTP {status} without a SOAP fault{kind}{wait}: {snippet!r}" if snippet else
                         f"HTTP {status} without a SOAP fault{kind}{wait} (empty body)")


class QuietHTTPConnection(urllib3.connection.HTTPConnection):
    """An HTTP connection that never prints its requests."""

    debuglevel = 0  # shadows http.client.HTTPConnection.debuglevel: never print requests (tokens) to stdout


class QuietHTTPSConnection(urllib3.connection.HTTPSConnection):
    """An HTTPS connection that never prints its requests."""

    debuglevel = 0


class _QuietHTTPPool(HTTPConnectionPool):
    ConnectionCls = QuietHTTPConnection


class _QuietHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = QuietHTTPSConnection


_QUIET_POOLS = {"http": _QuietHTTPPool, "https": _QuietHTTPSPool}


class QuietAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections (direct or through an HTTP proxy) have `debuglevel` 0."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_QUIET_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> PoolManager:
        manager: PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if hasattr(manager, "pool_classes_by_scheme") and not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = dict(_QUIET_POOLS)
        return manager


def pooled_session(pool_size: int, base_url: str | None = None) -> requests.Session:
    """One connection-pooled session for every thread.

    The environment (proxy variables, ~/.netrc, CA bundle variables) is read once here instead of on every
    request (`trust_env` costs several file-system lookups per call, a measurable share of a call's CPU).
    """
    session = requests.Session()
    if base_url is not None:
        session.proxies.update(requests.utils.get_environ_proxies(base_url))
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        session.trust_env = False
    adapter = QuietAdapter(pool_connections=4, pool_maxsize=max(pool_size, 10), max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def has_soap_fault(body: bytes) -> bool:
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        root = etree.fromstring(body, parser=parser)
    except etree.XMLSyntaxError:
        return False
    return any(root.find(f"{{{ns}}}Body/{{{ns}}}Fault") is not None for ns in _SOAP_ENVELOPES)


def adds_to_requests(session: requests.Session) -> bool:
    """Whether the session adds to each request what only requests' own preparation writes: cookies, auth,
    parameters or hooks."""
    return bool(session.cookies or session.auth or session.params or any(session.hooks.values()))


def goes_direct(session: requests.Session, url: str, pool: KeepAlivePool) -> bool:
    """Whether `pool` may carry a request of `session` to `url`: the session does not read the environment per
    request (`trust_env`: proxy variables, ~/.netrc; `pooled_session(n, base_url)` reads it once), and no proxy,
    client certificate, streaming or other adapter would take part, and the CA choice is the one the pool was made
    with."""
    given: Mapping[str, str | None] = session.proxies  # None turns a proxy off (as Session.send reads them)
    proxies = {key: proxy for key, proxy in given.items() if proxy is not None}
    return (not session.trust_env and session.cert is None and not session.stream and session.verify == pool.verify
            and not select_proxy(url, proxies) and type(session.get_adapter(url)) is QuietAdapter)


# A URL requests sends as it is: http(s), a host name (no credentials or brackets), a port written as requests
# writes it (no leading zero) or none, a path of unreserved characters, and no query or fragment of its own
# (nothing urlsplit would drop or requests' requote_uri quote).
_AS_IS_URL = re.compile(r"(https?)://([A-Za-z0-9.-]+)(:[1-9][0-9]{0,4})?(/[A-Za-z0-9\-._~/]*)?")
_MAX_PORT = 65535
_PLAIN_VALUES = (str, int, float, bool, type(None))  # query values `urlencode` writes as requests does


class DirectGets:
    """GETs of one session on a keep-alive pool of our own (`KeepAlivePool`), where requests would add nothing to
    them; else, and after any redirect, `session.get` itself. The REST client's way: requests' and urllib3's work
    per call was about half of a REST call's CPU.

    The URL, query and headers are made by requests' own `PreparedRequest` (the same encoding and header checks);
    only the sending differs. A Set-Cookie goes to the session's jar, so the next GETs go requests' way."""

    def __init__(self, session: requests.Session, *, pool_size: int) -> None:
        self.session = session
        self.keepalive = KeepAlivePool(maxsize=pool_size, verify=session.verify)
        self.redirected = False  # Nmbrs' API never redirects; should it start to, requests follows from then on
        self._origins: dict[tuple[str, str], Origin] = {}

    def get(self, url: str, params: Mapping[str, Any], headers: Mapping[str, str],
            timeout: tuple[float, float]) -> requests.Response:
        session = self.session

        def requests_way() -> requests.Response:
            return session.get(url, params=dict(params), headers=headers, timeout=timeout)

        if self.redirected or adds_to_requests(session) or not goes_direct(session, url, self.keepalive):
            return requests_way()
        request = PreparedRequest()
        request.method = "GET"
        target = self._target(url, params)
        if target is None:
            request.prepare_url(url, dict(params))
            try:
                target = Origin.of(request.url or url), request.url or url, request.path_url
            except ValueError:  # user:password@ in the URL: requests' auth applies
                return requests_way()
        origin, request.url, path = target
        merged: CaseInsensitiveDict[str | bytes | None] = CaseInsensitiveDict(session.headers)  # None: removed
        merged.update(headers)
        merged["Accept-Encoding"] = DECODED_ENCODINGS
        request.prepare_headers({name: value for name, value in merged.items() if value is not None})
        head = request_head(origin, path, request.headers, method="GET")
        response = self.keepalive.send(request.url, origin, head, b"", timeout)
        if response.raw is not None:  # a Set-Cookie: kept as requests keeps it
            extract_cookies_to_jar(session.cookies, request, response.raw)  # type: ignore[no-untyped-call]
        if response.is_redirect:
            self.redirected = True  # a GET changes nothing at Nmbrs: requests sends it again and follows
            return requests_way()
        return response

    def _target(self, url: str, params: Mapping[str, Any]) -> tuple[Origin, str, str] | None:
        """(origin, URL, path and query) as requests makes them, without its URL parsing (a fifth of a GET's CPU):
        for a URL that requests sends as it is (an http(s) path of unreserved characters, no query, fragment or
        credentials of its own); else None. The query is encoded as requests encodes it (`urlencode`, UTF-8,
        None left out)."""
        matched = _AS_IS_URL.fullmatch(url)
        if (matched is None or "/." in url
                or not all(type(key) is str and type(value) in _PLAIN_VALUES for key, value in params.items())):
            return None  # credentials, an IDNA host, dot segments, lists or bytes, ...: requests' way
        scheme, host, port, as_is = matched.groups()
        if port and int(port[1:]) > _MAX_PORT:
            return None  # requests refuses it, in its own words
        key = (scheme, host + (port or ""))
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = Origin.of(url)
        query = urlencode([(key, value) for key, value in params.items() if value is not None], doseq=True)
        path = (as_is or "/") + (f"?{query}" if query else "")
        return origin, f"{origin.scheme}://{origin.host}{port or ''}{path}", path

    def close(self) -> None:
        self.keepalive.close()
        self.session.close()


class NmbrsTransport(Transport):
    """Shared by every thread; the per-call deadline lives in a thread-local (`self.remaining`)."""

    def __init__(self, session: requests.Session, wsdl_cache: WsdlCache, *, connect_timeout: float,
                 read_timeout: float, pool_size: int = 10) -> None:
        # zeep's Transport is not annotated (its calls from a subclass are not covered by untyped_calls_exclude)
        super().__init__(timeout=read_timeout, operation_timeout=read_timeout,  # type: ignore[no-untyped-call]
                         session=session)
        session.headers["User-Agent"] = USER_AGENT
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.wsdl_cache = wsdl_cache
        self._local = threading.local()
        self._urls: dict[str, str] = {}
        self._requests: dict[tuple[object, ...], PreparedRequest] = {}
        self._heads: dict[tuple[object, ...], tuple[Origin, bytes]] = {}
        self._redirected: set[str] = set()
        self.keepalive = KeepAlivePool(maxsize=pool_size, verify=session.verify)
        # zeep's own logger (zeep.transports) would print the raw envelope; ours prints it redacted.
        self.logger = log

    # -- the per-call deadline ------------------------------------------------------------------------------
    def set_deadline(self, remaining: Callable[[], float] | None) -> None:
        self._local.remaining = remaining

    def _timeout(self) -> tuple[float, float]:
        remaining = getattr(self._local, "remaining", None)
        read = self.read_timeout
        if remaining is not None:
            left = remaining()
            if left <= 0:
                raise TransientError("no answer within the call deadline")
            read = min(read, left)
        return (min(self.connect_timeout, read), read)

    # -- SOAP calls -------------------------------------------------------------------------------------------
    def post(self, address: str, message: bytes | str, headers: Mapping[str, str]) -> requests.Response:
        if log.isEnabledFor(logging.DEBUG):
            text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
            log.debug("POST %s\n%s", address, scrub_active(text))
        response = self._send_post(address, message, headers, self._timeout())
        if log.isEnabledFor(logging.DEBUG):
            log.debug("HTTP %d from %s\n%s", response.status_code, address,
                      body_text(response.content, LOGGED_BODY))
        if response.status_code >= 400 and not has_soap_fault(response.content):
            raise HttpStatusError(response.status_code, response.content,
                                  content_type=response.headers.get("Content-Type", ""),
                                  retry_after=retry_after_seconds(response.headers.get("Retry-After")))
        return response

    def _send_post(self, address: str, message: bytes | str, headers: Mapping[str, str],
                   timeout: tuple[float, float]) -> requests.Response:
        """`session.post(...)` without its per-call preparation when nothing would change the request (no
        cookies, auth, hooks or params on the session); sent on a keep-alive connection of our own
        (`keepalive`) unless a proxy, a client certificate or another adapter is in play."""
        session = self.session
        found = self._template(address, message, headers)
        if found is None:
            return session.post(address, data=message, headers=headers, timeout=timeout)
        key, template = found
        if isinstance(message, bytes) and self._goes_direct(template):
            response = self._post_direct(key, template, message, timeout)
            if not response.is_redirect:
                return response
            # requests sends it again and follows the redirect (and keeps its cookies) from now on: every SOAP
            # operation this client calls is a read, so the second POST changes nothing at Nmbrs.
            self._redirected.add(template.url or "")
        return self._send_prepared(self._with_body(template, message), timeout)

    def _send_prepared(self, request: PreparedRequest, timeout: tuple[float, float]) -> requests.Response:
        """What `Session.send` does around the adapter, for a session without hooks: the adapter maps urllib3's
        errors to requests' own; cookies go to the session's jar; redirects are followed by requests."""
        session = self.session
        proxies = {scheme: proxy for scheme, proxy in session.proxies.items() if proxy is not None}
        settings: dict[str, Any] = {"stream": session.stream, "verify": session.verify, "cert": session.cert,
                                    "proxies": proxies, "timeout": timeout}
        response = session.get_adapter(url=request.url or "").send(request, **settings)
        if "set-cookie" in response.headers or "set-cookie2" in response.headers:
            extract_cookies_to_jar(session.cookies, request, response.raw)  # type: ignore[no-untyped-call]
        if response.is_redirect:
            history = list(session.resolve_redirects(response, request, **settings))
            if history:
                history.insert(0, response)
                response = history.pop()
                response.history = history
        if not session.stream:
            response.content  # noqa: B018 - read the body now, as Session.send does (mapping read errors)
        return response

    # -- our own keep-alive connections -------------------------------------------------------------------------
    def _goes_direct(self, template: PreparedRequest) -> bool:
        """`goes_direct`, and the URL never answered with a redirect."""
        url = template.url or ""
        return url not in self._redirected and goes_direct(self.session, url, self.keepalive)

    def _post_direct(self, key: tuple[object, ...], template: PreparedRequest, message: bytes,
                     timeout: tuple[float, float]) -> requests.Response:
        head = self._heads.get(key)
        if head is None:
            url = template.url or ""
            origin = Origin.of(url)
            sent = {name: value for name, value in template.headers.items()
                    if name.lower() not in ("content-length", "accept-encoding")}
            sent["Accept-Encoding"] = DECODED_ENCODINGS
            head = (origin, request_head(origin, template.path_url, sent)[:-2])  # Content-Length last, per call
            self._heads[key] = head
        origin, prefix = head
        response = self.keepalive.send(template.url or "", origin,
                                       prefix + b"Content-Length: %d\r\n\r\n" % len(message), message, timeout)
        if response.raw is not None:  # a Set-Cookie: kept as requests keeps it (the next POSTs go requests' way)
            request = self._with_body(template, message)
            extract_cookies_to_jar(self.session.cookies, request, response.raw)  # type: ignore[no-untyped-call]
        return response

    def prepare_post(self, address: str, message: bytes | str, headers: Mapping[str, str]
                     ) -> PreparedRequest | None:
        """What `session.prepare_request` makes of this POST, or None when the session would add to it."""
        found = self._template(address, message, headers)
        return None if found is None else self._with_body(found[1], message)

    def _template(self, address: str, message: bytes | str, headers: Mapping[str, str]
                  ) -> tuple[tuple[object, ...], PreparedRequest] | None:
        """The method, URL, headers and (empty) cookies of this POST: the same for every call."""
        session = self.session
        url = self._prepared_url(address) if isinstance(message, bytes) and message else None
        if url is None or adds_to_requests(session):
            return None
        key = (url, tuple(session.headers.items()), tuple(headers.items()))
        template = self._requests.get(key)
        if template is None:
            template = PreparedRequest()
            template.method, template.url = "POST", url
            merged = CaseInsensitiveDict(session.headers)
            merged.update(headers)
            template.prepare_headers({name: value for name, value in merged.items() if value is not None})
            template.prepare_cookies(RequestsCookieJar())  # the session's jar is empty; a redirect adds to this one
            if len(self._requests) >= 64:
                self._requests.clear()
                self._heads.clear()
            self._requests[key] = template
        return key, template

    @staticmethod
    def _with_body(template: PreparedRequest, message: bytes | str) -> PreparedRequest:
        request = template.copy()
        request.body, request.hooks = message, default_hooks()
        request.prepare_content_length(message)
        return request

    def _prepared_url(self, address: str) -> str | None:
        """`address` as requests prepares it; None when it carries credentials (requests' auth applies)."""
        url = self._urls.get(address)
        if url is None:
            prepared = requests.Request("POST", address).prepare()
            url = "" if "Authorization" in prepared.headers or prepared.url is None else prepared.url
            self._urls[address] = url
        return url or None

    def get(self, address: str, params: Mapping[str, str] | None, headers: Mapping[str, str]) -> requests.Response:
        return self.session.get(address, params=params, headers=headers, timeout=self._timeout())

    # -- WSDLs ----------------------------------------------------------------------------------------------
    def load(self, url: str) -> bytes:
        if urlparse(url).scheme in ("http", "https"):
            loaded = self.wsdl_cache.get(url, lambda: self._fetch(url))
        else:
            loaded = super().load(url)  # type: ignore[no-untyped-call]  # a local file: zeep reads it
        recorded: list[bytes] | None = getattr(self._local, "loaded", None)
        if recorded is not None:
            recorded.append(loaded)
        return loaded

    @contextmanager
    def recording_loads(self) -> Iterator[list[bytes]]:
        """The documents (WSDL, schemas) this thread loads meanwhile, in order: what a service is read by."""
        recorded: list[bytes] = []
        self._local.loaded = recorded
        try:
            yield recorded
        finally:
            self._local.loaded = None

    def _fetch(self, url: str) -> bytes:
        shown = url.split("?", 1)[0]
        try:
            response = self.session.get(url, timeout=(self.connect_timeout, self.read_timeout))
        except requests.RequestException as exc:
            raise TransientError(f"cannot fetch the WSDL {shown}: {type(exc).__name__}", operation="WSDL") from None
        if response.status_code >= 500:
            raise TransientError(f"the WSDL {shown} answered HTTP {response.status_code}", operation="WSDL")
        if response.status_code != 200:
            raise UnknownNmbrsError(f"the WSDL {shown} answered HTTP {response.status_code}: check "
                                    "L1NDA_NMBRS_BASE_URL (it must end in /soap/v3/)", operation="WSDL")
        return response.content
