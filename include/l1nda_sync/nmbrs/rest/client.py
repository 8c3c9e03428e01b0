"""`RestClient`: GETs on Nmbrs' REST API under the same process-wide rate and concurrency limits (`CallGate`),
retry policy and error hierarchy as the SOAP client.

Every request sends `Authorization: Bearer`, `X-Subscription-Key` and `Accept: application/json`; is retried only
when its error is `retryable` (5xx, 408, 425, 42908 after `Retry-After` or backoff, network errors), never on
42909; and counts as one call. When the API gateway refuses the subscription key and a secondary key is
configured, the client switches to it (for the rest of its life) and sends the request again. A
`RestConversation` is one connection's probe: it refreshes the access token at most once, on a 401 (40101/40102);
a refusal after a successful refresh is transient (the refresh proved the consent alive); only the identity
server's `invalid_grant` is `ConsentRevoked`. No secret ever reaches a message or a log line: server texts are
scrubbed of the access token and the keys, and the redaction filter guards them while a request is in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from random import Random
from typing import Any

import requests

from l1nda_sync.masking import Scrubber, Secret
from l1nda_sync.nmbrs.errors import MalformedAnswer, NmbrsError, TransientError, UnknownNmbrsError
from l1nda_sync.nmbrs.limits import CallGate, shared_gate
from l1nda_sync.nmbrs.redaction import guarding, install_log_redaction
from l1nda_sync.nmbrs.rest.answers import (
    REST,
    Endpoint,
    SubscriptionKeyRejected,
    TokenRefused,
    error_for_status,
    read_page,
)
from l1nda_sync.nmbrs.rest.config import RestApp
from l1nda_sync.nmbrs.rest.oauth import Grant
from l1nda_sync.nmbrs.rest.records import RestCredentials, RestReach
from l1nda_sync.nmbrs.retry import Deadline, RetryPolicy, call_with_retry
from l1nda_sync.nmbrs.transport import DirectGets, pooled_session, retry_after_seconds
from l1nda_sync.settings import Settings

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # Nmbrs' maximum (above: 400/40033)
MAX_PAGES = 10_000  # a pagination that never ends is malformed, not a loop


class RestClient:
    """The REST API of one app; shared by every thread and connection (the session pools connections)."""

    def __init__(self, app: RestApp, settings: Settings | None = None, *, retry: RetryPolicy | None = None,
                 gate: CallGate | None = None, session: requests.Session | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 rng: Random | None = None) -> None:
        s = settings or Settings.load()
        self.app = app
        self.retry = retry or RetryPolicy(attempts=s.nmbrs_retry_attempts, deadline=s.nmbrs_call_deadline)
        self.gate = gate or shared_gate(s.nmbrs_calls_per_second, s.nmbrs_max_concurrency)
        self.session = session or pooled_session(s.nmbrs_max_concurrency, app.api_base)
        self.http = DirectGets(self.session, pool_size=max(s.nmbrs_max_concurrency, 10))
        self.timeouts = (s.nmbrs_connect_timeout, s.nmbrs_read_timeout)
        self.clock, self._sleep, self._rng = clock, sleep, rng
        self._key = app.subscription_key
        self._lock = threading.Lock()
        self._calls = 0
        self.retries = 0
        install_log_redaction()

    def __repr__(self) -> str:
        return f"RestClient({self.app.api_base!r}, calls_made={self._calls})"

    @property
    def calls_made(self) -> int:
        """Requests sent so far (every attempt counts)."""
        return self._calls

    def close(self) -> None:
        self.http.close()

    def conversation(self, connection: RestCredentials) -> RestConversation:
        return RestConversation(self, connection)

    def probe(self, connection: RestCredentials, *, with_user: bool = False) -> RestReach:
        """What the connection reaches (see `l1nda_sync.nmbrs.rest.probe`)."""
        from l1nda_sync.nmbrs.rest.probe import run_probe

        return run_probe(self, connection, with_user=with_user)

    # -- one request ------------------------------------------------------------------------------------------
    def get(self, endpoint: Endpoint, path: str, params: Mapping[str, Any], token: Secret, *,
            scopes: tuple[str, ...] | None = None, counter: list[int] | None = None) -> Any:
        """One GET with retries; the parsed JSON of a 2xx answer, else the mapped NmbrsError."""

        def attempt(deadline: Deadline, scrub: Callable[[str], str]) -> Any:
            try:
                return self._send(endpoint, path, params, token, deadline, scrub, scopes, counter)
            except SubscriptionKeyRejected:
                if not self._use_secondary():
                    raise
                log.warning("the Nmbrs API gateway refused the primary subscription key; using the secondary key")
                return self._send(endpoint, path, params, token, deadline, scrub, scopes, counter)

        def on_retry(retry: int, wait: float, error: NmbrsError) -> None:
            with self._lock:
                self.retries += 1
            log.info("%s: %s; retry %d in %.2f s", path, error, retry, wait)

        with self._guarded(token) as scrub:
            return call_with_retry(lambda deadline: attempt(deadline, scrub), self.retry, clock=self.clock,
                                   sleep=self._sleep, rng=self._rng, on_retry=on_retry)

    def _send(self, endpoint: Endpoint, path: str, params: Mapping[str, Any], token: Secret, deadline: Deadline,
              scrub: Callable[[str], str], scopes: tuple[str, ...] | None, counter: list[int] | None) -> Any:
        headers = {"Authorization": f"Bearer {token.reveal()}", "X-Subscription-Key": self._key.reveal(),
                   "Accept": "application/json"}
        read = max(0.1, min(self.timeouts[1], deadline.remaining()))
        where = f"{REST}.{endpoint.operation}"
        unsendable: str | None = None
        response: requests.Response | None = None
        try:
            with self.gate.slot(deadline.remaining):
                with self._lock:
                    self._calls += 1
                if counter is not None:
                    counter[0] += 1
                response = self.http.get(self.app.api_base + path, params, headers, (self.timeouts[0], read))
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as exc:  # as the SOAP client: the answer of the moment
            raise TransientError(f"{where}: {type(exc).__name__}", service=REST, operation=endpoint.operation) \
                from None
        except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL, UnicodeError) as exc:
            unsendable = type(exc).__name__  # its text (and any context) may quote a header: the token or the key
        if response is None:
            raise UnknownNmbrsError(f"{where}: the request could not be written ({unsendable}: a header value or the "
                                    "URL; its text is withheld, as it may hold a secret)", service=REST,
                                    operation=endpoint.operation)
        return _answer(response, endpoint, scopes, scrub)

    def _use_secondary(self) -> bool:
        secondary = self.app.secondary_key
        with self._lock:
            if secondary is None or self._key is secondary:
                return False
            self._key = secondary
            return True

    @contextmanager
    def _guarded(self, token: Secret) -> Iterator[Callable[[str], str]]:
        values = [token.reveal(), self.app.subscription_key.reveal()]
        if self.app.secondary_key is not None:
            values.append(self.app.secondary_key.reveal())
        with ExitStack() as stack:
            scrubbers: list[Scrubber] = [stack.enter_context(guarding(v)) for v in values if v]

            def scrub(text: str) -> str:
                for scrubber in scrubbers:
                    text = scrubber(text)
                return text

            yield scrub


def _answer(response: requests.Response, endpoint: Endpoint, scopes: tuple[str, ...] | None,
            scrub: Callable[[str], str]) -> Any:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if 200 <= response.status_code < 300:
        if body is None:
            raise MalformedAnswer(f"{REST}.{endpoint.operation}: HTTP {response.status_code} without JSON",
                                  service=REST, operation=endpoint.operation)
        return body
    raise error_for_status(response.status_code, body, endpoint=endpoint, scopes=scopes,
                           retry_after=retry_after_seconds(response.headers.get("Retry-After")), scrub=scrub)


class RestConversation:
    """One connection's requests in one probe: the access token, one refresh on a 401, every page, the calls."""

    def __init__(self, client: RestClient, connection: RestCredentials) -> None:
        self.client = client
        self.connection = connection
        self.token: Secret | None = None
        self.refreshed = False
        self._counter = [0]

    @property
    def calls(self) -> int:
        return self._counter[0]

    def get(self, endpoint: Endpoint, path: str, params: Mapping[str, Any]) -> Any:
        if self.token is None:
            self.token = self.connection.access(False)
        try:
            return self._get(endpoint, path, params, self.token)
        except TokenRefused as refused:
            if self.refreshed:
                raise _refused_after_refresh(refused) from None
        self.refreshed = True
        self.token = self.connection.access(True)  # invalid_grant here is the consent: ConsentRevoked
        try:
            return self._get(endpoint, path, params, self.token)
        except TokenRefused as again:
            raise _refused_after_refresh(again) from None

    def _get(self, endpoint: Endpoint, path: str, params: Mapping[str, Any], token: Secret) -> Any:
        return self.client.get(endpoint, path, params, token, scopes=self.connection.scopes, counter=self._counter)

    def pages(self, endpoint: Endpoint, path: str) -> list[dict[str, Any]]:
        """Every row of every page (`pageSize` 100), following `nextPage` until it is null or empty."""
        rows: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            page_rows, more = read_page(self.get(endpoint, path, {"pageNumber": page, "pageSize": PAGE_SIZE}),
                                        endpoint)
            rows.extend(page_rows)
            if not more:
                return rows
        raise MalformedAnswer(f"{REST}.{endpoint.operation}: more than {MAX_PAGES} pages", service=REST,
                              operation=endpoint.operation)


