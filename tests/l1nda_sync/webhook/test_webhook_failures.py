"""Webhook events against a real HTTP receiver answering 4xx, 5xx, 408, 429 or not there at all: nothing is
dropped silently, order is kept for transient failures, a permanently refused event is parked and reported."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg2
import pytest

from l1nda_sync.alerts.sweep import sweep
from l1nda_sync.webhook import deliver
from tests.l1nda_sync.alerts.conftest import smtp  # noqa: F401 - fixture
from tests.l1nda_sync.alerts.harness import HOUR, MIN, OPS, T0, MailServer, free_port, test_settings


class Receiver:
    """Answers each POST with the next status of `script` (200 once it is empty); `posts` keeps (key, id)."""

    def __init__(self) -> None:
        self.script: list[int] = []
        self.posts: list[tuple[str, int]] = []
        self.port = free_port()
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                status = receiver.script.pop(0) if receiver.script else 200
                receiver.posts.append((self.headers["Idempotency-Key"], body["data"]["n"], status))
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "120")
                payload = b'{"error": "unknown link"}' if status == 422 else b""
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def delivered(self) -> list[int]:
        return [n for _k, n, status in self.posts if 200 <= status < 300]


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    server = Receiver().start()
    monkeypatch.setenv("AIRFLOW_CONN_L1NDA_API", json.dumps(
        {"conn_type": "http", "host": "127.0.0.1", "port": server.port, "schema": "http"}))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def conn(registry_url: str) -> Iterator[Any]:
    connection = psycopg2.connect(registry_url, options="-c timezone=UTC")
    try:
        yield connection
    finally:
        connection.close()


def queue(conn: Any, *numbers: int) -> None:
    with conn, conn.cursor() as cur:
        for n in numbers:
            cur.execute("INSERT INTO webhook_outbox (event, payload, next_attempt_at) VALUES "
                        "('link.state_changed', %s::jsonb, %s)", (json.dumps({"n": n}), T0))


def states(conn: Any) -> list[tuple[int, str]]:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT (payload->>'n')::int, state FROM webhook_outbox ORDER BY id")
        return cur.fetchall()


def due(conn: Any) -> Any:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT next_attempt_at FROM webhook_outbox WHERE state = 'pending' ORDER BY id LIMIT 1")
        return cur.fetchone()[0]


@pytest.mark.parametrize("status", [400, 404, 410, 422])
def test_a_permanent_refusal_parks_that_event_and_later_events_go_on(conn: Any, receiver: Receiver,
                                                                     status: int) -> None:
    queue(conn, 1, 2, 3)
    receiver.script = [200, status]
    assert deliver(conn, T0) == {"sent": 2, "retry": 0, "failed": 1}
    assert states(conn) == [(1, "sent"), (2, "failed"), (3, "sent")]
    assert receiver.delivered() == [1, 3]
    with conn, conn.cursor() as cur:
        cur.execute("SELECT last_error FROM webhook_outbox WHERE state = 'failed'")
        assert cur.fetchone()[0].startswith(f"HTTP {status}")
    assert deliver(conn, T0 + 10 * HOUR) == {"sent": 0, "retry": 0, "failed": 0}, "a parked event is not retried"


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429, "down"])
def test_transient_failures_retry_in_order_for_as_long_as_it_takes(conn: Any, receiver: Receiver,
                                                                   status: int | str) -> None:
    queue(conn, 1, 2)
    if status == "down":
        receiver.stop()
    else:
        receiver.script = [status] * 30
    now, waits = T0, []
    for _attempt in range(30):  # more than the 20 attempts after which events used to be marked failed
        result = deliver(conn, now)
        assert result == {"sent": 0, "retry": 1, "failed": 0}, result
        assert states(conn) == [(1, "pending"), (2, "pending")], "never given up, and 2 waits behind 1"
        waits.append(due(conn) - now)
        assert deliver(conn, now) == {"sent": 0, "retry": 0, "failed": 0}, "not before its backoff"
        now = due(conn)
    if status != 429:
        assert waits[:4] == [1 * MIN, 2 * MIN, 4 * MIN, 8 * MIN]
    else:
        assert waits[0] == 2 * MIN, "Retry-After: 120 is honoured"
    assert max(waits) == HOUR, "the backoff is capped at an hour"
    if status == "down":
        receiver.start()
    assert deliver(conn, now) == {"sent": 2, "retry": 0, "failed": 0}
    assert receiver.delivered() == [1, 2], "in order"
    keys = {k for k, n, _s in receiver.posts if n == 1}
    assert len(keys) == 1, "every retry carries the same Idempotency-Key"


def test_ops_get_one_problem_for_a_parked_event_and_for_a_long_failure(conn: Any, receiver: Receiver,
                                                                       smtp: MailServer) -> None:  # noqa: F811
    settings = test_settings(webhook_failing_after=3600.0)
    queue(conn, 1, 2)
    receiver.script = [422]
    deliver(conn, T0)
    sweep(conn, T0, settings)
    from l1nda_sync.alerts.outbox import drain

    drain(conn, T0, settings)
    [mail] = smtp.messages()
    assert mail["To"] == OPS
    assert str(mail["Subject"]) == "[L1NDA] L1NDA platform webhook failing: 1 event(s) parked"
    text = mail.get_body(("plain",)).get_content()
    assert "HTTP 422" in text
    assert "l1nda-sync outbox requeue webhook:" in text

    # Now the receiver fails for an hour and more: the same problem stays open, no second one, no new mail.
    queue(conn, 3)
    receiver.script = [503] * 100
    now = T0
    while now < T0 + 2 * HOUR:
        deliver(conn, now)
        sweep(conn, now, settings)
        drain(conn, now, settings)
        now += 5 * MIN
    with conn, conn.cursor() as cur:
        cur.execute("SELECT kind, state, detail->'stalled'->>'event' FROM problems")
        assert cur.fetchall() == [("webhook_failing", "open", "link.state_changed")]
    assert len(smtp.messages()) == 1


def test_a_long_failure_alone_opens_the_problem_after_the_span_and_clears_when_delivery_resumes(
        conn: Any, receiver: Receiver, smtp: MailServer) -> None:  # noqa: F811
    from l1nda_sync.alerts.outbox import drain

    settings = test_settings(webhook_failing_after=3600.0, problem_quiet_period=0.0)
    queue(conn, 1)
    receiver.script = [503] * 100
    now = T0

    def tick() -> None:
        deliver(conn, now)
        sweep(conn, now, settings)
        drain(conn, now, settings)

    while now < T0 + HOUR - MIN:
        tick()
        now += 5 * MIN
    assert smtp.messages() == [], "not within the first hour"
    while not smtp.messages() and now < T0 + 3 * HOUR:
        tick()
        now += 5 * MIN
    [opened] = smtp.messages()
    assert "L1NDA platform webhook failing" in str(opened["Subject"])
    assert "Delivery has been failing since 2026-11-23 08:00 UTC" in opened.get_body(("plain",)).get_content()
    assert now - T0 <= HOUR + 20 * MIN, "reported soon after the span"
    receiver.script = []
    now += HOUR  # the next retry is due within the hour
    tick()
    tick()
    assert receiver.delivered() == [1]
    assert [m["X-L1NDA-Event"] for m in smtp.messages()] == ["opened", "resolved"]


def test_the_span_is_a_setting() -> None:
    from l1nda_sync.settings import Settings, SettingsError

    assert Settings.load({}, use_airflow=False).webhook_failing_after == 3600.0
    assert Settings.load({"L1NDA_WEBHOOK_FAILING_AFTER": "600"}, use_airflow=False).webhook_failing_after == 600.0
    with pytest.raises(SettingsError, match="L1NDA_WEBHOOK_FAILING_AFTER"):
        Settings.load({"L1NDA_WEBHOOK_FAILING_AFTER": "soon"}, use_airflow=False)


