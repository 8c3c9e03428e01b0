"""Delivering the outbox to a real SMTP server: outages, refusals, a crash between send and mark, one drain at
a time, and the message itself (multipart, Message-ID, threading)."""

from __future__ import annotations

from typing import Any

import psycopg2
import pytest

from l1nda_sync.alerts.outbox import MAX_ATTEMPTS, SmtpSender, drain
from l1nda_sync.backoff import backoff
from l1nda_sync.engine.token_state import Outcome
from tests.l1nda_sync.alerts.harness import HOUR, MIN, OPS, MailServer, World, probe, stopped

REACH = probe(debtors=[(1, "Jansen Holding")], companies=[(11, 1, "Bakkerij Jansen")])
CUSTOMER = "piet@klant.example"
NOTHING = {"sent": 0, "retry": 0, "failed": 0, "uncertain": 0, "dropped": 0, "busy": 0}


def _queue_two_mails(world: World) -> int:
    """Open a no-subscription problem without draining: one ops and one customer row in the outbox."""
    token = world.add_token("Bakkerij Jansen")
    world.run({token: (Outcome.VALID, REACH)}, send=False, step=0 * MIN)
    world.run({token: Outcome.NO_SUBSCRIPTION}, send=False, step=0 * MIN)
    assert [r["state"] for r in world.outbox()] == ["pending", "pending"]
    return token


def test_smtp_down_during_a_run_delivers_on_the_next_run_once(world: World, smtp: MailServer) -> None:
    token = world.add_token("Bakkerij Jansen")
    world.run({token: (Outcome.VALID, REACH)})
    with stopped(smtp):
        world.run({token: Outcome.NO_SUBSCRIPTION})
        assert world.last_drain["sent"] == 0
        assert world.last_drain["retry"] == 1, "the first row is tried, then the drain stops: the server is down"
        rows = world.outbox()
        assert [r["state"] for r in rows] == ["pending", "pending"]
        assert "cannot reach the SMTP server" in rows[0]["last_error"]
        world.run({token: Outcome.NO_SUBSCRIPTION})  # still down 10 minutes later
    assert smtp.received == []
    world.run({token: Outcome.NO_SUBSCRIPTION})
    assert smtp.tally() == {(OPS, "opened"): 1, (CUSTOMER, "opened"): 1}
    for _ in range(3):
        world.run({token: Outcome.NO_SUBSCRIPTION})
    assert len(smtp.received) == 2, "none lost, none doubled"
    assert {r["state"] for r in world.outbox()} == {"sent"}


def test_a_crash_between_sending_and_marking_is_not_resent(world: World, smtp: MailServer,
                                                           registry_url: str) -> None:
    _queue_two_mails(world)
    real = SmtpSender("smtp_default")

    def send_then_die(message: Any) -> None:
        real(message)
        raise SystemExit("the worker was killed")

    with pytest.raises(SystemExit):
        drain(world.conn, world.now, world.settings, send=send_then_die)
    real.close()
    world.conn.close()  # the process is gone
    assert len(smtp.received) == 1

    world.conn = psycopg2.connect(registry_url, options="-c timezone=UTC")
    result = drain(world.conn, world.now, world.settings)
    assert result["uncertain"] == 1
    assert result["sent"] == 1
    states = [r["state"] for r in world.outbox()]
    assert states == ["uncertain", "sent"]
    assert "may have been delivered" in world.outbox()[0]["last_error"]
    assert len(smtp.received) == 2, "each mail arrived exactly once"
    assert len({m["Message-ID"] for m in smtp.messages()}) == 2
    drain(world.conn, world.now + HOUR, world.settings)
    assert len(smtp.received) == 2


def test_a_connection_lost_while_the_server_takes_the_message_is_uncertain(world: World, smtp: MailServer) -> None:
    _queue_two_mails(world)
    smtp.mode = "drop"
    result = drain(world.conn, world.now, world.settings)
    assert result == {**NOTHING, "uncertain": 1}
    assert len(smtp.received) == 1, "the server did take it"
    smtp.mode = "ok"
    result = drain(world.conn, world.now + HOUR, world.settings)
    assert result["sent"] == 1
    assert [r["state"] for r in world.outbox()] == ["uncertain", "sent"]
    assert len(smtp.received) == 2, "the uncertain one was not sent again"


