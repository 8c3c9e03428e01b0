"""`l1nda-sync outbox list|resend|requeue|drop` through the real entry point, against a real registry and SMTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import psycopg2
import pytest

from l1nda_sync.alerts import store
from l1nda_sync.alerts.outbox import drain
from l1nda_sync.alerts.tracker import new_message_id
from tests.l1nda_sync.alerts.conftest import smtp  # noqa: F401 - fixture
from tests.l1nda_sync.alerts.harness import HOUR, OPS, T0, MailServer, test_settings
from tests.l1nda_sync.cli.conftest import Cli


def _sql(url: str, sql: str, *args: Any) -> list[tuple]:
    conn = psycopg2.connect(url, options="-c timezone=UTC")
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


@pytest.fixture
def stuck(registry_url: str, smtp: MailServer) -> dict[str, int]:  # noqa: F811
    """One uncertain mail (the line dropped after the server took it), one failed mail, one parked event."""
    conn = psycopg2.connect(registry_url, options="-c timezone=UTC")
    try:
        ids = {}
        for name in ("uncertain", "failed"):
            with conn, conn.cursor() as cur:
                ids[name] = store.insert_outbox(
                    cur, problem_id=None, event="opened", audience="ops", language="en", recipients=[OPS],
                    subject=f"mail that is {name}", body_text="x\n", body_html="<p>x</p>",
                    message_id=new_message_id(), now=T0)
        smtp.mode = "drop"
        drain(conn, T0, test_settings())  # the first: uncertain, the drain stops there
        smtp.mode = "ok"
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE outbox SET state = 'failed', last_error = '554 refused' WHERE id = %s",
                        (ids["failed"],))
            cur.execute("""INSERT INTO webhook_outbox (event, payload, state, last_error)
                           VALUES ('link.state_changed', '{}', 'failed', 'HTTP 422') RETURNING id""")
            ids["webhook"] = cur.fetchone()[0]
        smtp.clear()
        return ids
    finally:
        conn.close()


def test_list_shows_what_needs_a_person(cli: Cli, stuck: dict[str, int]) -> None:
    result = cli("outbox", "list")
    assert result.code == 0, result.err
    assert f"mail:{stuck['uncertain']}" in result.out
    assert f"mail:{stuck['failed']}" in result.out
    assert f"webhook:{stuck['webhook']}" in result.out
    shown = cli("outbox", "list", "--json").json
    assert [(r["id"], r["state"]) for r in shown] == [
        (f"mail:{stuck['uncertain']}", "uncertain"), (f"mail:{stuck['failed']}", "failed"),
        (f"webhook:{stuck['webhook']}", "failed")]
    only = cli("outbox", "list", "--state", "uncertain", "--kind", "mail", "--json").json
    assert [r["id"] for r in only] == [f"mail:{stuck['uncertain']}"]
    assert cli("outbox", "list", "--state", "sent").out.startswith("nothing sent")


def test_resend_asks_first_and_then_sends_once(cli: Cli, stuck: dict[str, int], smtp: MailServer,  # noqa: F811
                                               registry_url: str) -> None:
    mail = stuck["uncertain"]
    declined = cli("outbox", "resend", str(mail), stdin="n\n")
    assert declined.code == 1
    assert "may already have arrived" in declined.err
    assert _sql(registry_url, "SELECT state FROM outbox WHERE id = %s", mail) == [("uncertain",)]
    done = cli("outbox", "resend", f"mail:{mail}", stdin="yes\n")
    assert done.code == 0, done.err
    assert _sql(registry_url, "SELECT state FROM outbox WHERE id = %s", mail) == [("pending",)]
    assert cli("outbox", "resend", str(stuck["failed"]), "--yes").code == 0
    conn = psycopg2.connect(registry_url, options="-c timezone=UTC")
    try:
        now = datetime.now(UTC)  # resend makes the row due at the wall clock's now
        assert drain(conn, now, test_settings())["sent"] == 2
        drain(conn, now + HOUR, test_settings())
    finally:
        conn.close()
    assert len(smtp.received) == 2, "each sent once more, and only once"
    again = cli("outbox", "resend", str(mail), "--yes")
    assert (again.code, "is sent" in again.err) == (2, True)


def test_requeue_and_drop_a_webhook_event(cli: Cli, stuck: dict[str, int], registry_url: str) -> None:
    event = stuck["webhook"]
    assert cli("outbox", "requeue", f"webhook:{event}").code == 0, "no question for an event"
    assert _sql(registry_url, "SELECT state, attempts FROM webhook_outbox WHERE id = %s", event) == [("pending", 0)]
    dropped = cli("outbox", "drop", f"webhook:{event}", "--reason", "platform deleted the link")
    assert dropped.code == 0, dropped.err
    assert _sql(registry_url, "SELECT state, dropped_reason, dropped_by IS NOT NULL FROM webhook_outbox "
                              "WHERE id = %s", event) == [("dropped", "platform deleted the link", True)]
    assert cli("outbox", "drop", str(stuck["uncertain"]), "--reason", "arrived; checked").code == 0
    left = cli("outbox", "list", "--json").json
    assert [(r["id"], r["state"]) for r in left] == [(f"mail:{stuck['failed']}", "failed")]


BAD = [
    (("outbox", "resend", "abc", "--yes"), "argument ID"),
    (("outbox", "resend", "mail:0", "--yes"), "argument ID"),
    (("outbox", "requeue", "sms:3"), "argument ID"),
    (("outbox", "drop", "1"), "--reason"),
    (("outbox", "drop", "1", "--reason", "   "), "argument --reason"),
    (("outbox", "drop", "1", "--reason", "x" * 501), "argument --reason"),
    (("outbox", "list", "--state", "lost"), "argument --state"),
    (("outbox", "list", "--kind", "fax"), "argument --kind"),
    (("outbox", "resend", "999999", "--yes"), "ID: no mail 999999"),
    (("outbox", "drop", "webhook:999999", "--reason", "gone"), "ID: no webhook 999999"),
]


@pytest.mark.parametrize(("argv", "named"), BAD)
def test_bad_input_exits_2_naming_the_argument_and_writes_nothing(cli: Cli, stuck: dict[str, int],
                                                                  registry_url: str, argv: tuple[str, ...],
                                                                  named: str, capsys: Any) -> None:
    before = _sql(registry_url, "SELECT id, state, attempts FROM outbox UNION ALL "
                                "SELECT -id, state, attempts FROM webhook_outbox ORDER BY 1")
    result = cli(*argv)
    assert result.code == 2
    assert named in result.err
    after = _sql(registry_url, "SELECT id, state, attempts FROM outbox UNION ALL "
                               "SELECT -id, state, attempts FROM webhook_outbox ORDER BY 1")
    assert after == before


def test_json_error_names_the_field(cli: Cli, stuck: dict[str, int]) -> None:
    result = cli("outbox", "drop", "999999", "--reason", "gone", "--json")
    assert result.code == 2
    assert json.loads(result.out)["error"]["field"] == "ID"
