"""The demo's SMTP sink (real aiosmtpd over a real socket) and the demo's progress helpers."""

from __future__ import annotations

import email
import smtplib
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

from l1nda_dev.demo.console import TaskFollower
from l1nda_dev.demo.mailsink import MailSink


def _message(subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = "L1NDA Nmbrs sync <no-reply@l1nda.example>"
    msg["To"] = "support@l1nda.example"
    msg.set_content("Hallo,\n\nhet token is ingetrokken.\n")
    msg.add_alternative("<p>Hallo,</p><p>het token is <b>ingetrokken</b>.</p>", subtype="html")
    return msg


def test_every_mail_becomes_a_parseable_eml_with_its_envelope(tmp_path: Path) -> None:
    with MailSink(tmp_path / "mail") as sink, smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as smtp:
        subject = "[L1NDA] Nmbrs-token ingetrokken: Café De Zwaan (…4f5a)"
        # The second recipient is only on the envelope (like Bcc): the stored file must still name it.
        refused = smtp.send_message(_message(subject), to_addrs=["support@l1nda.example", "audit@l1nda.example"])
        smtp.send_message(_message("second"))
    assert refused == {}
    files = sorted((tmp_path / "mail").glob("*.eml"))
    assert [p.name for p in files] == [m.path.name for m in sink.stored]
    assert len(files) == 2
    assert not list((tmp_path / "mail").glob("*.part"))
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=default_policy)
    assert parsed["Subject"] == subject
    assert parsed.get_all("X-Original-To") == ["support@l1nda.example", "audit@l1nda.example"]
    assert parsed["Return-Path"] == "<no-reply@l1nda.example>"
    assert "ingetrokken" in parsed.get_body(("plain",)).get_content()
    assert "<b>ingetrokken</b>" in parsed.get_body(("html",)).get_content()
    first = sink.stored[0]
    assert first.subject == subject
    assert first.recipients == ("support@l1nda.example", "audit@l1nda.example")
    assert first.path.name.endswith("-001-l1nda-nmbrs-token-ingetrokken-caf-de-zwaan-4f5a.eml")
    assert sink.stored[1].path.name.endswith("-002-second.eml")


def test_stopped_sink_refuses_connections(tmp_path: Path) -> None:
    sink = MailSink(tmp_path).start()
    port = sink.port
    sink.stop()
    try:
        smtplib.SMTP("127.0.0.1", port, timeout=2).quit()
    except OSError:
        return
    raise AssertionError("the sink still accepts connections after stop()")


def test_task_follower_reports_tasks_as_the_log_grows(tmp_path: Path) -> None:
    log = tmp_path / "demo.log"
    log.write_text("[DAG TEST] starting task_id=old map_index=-1 (an earlier run: not reported)\n")
    seen: list[str] = []
    with TaskFollower(log, seen.append), open(log, "a") as out:
        out.write("2026 [info] [DAG TEST] starting task_id=plan map_index=-1 [airflow]\n")
        out.write("2026 [info] [DAG TEST] starting task_id=check map_index=3 [airflow]\n")
        out.write("2026 [info] [DAG TEST] starting task_id=cut")  # half a line: read once it is complete
        out.flush()
    assert seen == ["plan", "check[3]"]
