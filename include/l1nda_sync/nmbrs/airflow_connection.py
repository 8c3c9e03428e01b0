"""The `nmbrs_soap` Airflow connection type: `NmbrsSoapHook`, an `HttpHook` that knows the Nmbrs SOAP base URL.

The connection's host is the SOAP base URL (`https://api.nmbrs.nl/soap/v3/`); `NmbrsSoapHook.soap_base_url`
also reads the older spellings (an `http` connection with the scheme in `schema`, or a URI whose path lands in
`schema`), so `settings.py` asks the hook instead of parsing the connection itself. The connection's extra
holds request options (HttpHook's `timeout`, `verify`, `proxies`, ...) and, only for the **Test** button, an
optional `test_login` + `test_token`: the test then also calls `DebtorService.Environment_Get` through the
project's own client. The test never raises and never shows more of the token than its last 4 characters,
also when the server echoes it. The form of the connection type is declared in `l1nda_sync.provider_info`.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import requests
from airflow.providers.http.hooks.http import HttpHook

from l1nda_sync import provider_info
from l1nda_sync.masking import Scrubber, Secret, mask, redact_url
from l1nda_sync.nmbrs.client import NmbrsClient
from l1nda_sync.nmbrs.errors import (
    CredentialInvalid,
    NmbrsError,
    NoSubscription,
    OperationNotAllowed,
    TransientError,
)
from l1nda_sync.nmbrs.limits import CallGate
from l1nda_sync.nmbrs.records import Credentials
from l1nda_sync.nmbrs.retry import RetryPolicy
from l1nda_sync.nmbrs.wsdl_cache import is_wsdl
from l1nda_sync.settings import Settings, SettingsError

if TYPE_CHECKING:
    from airflow.sdk import Connection

DEBTOR_SERVICE = "DebtorService"
# (connect, read) seconds for the Test button's WSDL request when the connection's extra names no `timeout`.
DEFAULT_TEST_TIMEOUT = (5.0, 30.0)
_OWN_EXTRAS = tuple(
    spelling
    for name in (provider_info.TEST_LOGIN, provider_info.TEST_TOKEN)
    for spelling in (name, f"extra__{provider_info.CONN_TYPE}__{name}")
)


class ConnectionFields(Protocol):
    """The fields of an Airflow Connection the base URL is read from."""

    @property
    def conn_type(self) -> str | None: ...

    @property
    def host(self) -> str | None: ...

    @property
    def schema(self) -> str | None: ...

    @property
    def port(self) -> int | None: ...


@dataclass(frozen=True)
class NmbrsConnectionValues:
    """The values of an `nmbrs_soap` connection: the SOAP base URL and the Test button's optional login."""

    base_url: str
    test_login: str | None = None
    test_token: Secret | None = None  # its repr and str show the last 4 characters only
    has_timeout: bool = False  # the extra sets HttpHook's `timeout`


def _extra_value(extra: Mapping[str, Any], name: str) -> str | None:
    """`name` from the extra, also in the prefixed spelling older forms store (`extra__nmbrs_soap__<name>`)."""
    value = extra.get(name)
    if value in (None, ""):
        value = extra.get(f"extra__{provider_info.CONN_TYPE}__{name}")
    text = "" if value is None else str(value).strip()
    return text or None


