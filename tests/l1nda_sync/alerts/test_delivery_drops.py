"""Mails against an SMTP server that drops the line at each protocol step, and senders killed mid-drain:
nothing lost (a mail not handed over is sent again), nothing doubled (a mail that may have arrived is not),
and what needs a person is an `outbox_stuck` problem mailed to operations."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from l1nda_sync.alerts import store
from l1nda_sync.alerts.outbox import CLAIM_LEASE, drain
from l1nda_sync.alerts.sweep import sweep
from l1nda_sync.alerts.tracker import new_message_id
from tests.conftest import REPO_ROOT
from tests.l1nda_sync.alerts.harness import HOUR, MIN, OPS, T0, MailServer, test_settings
from tests.l1nda_sync.alerts.smtp_raw import RawSmtp

SETTINGS = test_settings()


@pytest.fixture
def raw(monkeypatch: pytest.MonkeyPatch) -> Iterator[RawSmtp]:
    server = RawSmtp().start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", server.connection_json)
    try:
        yield server
    finally:
        server.stop()


def queue(conn: Any, subject: str = "Test mail") -> int:
    with conn, conn.cursor() as cur:
        return store.insert_outbox(cur, problem_id=None, event="opened", audience="ops", language="en",
                                   recipients=[OPS], subject=subject, body_text="hello\n" * 80,
                                   body_html="<p>hello</p>", message_id=new_message_id(), now=T0)


def row(conn: Any, row_id: int) -> dict[str, Any]:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT state, attempts, handover_at, last_error FROM outbox WHERE id = %s", (row_id,))
        return dict(zip(("state", "attempts", "handover_at", "last_error"), cur.fetchone(), strict=True))


def problem_mails(smtp: MailServer) -> list[Any]:
    return [m for m in smtp.messages() if m["X-L1NDA-Problem"]]


@pytest.mark.parametrize("point", ["ehlo", "mail", "rcpt", "data"])
def test_a_line_dropped_before_the_354_is_retried_and_delivered_once(conn: Any, raw: RawSmtp, point: str) -> None:
    mail = queue(conn)
    raw.fail_at = point
    result = drain(conn, T0, SETTINGS)
    assert (result["retry"], result["uncertain"]) == (1, 0), result
    first = row(conn, mail)
    assert (first["state"], first["handover_at"]) == ("pending", None), "nothing was handed over"
    assert "before the message was handed over" in first["last_error"]
    assert raw.complete == []
    assert drain(conn, T0, SETTINGS)["sent"] == 0, "waits out its backoff"
    assert drain(conn, T0 + MIN, SETTINGS)["sent"] == 1
    assert row(conn, mail)["state"] == "sent"
    assert row(conn, mail)["handover_at"] is not None
    drain(conn, T0 + HOUR, SETTINGS)
    assert (len(raw.accepted), len(raw.complete)) == (1, 1), "lost 0, doubled 0"


@pytest.mark.parametrize(("point", "arrived"), [("body", 0), ("before_250", 1)])
def test_a_line_dropped_after_the_354_is_uncertain_and_never_resent(conn: Any, raw: RawSmtp, point: str,
                                                                  arrived: int) -> None:
    mail, other = queue(conn), queue(conn, "Second mail")
    raw.fail_at = point
    result = drain(conn, T0, SETTINGS)
    assert (result["uncertain"], result["sent"]) == (1, 0), result
    assert row(conn, mail)["state"] == "uncertain"
    assert row(conn, mail)["handover_at"] is not None
    assert len(raw.complete) == arrived
    assert drain(conn, T0 + MIN, SETTINGS)["sent"] == 1, "the next mail goes out"
    assert row(conn, other)["state"] == "sent"
    for step in (HOUR, 25 * HOUR):
        drain(conn, T0 + step, SETTINGS)
    assert row(conn, mail)["state"] == "uncertain"
    assert len(raw.complete) == arrived + 1, "the uncertain mail was never sent again"


def test_a_line_dropped_after_the_250_counts_as_sent(conn: Any, raw: RawSmtp) -> None:
    mail = queue(conn)
    raw.fail_at = "before_quit"
    assert drain(conn, T0, SETTINGS)["sent"] == 1
    drain(conn, T0 + HOUR, SETTINGS)
    assert row(conn, mail)["state"] == "sent"
    assert len(raw.accepted) == 1


def test_a_server_that_never_greets_times_out_and_the_mail_waits(conn: Any, monkeypatch: pytest.MonkeyPatch,
                                                                 raw: RawSmtp) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(
        {**json.loads(raw.connection_json), "extra": {**json.loads(raw.connection_json)["extra"], "timeout": 1}}))
    mail = queue(conn)
    raw.fail_at = "greeting"
    assert drain(conn, T0, SETTINGS)["retry"] == 1
    raw.release.set()
    assert row(conn, mail)["state"] == "pending"
    assert drain(conn, T0 + MIN, SETTINGS)["sent"] == 1
    assert len(raw.accepted) == 1


_DRAIN_SCRIPT = """
import sys
from datetime import datetime
import psycopg2
from l1nda_sync.alerts.outbox import drain
from tests.l1nda_sync.alerts.harness import test_settings
conn = psycopg2.connect(sys.argv[1], options="-c timezone=UTC")
drain(conn, datetime.fromisoformat(sys.argv[2]), test_settings())
"""


def _kill_a_drain_at(point: str, raw: RawSmtp, registry_url: str) -> None:
    """Run a real drain in another process, wait until the server reached `point`, kill -9 the process."""
    raw.fail_at = point
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *sys.path])}
    proc = subprocess.Popen([sys.executable, "-c", _DRAIN_SCRIPT, registry_url, T0.isoformat()], env=env,
                            cwd=REPO_ROOT)
    try:
        assert raw.reached.wait(120), "the drain never reached the server"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    raw.release.set()


def test_a_sender_killed_before_the_greeting_loses_nothing(conn: Any, raw: RawSmtp, registry_url: str) -> None:
    mail = queue(conn)
    _kill_a_drain_at("greeting", raw, registry_url)
    assert row(conn, mail)["state"] == "sending"
    assert row(conn, mail)["handover_at"] is None
    result = drain(conn, T0 + MIN, SETTINGS)
    assert (result["uncertain"], result["sent"]) == (0, 0), "its claim holds until it expires"
    assert row(conn, mail)["state"] == "sending"
    result = drain(conn, T0 + CLAIM_LEASE, SETTINGS)
    assert result == {**result, "uncertain": 0, "sent": 1}, result
    assert row(conn, mail)["state"] == "sent"
    drain(conn, T0 + 2 * CLAIM_LEASE, SETTINGS)
    assert len(raw.accepted) == 1, "lost 0, doubled 0"


def test_a_sender_killed_while_the_server_takes_the_body_is_uncertain(conn: Any, raw: RawSmtp,
                                                                     registry_url: str) -> None:
    mail = queue(conn)
    _kill_a_drain_at("body_hang", raw, registry_url)
    assert len(raw.complete) == 1, "the server has the message"
    assert row(conn, mail)["handover_at"] is not None
    assert drain(conn, T0 + CLAIM_LEASE, SETTINGS)["uncertain"] == 1
    drain(conn, T0 + 2 * CLAIM_LEASE, SETTINGS)
    assert row(conn, mail)["state"] == "uncertain"
    assert len(raw.complete) == 1, "not sent twice"


def test_uncertain_and_failed_mails_are_one_problem_with_a_daily_reminder(conn: Any, smtp: MailServer) -> None:
    mail = queue(conn)
    smtp.mode = "drop"
    drain(conn, T0, SETTINGS)
    smtp.mode = "ok"
    assert row(conn, mail)["state"] == "uncertain"
    now = T0 + MIN
    sweep(conn, now, SETTINGS)
    drain(conn, now, SETTINGS)
    ops = problem_mails(smtp)
    assert [m["X-L1NDA-Event"] for m in ops] == ["opened"]
    assert str(ops[0]["Subject"]) == "[L1NDA] Alert mails need a decision: 1 uncertain, 0 failed"
    assert ops[0]["To"] == OPS
    body = ops[0].get_body(("plain",)).get_content()
    assert f"mail {mail} (uncertain" in body
    assert "l1nda-sync outbox resend" in body
    for hours in (1, 12, 23):  # nothing more within the day
        sweep(conn, now + hours * HOUR, SETTINGS)
        drain(conn, now + hours * HOUR, SETTINGS)
    assert [m["X-L1NDA-Event"] for m in problem_mails(smtp)[1:]] == []
    sweep(conn, now + 24 * HOUR, SETTINGS)
    drain(conn, now + 24 * HOUR, SETTINGS)
    assert [m["X-L1NDA-Event"] for m in problem_mails(smtp)[1:]] == ["reminder"]
    with conn, conn.cursor() as cur:  # an operator settles it (the CLI's drop, tested in tests/l1nda_sync/cli)
        cur.execute("UPDATE outbox SET state = 'dropped' WHERE id = %s", (mail,))
    later = now + 25 * HOUR
    sweep(conn, later, SETTINGS)
    sweep(conn, later + HOUR, SETTINGS)
    drain(conn, later + HOUR, SETTINGS)
    assert [m["X-L1NDA-Event"] for m in problem_mails(smtp)[1:]] == ["reminder", "resolved"]
    with conn, conn.cursor() as cur:
        cur.execute("SELECT kind, state FROM problems")
        assert cur.fetchall() == [("outbox_stuck", "resolved")]
