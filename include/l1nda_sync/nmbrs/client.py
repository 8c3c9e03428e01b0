"""`NmbrsClient`: the Nmbrs SOAP v3 operations this project needs, over zeep, as typed records.

One parsed zeep client per service per `NmbrsClient`, built on first use and shared by every thread and token
(zeep clients are only read during calls); `get_client(settings)` gives the process's shared `NmbrsClient`, so
in a worker each WSDL is parsed once per process and fetched at most once per TTL (disk cache). Each call goes
through the process-wide `CallGate` (rate and concurrency), is retried only when transient, and ends by the
call deadline. The SOAP service is bound to the configured base URL, whatever the WSDL's soap:address says.

Answers are read strictly as XML but tolerantly against the schema (`l1nda_sync.nmbrs.answers`): elements the
WSDL does not know are ignored, null list entries skipped, an answer without its result element is malformed
(transient). Every server text that ends in a log line or an exception is scrubbed of the call's token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from random import Random
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import requests
import zeep
import zeep.exceptions
from lxml import etree
from zeep.proxy import ServiceProxy

from l1nda_sync.masking import Scrubber
from l1nda_sync.nmbrs.answer_digest import AnswerMemo, schema_fingerprint
from l1nda_sync.nmbrs.answers import AnswerReader
from l1nda_sync.nmbrs.errors import (
    CredentialInvalid,
    MalformedAnswer,
    NmbrsError,
    TransientError,
    UnknownNmbrsError,
    error_for_fault,
    error_for_http,
)
from l1nda_sync.nmbrs.limits import CallGate, shared_gate
from l1nda_sync.nmbrs.records import Company, Credentials, Debtor, DebtorTag, Environment, Probe
from l1nda_sync.nmbrs.redaction import guarding, install_log_redaction
from l1nda_sync.nmbrs.retry import Deadline, RetryPolicy, call_with_retry
from l1nda_sync.nmbrs.service import SoapService
from l1nda_sync.nmbrs.transport import HttpStatusError, NmbrsTransport, pooled_session
from l1nda_sync.nmbrs.wsdl_cache import WsdlCache
from l1nda_sync.settings import Settings, SettingsError

log = logging.getLogger(__name__)
R = TypeVar("R")

DEBTOR_SERVICE = "DebtorService"
COMPANY_SERVICE = "CompanyService"
SERVICES = (DEBTOR_SERVICE, COMPANY_SERVICE)
# The only operation whose WSDL header is AuthHeader (no Domain); every other one takes AuthHeaderWithDomain.
AUTH_HEADER_ONLY = {(DEBTOR_SERVICE, "Environment_Get")}

_TRANSIENT_EXCEPTIONS = (
    requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError, zeep.exceptions.TransportError, zeep.exceptions.XMLSyntaxError,
    zeep.exceptions.XMLParseError, etree.XMLSyntaxError,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def normalize_base_url(url: str) -> str:
    """'https://api.nmbrs.nl/soap/v3' -> 'https://api.nmbrs.nl/soap/v3/'; anything not http(s) is refused."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"L1NDA_NMBRS_BASE_URL (or the Airflow connection nmbrs_soap) = {url!r}: not an http(s) "
                            "URL; expected the SOAP base, e.g. https://api.nmbrs.nl/soap/v3/")
    return url if url.endswith("/") else url + "/"


