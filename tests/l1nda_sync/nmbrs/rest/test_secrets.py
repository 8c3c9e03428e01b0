"""No secret in an exception, a repr or a log line: neither in a whole consent flow against the simulator (DEBUG
logging on for everything) nor when a server echoes the secrets back (a stub server, since the simulator's
`echo_token` fault is SOAP-only): the client secret, subscription keys, code, verifier, access and refresh tokens."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote

import pytest

from l1nda_sync.masking import Secret
from l1nda_sync.nmbrs.errors import ConsentRevoked, NmbrsError
from l1nda_sync.nmbrs.rest import oauth
from l1nda_sync.nmbrs.rest.client import RestClient
from l1nda_sync.nmbrs.rest.config import RestApp
from l1nda_sync.nmbrs.rest.records import RestCredentials
from l1nda_sync.nmbrs.retry import RetryPolicy
from l1nda_sync.settings import Settings
from nmbrs_sim.testing import RunningSim
from tests.l1nda_sync.nmbrs.rest.conftest import (
    APP_KEY,
    APP_KEY_2,
    APP_SECRET,
    BUSINESS,
    SimClock,
    connect,
    consent_id,
)

ACCESS = "eyJhbGciOiJSUzI1NiJ9.access-Plain-7f3a9c"
REFRESH = "RT-9b8a7c6d5e4f3a2b1c0d"


def _assert_hidden(texts: list[str], secrets: list[str]) -> None:
    joined = "\n".join(texts)
    for secret in secrets:
        for form in (secret, secret.upper(), quote(secret, safe="")):
            assert form not in joined, f"a secret ({secret[-4:]}) leaked"


def _error_texts(error: NmbrsError) -> list[str]:
    return [str(error), repr(error), str(error.text), str(getattr(error, "description", "")),
            str(error.args)]


class Echo(BaseHTTPRequestHandler):
    """Answers every request with an error that quotes what the request carried."""

    def log_message(self, *_: object) -> None:
        return

    def _send(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
        echoed = f"{form} auth={self.headers.get('Authorization')} secret={APP_SECRET.upper()}"
        self._send(400, {"error": "invalid_grant", "error_description": echoed})

    def do_GET(self) -> None:
        echoed = (f"bearer={self.headers.get('Authorization')} key={self.headers.get('X-Subscription-Key')} "
                  f"{quote(ACCESS, safe='')}")
        status = 403 if "companies" in self.path else 500
        self._send(status, {"type": "apiError", "httpStatus": status, "code": 40303 if status == 403 else 50001,
                            "title": "Echo", "detail": echoed})


@pytest.fixture
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_echoed_secrets_are_masked_in_errors_and_logs(echo: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app = RestApp(echo, echo, "PartnerApp_L1NDA_demo", Secret(APP_SECRET), Secret(APP_KEY), Secret(APP_KEY_2),
                  "http://127.0.0.1:8090/nmbrs/callback")
    texts: list[str] = []
    with pytest.raises(NmbrsError) as refused:
        oauth.refresh(app, Secret(REFRESH), now=datetime.now(UTC))
    assert refused.value.error == "invalid_grant"  # type: ignore[attr-defined]
    assert "…" in str(refused.value)  # the echo is kept, masked
    texts += _error_texts(refused.value)
    with pytest.raises(NmbrsError) as code_refused:
        oauth.exchange_code(app, Secret("code-Plain-123456"), Secret("verifier-Plain-abcdefghijklmnopqrstuvwxyz0123"),
                            now=datetime.now(UTC))
    texts += _error_texts(code_refused.value)
    client = RestClient(app, Settings(nmbrs_read_timeout=5.0), retry=RetryPolicy(attempts=2, base_delay=0.0,
                                                                                 max_delay=0.0))
    credentials = RestCredentials(1, lambda force: Secret(ACCESS), None)
    with pytest.raises(NmbrsError) as failed:
        client.probe(credentials)
    assert failed.value.code == 50001
    assert failed.value.calls == 2
    texts += _error_texts(failed.value)
    texts += [r.getMessage() for r in caplog.records] + [caplog.text]
    basic = base64.b64encode(f"PartnerApp_L1NDA_demo:{quote(APP_SECRET, safe='')}".encode()).decode()
    _assert_hidden(texts, [APP_SECRET, APP_KEY, APP_KEY_2, ACCESS, REFRESH, "code-Plain-123456",
                           "verifier-Plain-abcdefghijklmnopqrstuvwxyz0123", basic])
    assert any("retry" in r.getMessage() for r in caplog.records)  # the retry was logged, masked


def test_a_whole_flow_logs_and_raises_no_secret(sim: RunningSim, clock: SimClock, caplog: pytest.LogCaptureFixture
                                               ) -> None:
    from tests.l1nda_sync.nmbrs.rest.conftest import rest_app

    caplog.set_level(logging.DEBUG)
    app = rest_app(sim)
    request = oauth.start_authorization(app)
    conn = connect(sim, app, BUSINESS, clock)
    first = conn.store.load(1)
    clock.advance(3600)
    client = RestClient(app, Settings(nmbrs_read_timeout=5.0))
    client.probe(conn.credentials, with_user=True)
    rotated = conn.store.load(1)
    sim.admin.inject_fault("too_many_calls", path="/api/debtors", count=1)
    sim.admin.withdraw_consent(consent_id(sim, BUSINESS))
    with pytest.raises(ConsentRevoked) as revoked:
        client.probe(conn.credentials)
    secrets = [APP_SECRET, APP_KEY, request.state.reveal(), request.code_verifier.reveal()]
    for row in (first, rotated):
        secrets += [s.reveal() for s in (row.access_token, row.refresh_token) if s is not None]
    texts = _error_texts(revoked.value) + [r.getMessage() for r in caplog.records] + [caplog.text]
    texts += [repr(app), repr(first), repr(rotated), repr(conn.credentials), repr(client)]
    _assert_hidden(texts, secrets)
    assert any("/api/debtors" in r.getMessage() for r in caplog.records)  # DEBUG logging did run