class NmbrsSoapHook(HttpHook):
    """The Nmbrs SOAP v3 connection (`nmbrs_soap`): base URL, request options and a Test that calls Nmbrs.

    `NmbrsSoapHook().get_connection_values().base_url` is the SOAP base URL with a trailing slash.
    Requests made through HttpHook's session (`run`, `get_conn`) carry no HTTP auth and never send the test
    login or token as headers.
    """

    conn_name_attr = "nmbrs_conn_id"
    default_conn_name = provider_info.CONN_TYPE
    conn_type = provider_info.CONN_TYPE
    hook_name = provider_info.HOOK_NAME

    def __init__(self, nmbrs_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        kwargs.setdefault("method", "GET")
        super().__init__(http_conn_id=nmbrs_conn_id, **kwargs)
        self.nmbrs_conn_id = nmbrs_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The form's standard fields (also declared in the provider info, which Airflow 3.2+ reads)."""
        behaviour = provider_info.UI_FIELD_BEHAVIOUR
        return {
            "hidden_fields": list(behaviour["hidden-fields"]),
            "relabeling": dict(behaviour["relabeling"]),
            "placeholders": dict(behaviour["placeholders"]),
        }

    # -- what the connection says ------------------------------------------------------------------------------
    @staticmethod
    def soap_base_url(conn: ConnectionFields) -> str:
        """The SOAP base URL a connection names, ending in '/'.

        The host may be the whole URL (`https://api.nmbrs.nl/soap/v3/`; the port field is then ignored). The
        `http` connection type keeps the scheme in `schema` (path `soap/v3`); a URI
        (`AIRFLOW_CONN_NMBRS_SOAP=https://h/soap/v3/`) puts its scheme in `conn_type` and its path in `schema`.
        """
        host = conn.host or ""
        if host.startswith(("http://", "https://")):
            return host if host.endswith("/") else host + "/"
        if conn.schema in ("http", "https"):
            scheme, path = conn.schema, "soap/v3"
        elif conn.schema:
            scheme, path = (conn.conn_type if conn.conn_type in ("http", "https") else "https"), conn.schema.strip("/")
        else:
            scheme, path = "https", "soap/v3"
        port = f":{conn.port}" if conn.port else ""
        return f"{scheme}://{host}{port}/{path}/"

    def get_connection_values(self) -> NmbrsConnectionValues:
        """The parsed connection; raises what Airflow raises when the connection does not exist."""
        conn = self.get_connection(self.nmbrs_conn_id)
        extra = conn.extra_dejson
        token = _extra_value(extra, provider_info.TEST_TOKEN)
        return NmbrsConnectionValues(
            base_url=self.soap_base_url(conn),
            test_login=_extra_value(extra, provider_info.TEST_LOGIN),
            test_token=Secret(token) if token else None,
            has_timeout="timeout" in extra,
        )

    # -- HttpHook: the base URL is the SOAP base; no HTTP auth; the test extras are no headers ------------------
    def _set_base_url(self, connection: Connection) -> None:
        self.base_url = self.soap_base_url(connection)
        self._base_url_initialized = True

    def _extract_auth(self, connection: Connection) -> Any | None:
        return None  # Nmbrs authenticates in the SOAP header; login/password are hidden and never sent

    def _configure_session_from_extra(self, session: requests.Session, connection: Connection,
                                      extra_options: dict[str, Any]) -> requests.Session:
        session = super()._configure_session_from_extra(session, connection, extra_options)
        for name in _OWN_EXTRAS:
            session.headers.pop(name, None)
        return session

    # -- the Test button --------------------------------------------------------------------------------------
    def test_connection(self) -> tuple[bool, str]:
        """WSDL reachable and parsed; with `test_login` + `test_token` in extra, `Environment_Get` answers.

        Never raises: returns (False, a message naming what to fix). The token appears only as its last 4
        characters.
        """
        try:
            values = self.get_connection_values()
        except Exception as exc:
            return False, (f"the Airflow connection {self.nmbrs_conn_id!r} cannot be read ({type(exc).__name__}: "
                           f"{_redact_urls(str(exc))[:300]}); define it with type {provider_info.CONN_TYPE!r} "
                           f"and the SOAP base URL as host, e.g. {provider_info.DEFAULT_BASE_URL}")
        token = values.test_token.reveal() if values.test_token is not None else ""
        scrub = Scrubber(token)
        try:
            ok, message = _ConnectionTest(self, values).run()
        except Exception as exc:  # a bug or an unforeseen answer: still an answer for the UI, never a 500
            ok, message = False, f"the test failed unexpectedly: {type(exc).__name__}: {str(exc)[:500]}"
        return ok, scrub(_redact_urls(message))  # a user:password@ in the host never reaches the UI either


def _redact_urls(text: str) -> str:
    """Every URL in a message with its password hidden (`redact_url`), the rest of the text left as it is."""
    return re.sub(r"[a-z][a-z0-9+.-]*://\S+", lambda m: redact_url(m.group(0)), text)


class _ConnectionTest:
    """One run of the Test button: WSDL, then (with a test login and token) Environment_Get."""

    def __init__(self, hook: NmbrsSoapHook, values: NmbrsConnectionValues) -> None:
        self.hook = hook
        self.values = values
        self.wsdl_url = f"{values.base_url}{DEBTOR_SERVICE}.asmx?WSDL"
        self.shown_url = f"{values.base_url}{DEBTOR_SERVICE}.asmx"

    def run(self) -> tuple[bool, str]:
        parts = urlsplit(self.values.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False, (f"the host gives the base URL {self.values.base_url!r}, which is not an http(s) URL; "
                           f"set host to the SOAP base URL, e.g. {provider_info.DEFAULT_BASE_URL}")
        problem = self._check_test_extras()
        if problem:
            return False, problem
        content, problem = self._fetch_wsdl()
        if content is None:
            return False, problem
        return self._with_client(content)

    def _check_test_extras(self) -> str:
        login, token = self.values.test_login, self.values.test_token
        if token is not None and not login:
            return (f"extra {provider_info.TEST_TOKEN} is set but {provider_info.TEST_LOGIN} is not: "
                    "Environment_Get needs the Nmbrs login e-mail the token belongs to (AuthHeader Username); "
                    f"add {provider_info.TEST_LOGIN} or remove {provider_info.TEST_TOKEN}")
        if login and token is None:
            return (f"extra {provider_info.TEST_LOGIN} is set but {provider_info.TEST_TOKEN} is not: add an API "
                    f"token of {login} to test it, or remove {provider_info.TEST_LOGIN}")
        return ""

    def _fetch_wsdl(self) -> tuple[bytes | None, str]:
        """A fresh GET through HttpHook's session (the connection's timeout, verify, proxies apply)."""
        options: dict[str, Any] = {"check_response": False}
        if not self.values.has_timeout:
            options["timeout"] = DEFAULT_TEST_TIMEOUT
        try:
            response = self.hook.run(f"{DEBTOR_SERVICE}.asmx?WSDL", extra_options=options)
        except requests.RequestException as exc:
            return None, (f"the WSDL {self.shown_url} is not reachable ({type(exc).__name__}: "
                          f"{str(exc)[:300]}); check the host (the SOAP base URL) and that the Airflow "
                          "API server can reach it (DNS, proxy, firewall)")
        if response.status_code != 200:
            return None, (f"the WSDL {self.shown_url} answered HTTP {response.status_code}; check the host: "
                          f"it must be the SOAP base URL ending in /soap/v3/, e.g. {provider_info.DEFAULT_BASE_URL}")
        if not is_wsdl(response.content):
            kind = response.headers.get("Content-Type", "no content type").split(";", 1)[0]
            return None, (f"the WSDL address {self.shown_url} answered HTTP 200 but not with a WSDL document "
                          f"({kind}); check the host: it must be the SOAP base URL, e.g. "
                          f"{provider_info.DEFAULT_BASE_URL}")
        return response.content, ""

    def _with_client(self, content: bytes) -> tuple[bool, str]:
        try:
            loaded = Settings.load(use_airflow=False)
        except SettingsError as exc:
            return False, f"the WSDL is reachable, but a setting is wrong: {exc}"
        with tempfile.TemporaryDirectory(prefix="l1nda-wsdl-test-") as cache_dir:
            settings = dataclasses.replace(loaded, nmbrs_base_url=self.values.base_url,
                                           nmbrs_wsdl_cache_dir=cache_dir)
            client = NmbrsClient(settings=settings, retry=RetryPolicy(attempts=2, deadline=30.0),
                                 gate=CallGate(settings.nmbrs_calls_per_second, 4))
            try:
                client.wsdl_cache.get(self.wsdl_url, lambda: content)  # parse what was just fetched
                return self._parse_and_call(client)
            finally:
                client.close()

    def _parse_and_call(self, client: NmbrsClient) -> tuple[bool, str]:
        try:
            client.service(DEBTOR_SERVICE)
        except NmbrsError as exc:
            return False, (f"the WSDL {self.shown_url} is reachable but not usable: {exc}; check the host: it "
                           f"must be the Nmbrs SOAP base URL, e.g. {provider_info.DEFAULT_BASE_URL}")
        reached = f"the WSDL {self.shown_url} is reachable and parses"
        login, token = self.values.test_login, self.values.test_token
        if not login or token is None:
            return True, (f"{reached}. No {provider_info.TEST_LOGIN}/{provider_info.TEST_TOKEN} in extra, so "
                          "Environment_Get was not called; add both to test a token too.")
        who = f"login {login} with token {mask(token.reveal())}"
        try:
            environment = client.environment(Credentials(login, token))
        except NmbrsError as exc:
            return False, f"{reached}, but Environment_Get for {who} failed: {exc}; {_advice(exc)}"
        return True, (f"{reached}; Environment_Get for {who} answered environment {environment.domain or '?'} "
                      f"(sub-domain {environment.sub_domain}).")


def _advice(error: NmbrsError) -> str:
    if isinstance(error, CredentialInvalid):
        return (f"check {provider_info.TEST_LOGIN} and {provider_info.TEST_TOKEN} (a reset token, a deleted user "
                "or a typo in the e-mail gives 1001)")
    if isinstance(error, OperationNotAllowed):
        return "switch DebtorService.Environment_Get on in the login's API user template in Nmbrs"
    if isinstance(error, NoSubscription):
        return "the Nmbrs environment of this login has no valid subscription"
    if isinstance(error, TransientError):
        return "a passing problem (time-out, server error); test again in a minute"
    return "see the message above; if it persists, check the host and the Nmbrs status page"

