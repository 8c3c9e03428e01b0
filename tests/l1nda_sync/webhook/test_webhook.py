"""The optional webhook: events written with the change, posted to a real HTTP server, at least once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from l1nda_sync.engine.sync import SyncEngine
from l1nda_sync.pipeline import compose_hooks
from l1nda_sync.webhook import deliver, webhook_enabled
from tests.l1nda_sync.engine.story_world import LOGINS, StoryWorld


@dataclass
class Receiver:
    """An HTTP server that records POSTs and answers with `status`."""

    status: int = 200
    posts: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.posts.append((dict(self.headers), json.loads(body)))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    server = Receiver().start()
    monkeypatch.setenv("AIRFLOW_CONN_L1NDA_API", json.dumps(
        {"conn_type": "http", "host": "127.0.0.1", "port": server.port, "schema": "http"}))
    try:
        yield server
    finally:
        server.stop()


def _engine(world: StoryWorld) -> SyncEngine:
    return SyncEngine(world.url, settings=world.settings, client=world.client, hooks=compose_hooks(world.settings),
                      clock=lambda: world.now)


def test_off_without_the_connection(world: StoryWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_L1NDA_API", raising=False)
    assert not webhook_enabled()
    world.add_token("horeca")
    world.request(50101)
    _engine(world).run_once()
    assert world.link(50101)[0] == "active"
    assert world.query("SELECT count(*) FROM webhook_outbox") == [(0,)]
    conn = world.conn()
    try:
        assert deliver(conn, world.now) == {"sent": 0, "retry": 0, "failed": 0}
    finally:
        conn.close()


def test_state_changes_are_posted_in_order_with_idempotency_keys(world: StoryWorld, receiver: Receiver) -> None:
    world.add_token("horeca")
    world.request(50101)
    _engine(world).run_once()
    rows = world.query("SELECT idempotency_key::text, event, state FROM webhook_outbox ORDER BY id")
    assert [(e, s) for _k, e, s in rows] == [("token.state_changed", "pending"), ("link.state_changed", "pending")]
    conn = world.conn()
    try:
        assert deliver(conn, world.now) == {"sent": 2, "retry": 0, "failed": 0}
    finally:
        conn.close()
    assert [h["Idempotency-Key"] for h, _b in receiver.posts] == [k for k, _e, _s in rows]
    token_event, link_event = (body for _h, body in receiver.posts)
    assert token_event["event"] == "token.state_changed"
    assert (token_event["data"]["from"], token_event["data"]["to"]) == ("new", "active")
    assert link_event["data"]["to"] == "active"
    assert link_event["data"]["to_token_id"] == world.ids["horeca"]
    assert token_event["data"]["kind"] == "soap_token"
    assert (link_event["data"]["from_kind"], link_event["data"]["to_kind"]) == (None, "soap_token")
    assert LOGINS["horeca"][2] not in json.dumps(receiver.posts)
    assert world.query("SELECT count(*) FROM webhook_outbox WHERE state <> 'sent'") == [(0,)]


def test_a_failing_receiver_gets_the_same_event_again_later(world: StoryWorld, receiver: Receiver) -> None:
    world.add_token("horeca")
    world.request(50101)
    _engine(world).run_once()
    receiver.status = 503
    conn = world.conn()
    try:
        assert deliver(conn, world.now) == {"sent": 0, "retry": 1, "failed": 0}  # stops: order is kept
        assert deliver(conn, world.now) == {"sent": 0, "retry": 0, "failed": 0}  # backing off
        receiver.status = 200
        world.advance(timedelta(minutes=2))
        assert deliver(conn, world.now) == {"sent": 2, "retry": 0, "failed": 0}
    finally:
        conn.close()
    keys = [h["Idempotency-Key"] for h, _b in receiver.posts]
    assert keys[0] == keys[1], "the retry carries the same key, so the receiver can drop a repeat"
    assert len(keys) == 3
    (attempts,) = world.query("SELECT attempts FROM webhook_outbox ORDER BY id LIMIT 1")[0]
    assert attempts == 2