def test_a_refused_message_backs_off_then_fails(world: World, smtp: MailServer) -> None:
    _queue_two_mails(world)
    smtp.mode = "refuse"
    now = world.now
    waits = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        result = drain(world.conn, now, world.settings)
        assert result.get("retry", 0) + result.get("failed", 0) == 2
        rows = world.outbox()
        assert all(r["attempts"] == attempt for r in rows)
        assert "554" in rows[0]["last_error"]
        if attempt < MAX_ATTEMPTS:
            assert {r["state"] for r in rows} == {"pending"}
            assert drain(world.conn, now, world.settings) == NOTHING, "not due again before the backoff"
            waits.append(backoff(attempt))
            now += backoff(attempt)
    assert {r["state"] for r in world.outbox()} == {"failed"}
    assert waits[:4] == [1 * MIN, 2 * MIN, 4 * MIN, 8 * MIN]
    assert max(waits) <= HOUR
    assert smtp.received == []


def test_a_deferral_is_retried_and_delivered_once(world: World, smtp: MailServer) -> None:
    _queue_two_mails(world)
    smtp.mode = "busy"
    assert drain(world.conn, world.now, world.settings)["retry"] == 2
    smtp.mode = "ok"
    assert drain(world.conn, world.now + MIN / 2, world.settings) == NOTHING, "not before the backoff"
    assert drain(world.conn, world.now + MIN, world.settings)["sent"] == 2
    assert len(smtp.received) == 2


def test_only_one_drain_at_a_time(world: World, smtp: MailServer, registry_url: str) -> None:
    _queue_two_mails(world)
    other = psycopg2.connect(registry_url)
    try:
        with other, other.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(hashtextextended('l1nda-outbox-drain', 0))")
        assert drain(world.conn, world.now, world.settings) == {**NOTHING, "busy": 1}
        assert [r["state"] for r in world.outbox()] == ["pending", "pending"], "a busy drain touches nothing"
    finally:
        other.close()  # a dead drainer's lock goes with its connection
    _wait_until_no_advisory_lock(world.conn)
    assert drain(world.conn, world.now, world.settings)["sent"] == 2


def _wait_until_no_advisory_lock(conn, timeout: float = 10.0) -> None:
    """The server ends a closed session's backend (and its locks) a moment after the client hung up."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = "
                        "(SELECT oid FROM pg_database WHERE datname = current_database())")
            if cur.fetchone()[0] == 0:
                return
        assert time.monotonic() < deadline, "the closed session's advisory lock was never released"
        time.sleep(0.01)


def test_message_shape_ids_and_threading(world: World, smtp: MailServer) -> None:
    token = _queue_two_mails(world)
    world.sweep_and_send()
    world.run({token: (Outcome.VALID, REACH)})
    world.advance(HOUR)
    world.sweep_and_send()
    rows = world.outbox()
    assert [(r["event"], r["audience"]) for r in rows] == [
        ("opened", "ops"), ("opened", "customer"), ("resolved", "ops"), ("resolved", "customer")]
    by_id = {m["Message-ID"]: m for m in smtp.messages()}
    assert set(by_id) == {r["message_id"] for r in rows}, "each row went out with its own Message-ID"
    for row in rows:
        message = by_id[row["message_id"]]
        assert message.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["To"] == ", ".join(row["recipients"])
    ops_resolved = by_id[rows[2]["message_id"]]
    assert ops_resolved["In-Reply-To"] == rows[0]["message_id"], "the recovery mail threads under the opening"
    customer = by_id[rows[1]["message_id"]]
    assert customer["Reply-To"] == OPS, "customers reply to support, not to the no-reply sender"


def test_a_refused_recipient_does_not_stop_the_others(world: World, smtp: MailServer) -> None:
    token = world.add_token("Bakkerij Jansen", contacts=["unknown@klant.example", CUSTOMER])
    world.run({token: (Outcome.VALID, REACH)})
    world.run({token: Outcome.NO_SUBSCRIPTION})
    assert smtp.tally() == {(OPS, "opened"): 1, (CUSTOMER, "opened"): 1}
    customer_row = world.outbox()[1]
    assert customer_row["state"] == "sent"
    assert "unknown@klant.example" in customer_row["last_error"], "the refusal is kept for people to see"


def test_subject_with_the_masked_token_is_not_folded_into_a_double_space() -> None:
    from email.message import EmailMessage

    from l1nda_sync.alerts.outbox import WIRE_POLICY

    message = EmailMessage()
    message["Subject"] = "[L1NDA] Nmbrs token lost 1 linked company: Horeca office (…b8a9)"
    message.set_content("x")
    raw = message.as_bytes(policy=WIRE_POLICY)
    header = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    subject_lines = [line for line in header.split("\r\n") if line.startswith(("Subject:", " ", "\t"))]
    assert len(subject_lines) == 1, subject_lines