def _refused_after_refresh(refused: TokenRefused) -> TransientError:
    """A 401 for a token the identity server has just issued: the refresh proved the consent alive, so this is
    the API's problem of the moment (a replica not knowing the token yet, a clock skew), never `consent_revoked`;
    only the identity server's `invalid_grant` says the consent is gone."""
    error = TransientError(f"{refused} right after a successful refresh (the consent is alive; the API refused a "
                           "fresh access token)", code=refused.code, service=refused.service,
                           operation=refused.operation)
    error.retryable = False  # not within this probe: the next check tries again
    return error


def probe_grant(settings: Settings, app: RestApp, grant: Grant, *, client: RestClient | None = None,
                now: Callable[[], datetime] = lambda: datetime.now(UTC),
                latest: list[Grant] | None = None) -> tuple[RestReach, Grant]:
    """Probe a grant that is not stored yet (a consent being finished): what it reaches, with the consenting user
    when the grant holds `user.info.read`, and the grant to store (rotated when the probe had to refresh).
    `latest`, when given, receives the newest grant the probe knows even when it fails (to revoke it then)."""
    from l1nda_sync.nmbrs.rest.grants import InMemoryGrantStore, StoredGrant, access_token
    from l1nda_sync.nmbrs.rest.probe import USER_SCOPE

    store = InMemoryGrantStore()
    store.put(0, StoredGrant(grant.refresh_token, grant.access_token, grant.expires_at, 0))

    def access(force: bool) -> Secret:
        return access_token(app, store, 0, now=now(), force_refresh=force)

    def newest() -> Grant:
        row = store.load(0)
        if row.generation == 0 or row.access_token is None or row.access_expires_at is None:
            return grant
        return Grant(row.access_token, row.access_expires_at, row.refresh_token, grant.scopes)

    rest = client or RestClient(app, settings)
    try:
        reach = rest.probe(RestCredentials(0, access, grant.scopes or None), with_user=USER_SCOPE in grant.scopes)
    finally:
        if client is None:
            rest.close()
        if latest is not None:
            latest.append(newest())
    return reach, newest()