class NmbrsClient:
    """The SOAP operations of one base URL; shared by every thread and token (see the module docstring)."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        retry: RetryPolicy | None = None,
        gate: CallGate | None = None,
        rng: Random | None = None,
    ) -> None:
        self.settings = settings or Settings.load()
        s = self.settings
        self.base_url = normalize_base_url(base_url or s.nmbrs_base_url)
        self.clock, self.wall_clock, self._sleep, self._rng = clock, wall_clock, sleep, rng
        self.retry = retry or RetryPolicy(attempts=s.nmbrs_retry_attempts, deadline=s.nmbrs_call_deadline)
        self.gate = gate or shared_gate(s.nmbrs_calls_per_second, s.nmbrs_max_concurrency)
        self.session = pooled_session(s.nmbrs_max_concurrency, self.base_url)
        self.wsdl_cache = WsdlCache(s.nmbrs_wsdl_cache_dir, s.nmbrs_wsdl_cache_ttl)
        self.transport = NmbrsTransport(self.session, self.wsdl_cache, connect_timeout=s.nmbrs_connect_timeout,
                                        read_timeout=s.nmbrs_read_timeout, pool_size=max(s.nmbrs_max_concurrency, 10))
        self.answers = AnswerReader()
        self._services: dict[str, ServiceProxy] = {}
        self._schemas: dict[str, bytes] = {}  # service -> the fingerprint of its WSDL, set by _build with the proxy
        self._soap: dict[str, SoapService] = {}
        self._build_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._calls = 0
        self.retries = 0
        self.build_seconds: dict[str, float] = {}  # per service: WSDL load (cache or fetch) + zeep parse
        self.closed = False
        install_log_redaction()

    def __repr__(self) -> str:
        return f"NmbrsClient({self.base_url!r}, calls_made={self.calls_made})"

    @property
    def calls_made(self) -> int:
        """SOAP requests sent by this client so far (every attempt counts: Nmbrs' fair use counts them)."""
        return self._calls

    def close(self) -> None:
        self.closed = True
        self.transport.keepalive.close()
        self.session.close()

    # -- zeep clients ----------------------------------------------------------------------------------------
    def service(self, name: str) -> ServiceProxy:
        """The zeep ServiceProxy of `name`, bound to the base URL; parsed once, then shared."""
        proxy = self._services.get(name)
        if proxy is not None:
            return proxy
        with self._build_lock:
            proxy = self._services.get(name)
            if proxy is None:
                proxy = self._services[name] = self._build(name)
        return proxy

    def soap_service(self, name: str) -> SoapService:
        """The calls of service `name` (envelope templates, direct answer reading) over its zeep proxy."""
        soap = self._soap.get(name)
        if soap is None:
            proxy = self.service(name)
            with self._build_lock:
                soap = self._soap.get(name)
                if soap is None:
                    soap = self._soap[name] = SoapService(proxy, self._schemas[name])
        return soap

    def _build(self, name: str) -> ServiceProxy:
        started = time.perf_counter()
        wsdl = f"{self.base_url}{name}.asmx?WSDL"
        try:
            # strict=True keeps lxml's recover mode off (a cut answer must fail, not read as a shorter list);
            # the AnswerReader makes the schema side tolerant instead.
            with self.transport.recording_loads() as loaded:
                client = zeep.Client(wsdl, transport=self.transport, settings=zeep.Settings(strict=True),
                                     plugins=[self.answers])
        except NmbrsError as exc:
            exc.service = exc.service or name
            raise
        except _TRANSIENT_EXCEPTIONS as exc:
            raise TransientError(f"{name}: the WSDL could not be read ({type(exc).__name__})", service=name,
                                 operation="WSDL") from None
        except zeep.exceptions.Error as exc:
            raise UnknownNmbrsError(f"{name}: the WSDL is not usable: {exc}", service=name, operation="WSDL") from None
        binding = next((qname for qname in client.wsdl.bindings if qname.endswith(f"}}{name}Soap")), None)
        if binding is None:
            raise UnknownNmbrsError(f"{name}: the WSDL has no {name}Soap binding", service=name, operation="WSDL")
        proxy: ServiceProxy = client.create_service(binding, f"{self.base_url}{name}.asmx")
        self._schemas[name] = schema_fingerprint(loaded)
        self.build_seconds[name] = time.perf_counter() - started
        log.debug("built the %s client in %.3f s", name, self.build_seconds[name])
        return proxy

    def warm_up(self) -> dict[str, float]:
        """Build every service client now (a worker may call this before its first token)."""
        for name in SERVICES:
            self.service(name)
        return dict(self.build_seconds)

    # -- one operation ----------------------------------------------------------------------------------------
    def call(self, credentials: Credentials, domain: str | None, service: str, operation: str,
             counter: list[int] | None = None, memo: AnswerMemo | None = None, **params: Any) -> Any:
        """One Nmbrs operation with retries; returns plain Python data (dicts, lists), never zeep objects.

        With a `memo`, an answer byte for byte the one `memo.known` names is not read (None; see `answer_digest`).
        """
        token = credentials.token.reveal()
        header: dict[str, str] = {"Username": credentials.username, "Token": token}
        if (service, operation) in AUTH_HEADER_ONLY:
            header_kind = "AuthHeader"
        else:
            if not domain:
                raise ValueError(f"{service}.{operation} needs the environment's domain; discover it first")
            header_kind = "AuthHeaderWithDomain"
            header["Domain"] = domain

        def attempt(deadline: Deadline, scrub: Scrubber) -> Any:
            soap = self.soap_service(service)
            self.transport.set_deadline(deadline.remaining)
            try:
                request = soap.prepare(operation, header_kind, header, params)
                # The slot (fair use: calls in flight at Nmbrs) is held while the request is out, not while this
                # process builds the envelope or reads the answer: that CPU would keep other calls waiting.
                with self.gate.slot(deadline.remaining):
                    with self._count_lock:
                        self._calls += 1
                    if counter is not None:
                        counter[0] += 1
                    response = soap.send(request)
                return soap.reply(request, response, memo)
            except zeep.exceptions.Fault as fault:
                raise error_for_fault(scrub(fault.message), service=service, operation=operation,
                                      params=params) from None
            except HttpStatusError as exc:
                raise error_for_http(exc.status, scrub(str(exc)), service=service, operation=operation,
                                     retry_after=exc.retry_after) from None
            except NmbrsError as exc:
                exc.service, exc.operation = exc.service or service, exc.operation or operation
                if not exc.args[0].startswith(f"{service}.{operation}"):
                    exc.args = (f"{service}.{operation}: {scrub(str(exc))}",)
                raise
            except _TRANSIENT_EXCEPTIONS as exc:
                raise TransientError(f"{service}.{operation}: {_describe(exc, scrub)}", service=service,
                                     operation=operation) from None
            except zeep.exceptions.Error as exc:
                raise UnknownNmbrsError(f"{service}.{operation}: {_describe(exc, scrub)}", service=service,
                                        operation=operation) from None
            finally:
                self.transport.set_deadline(None)

        def on_retry(retry: int, wait: float, error: NmbrsError) -> None:
            with self._count_lock:
                self.retries += 1
            log.info("%s.%s for %s: %s; retry %d in %.2f s", service, operation, credentials.username,
                     error, retry, wait)

        with guarding(token) as scrub:  # also scrubs the log records of zeep, urllib3, requests while it runs
            return call_with_retry(lambda deadline: attempt(deadline, scrub), self.retry, clock=self.clock,
                                   sleep=self._sleep, rng=self._rng, on_retry=on_retry)

    def conversation(self, credentials: Credentials, domain: str | None = None, *,
                     remembered: bool | None = None) -> Conversation:
        return Conversation(self, credentials, domain, remembered=remembered)

    # -- the operations, one call each (plus a domain discovery when the credentials carry none) ---------------
    def environment(self, credentials: Credentials) -> Environment:
        return self.conversation(credentials).discover()

    def debtors(self, credentials: Credentials) -> tuple[Debtor, ...]:
        return self.conversation(credentials).debtors()

    def debtor_tags(self, credentials: Credentials, debtor_id: int) -> tuple[DebtorTag, ...]:
        return self.conversation(credentials).debtor_tags(debtor_id)

    def companies(self, credentials: Credentials) -> tuple[Company, ...]:
        return self.conversation(credentials).companies()

    def companies_by_debtor(self, credentials: Credentials, debtor_id: int) -> tuple[Company, ...]:
        return self.conversation(credentials).companies_by_debtor(debtor_id)

    def is_owner(self, credentials: Credentials) -> bool:
        return self.conversation(credentials).is_owner()

    def probe(self, credentials: Credentials, previous: Probe | None = None) -> Probe:
        """What the token reaches; see `l1nda_sync.nmbrs.probe` for the calls each case costs."""
        from l1nda_sync.nmbrs.probe import run_probe

        return run_probe(self, credentials, previous)


class Conversation:
    """One token's calls: knows its domain, discovers it when missing and once more after a 1001.

    A 1001 on a call made with a remembered domain (given by the caller, not found in this conversation) triggers
    exactly one rediscovery (`Environment_Get`, which needs no domain) and one repeat of the call with the domain
    found; a second 1001, or a 1001 from `Environment_Get` itself, is final.
    """

    def __init__(self, client: NmbrsClient, credentials: Credentials, domain: str | None, *,
                 remembered: bool | None = None) -> None:
        self.client = client
        self.credentials = credentials
        self.domain = domain or credentials.domain
        self.remembered = bool(self.domain) if remembered is None else remembered
        self.environment: Environment | None = None
        self.rediscovered = False
        self._counter = [0]

    @property
    def calls(self) -> int:
        return self._counter[0]

    def discover(self) -> Environment:
        data = self.client.call(self.credentials, None, DEBTOR_SERVICE, "Environment_Get", self._counter)
        data = data or {}
        sub_domain = data.get("SubDomain")
        if not sub_domain:
            raise MalformedAnswer("DebtorService.Environment_Get answered without a SubDomain",
                                  service=DEBTOR_SERVICE, operation="Environment_Get")
        self.environment = Environment(str(data.get("Domain") or ""), str(sub_domain))
        if self.domain and self.domain.lower() != self.environment.sub_domain.lower():
            log.info("%s: the environment's domain is now %r (was %r)", self.credentials.username,
                     self.environment.sub_domain, self.domain)
        self.domain = self.environment.sub_domain
        self.remembered = False
        return self.environment

    def call(self, service: str, operation: str, memo: AnswerMemo | None = None, **params: Any) -> Any:
        if (service, operation) in AUTH_HEADER_ONLY:
            return self.client.call(self.credentials, None, service, operation, self._counter, memo, **params)
        if not self.domain:
            self.discover()
        try:
            return self.client.call(self.credentials, self.domain, service, operation, self._counter, memo,
                                    **params)
        except CredentialInvalid:
            if not self.remembered or self.rediscovered:
                raise
            self.rediscovered = True
            log.info("%s: 1001 with the remembered domain; asking Nmbrs for the domain once more",
                     self.credentials.username)
            self.discover()
            return self.client.call(self.credentials, self.domain, service, operation, self._counter, memo,
                                    **params)

    def debtors(self) -> tuple[Debtor, ...]:
        listed = self.list_debtors()
        assert listed.records is not None  # no digest was known
        return listed.records

    def list_debtors(self, known: str | None = None) -> Listed[Debtor]:
        """`DebtorService.List_GetAll`; records None when the answer is byte for byte the one `known` names."""
        return self._list_all(DEBTOR_SERVICE, "Debtor", _debtor, known)

    def _list_all(self, service: str, item: str, read: Callable[[dict[str, Any]], R], known: str | None
                  ) -> Listed[R]:
        memo = AnswerMemo(known)
        result = self.call(service, "List_GetAll", memo)
        if memo.same:
            return Listed(None, memo.digest)
        return Listed(tuple(sorted((read(row) for row in _items(result, item)), key=attrgetter("id"))), memo.digest)

    def debtor_tags(self, debtor_id: int) -> tuple[DebtorTag, ...]:
        rows = _items(self.call(DEBTOR_SERVICE, "Tags_Get", DebtorId=int(debtor_id)), "DebtorTag")
        return tuple(sorted((_tag(r) for r in rows), key=lambda t: t.number))

    def companies(self) -> tuple[Company, ...]:
        listed = self.list_companies()
        assert listed.records is not None  # no digest was known
        return listed.records

    def list_companies(self, known: str | None = None) -> Listed[Company]:
        """`CompanyService.List_GetAll` (debtor_id None); records None when the answer is the one `known` names."""
        return self._list_all(COMPANY_SERVICE, "Company", lambda row: _company(row, None), known)

    def companies_by_debtor(self, debtor_id: int) -> tuple[Company, ...]:
        rows = _items(self.call(COMPANY_SERVICE, "List_GetByDebtor", DebtorId=int(debtor_id)), "Company")
        return tuple(sorted((_company(r, int(debtor_id)) for r in rows), key=lambda c: c.id))

    def is_owner(self) -> bool:
        return bool(self.call(DEBTOR_SERVICE, "Debtor_IsOwner"))


@dataclass(frozen=True, slots=True)
class Listed(Generic[R]):
    """A `List_GetAll` answer: its records, or None when it was byte for byte the known answer; its digest."""

    records: tuple[R, ...] | None
    digest: str | None


# -- zeep answers -> records --------------------------------------------------------------------------------------
def _items(result: Any, item: str) -> list[dict[str, Any]]:
    """The rows of an ArrayOf<X> answer; an empty `<OpResult/>` (None) is no rows; null entries are skipped.

    (A missing `<OpResult>` never gets here: the AnswerReader raises MalformedAnswer for it.)"""
    if result is None:
        return []
    if isinstance(result, dict) and set(result) == {item}:
        result = result[item]
        if result is None:
            return []
    if isinstance(result, dict):
        return [result]
    if not isinstance(result, list):
        raise MalformedAnswer(f"expected a list of {item}, got {type(result).__name__}")
    return [row for row in result if row is not None]


def _debtor(row: dict[str, Any]) -> Debtor:
    return Debtor(_int(row, "Id"), _str(row.get("Number")), _str(row.get("Name")))


def _tag(row: dict[str, Any]) -> DebtorTag:
    return DebtorTag(_int(row, "Number"), _str(row.get("Tag")), _str(row.get("HexColor")))


def _company(row: dict[str, Any], debtor_id: int | None) -> Company:
    return Company(_int(row, "ID"), _int(row, "Number"), _str(row.get("Name")),
                   str(row.get("LoonaangifteTijdvak") or "None"), _str(row.get("KvkNr")), debtor_id)


def _int(row: dict[str, Any], key: str) -> int:
    value = row.get(key)
    if value is None:
        raise MalformedAnswer(f"Nmbrs answered a row without {key}: {sorted(row)}")
    return int(value)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _describe(exc: BaseException, scrub: Scrubber) -> str:
    """The exception's first line, scrubbed before it is cut (a cut never leaves part of a token)."""
    detail = scrub(str(exc)[:65536]).split("\n", 1)[0][:300]
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


# -- the process's shared client -----------------------------------------------------------------------------------
_SHARED: dict[tuple[object, ...], NmbrsClient] = {}
_SHARED_LOCK = threading.Lock()


def get_client(settings: Settings | None = None) -> NmbrsClient:
    """The process-wide NmbrsClient for these settings (built once; rebuilt only after `close()`)."""
    settings = settings or Settings.load()
    key = (settings.nmbrs_base_url, settings.nmbrs_connect_timeout, settings.nmbrs_read_timeout,
           settings.nmbrs_call_deadline, settings.nmbrs_retry_attempts, settings.nmbrs_calls_per_second,
           settings.nmbrs_max_concurrency, settings.nmbrs_wsdl_cache_ttl, settings.nmbrs_wsdl_cache_dir,
           settings.mapping_full_refresh, settings.nmbrs_per_login_concurrency)
    with _SHARED_LOCK:
        client = _SHARED.get(key)
        if client is None or client.closed:
            client = _SHARED[key] = NmbrsClient(settings=settings)
        return client
