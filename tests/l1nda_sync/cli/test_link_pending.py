"""A link no token reaches stays pending visibly: `links list` says why, and operations get one `link_pending`
problem (and mail) once it has waited longer than `link_pending_after`. Against a real registry."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from l1nda_sync.alerts import link_pending
from l1nda_sync.registry import db
from l1nda_sync.settings import Settings

TOKEN = "9f86d081884c7d659a2feaa0c55ad015"


def _settings() -> Settings:
    return dataclasses.replace(Settings.load(use_airflow=False), ops_recipients=("ops@l1nda.example",),
                               link_pending_after=86400.0, problem_quiet_period=3600.0, reminder_interval=86400.0)


def _now(conn):
    with db.reading(conn) as cur:
        cur.execute("SELECT now()")
        return cur.fetchone()[0]


def test_links_list_says_why_a_link_is_pending(cli, registry_url) -> None:
    assert cli("links", "request", "--customer", "CUST-KOK", "--company", "123").code == 0
    assert cli("links", "request", "--customer", "CUST-ANKER", "--company", "456").code == 0
    assert cli("tokens", "add", "--no-check", "--label", "T", "--level", "debtor", "--username", "a@b.nl",
               "--contact", "c@d.nl", stdin=TOKEN).code == 0
    conn = db.connect(registry_url)
    try:
        with db.transaction(conn) as cur:
            cur.execute("UPDATE tokens SET state = 'revoked'")
            cur.execute("INSERT INTO reach_companies (token_id, company_id) VALUES (1, 456)")
    finally:
        conn.close()
    listed = cli("links", "list")
    assert listed.code == 0
    assert "no registered token reaches company 123" in listed.out
    assert "reached only by token 1 (revoked), which is not active" in listed.out
    as_json = {lk["company_id"]: lk["why_pending"] for lk in cli("links", "list", "--json").json}
    assert as_json[123].startswith("no registered token reaches company 123")


def test_a_link_pending_too_long_opens_one_problem_mails_ops_once_and_resolves(cli, registry_url) -> None:
    assert cli("links", "request", "--customer", "CUST-KOK", "--company", "50701").code == 0
    assert cli("links", "request", "--customer", "CUST-KOK", "--company", "50702").code == 0
    settings = _settings()
    conn = db.connect(registry_url)
    try:
        now = _now(conn)
        assert link_pending.evaluate(conn, now + timedelta(hours=23), settings) == {}  # not yet a day
        later = now + timedelta(days=1, minutes=1)
        assert link_pending.evaluate(conn, later, settings) == {"open": 1, "mailed": 1}
        assert link_pending.evaluate(conn, later + timedelta(minutes=10), settings) == {"seen": 1}  # no 2nd mail
        with db.reading(conn) as cur:
            cur.execute("SELECT id, kind, token_id, detail->'links' FROM problems WHERE state = 'open'")
            (problem_id, kind, token_id, count), = cur.fetchall()
            assert (kind, token_id, count) == ("link_pending", None, 2)
            cur.execute("SELECT recipients, subject, body_text, body_html FROM outbox")
            (recipients, subject, text, html), = cur.fetchall()
        assert recipients == ["ops@l1nda.example"]
        assert subject == "[L1NDA] 2 requested links have been pending for more than 24 hours"
        assert "no registered token reaches company 50701" in text
        assert "customer CUST-KOK, company 50702" in text
        assert f"l1nda-sync problems mute {problem_id}" in text
        assert "company 50701" in html
        # A day later the problem is still there: one reminder, not a new problem.
        assert link_pending.evaluate(conn, later + timedelta(days=1, minutes=1), settings) == {
            "seen": 1, "mailed": 1}
        # Both links cancelled: the cause clears, and after the quiet period it resolves with one mail.
        assert cli("links", "cancel", "1").code == 0
        assert cli("links", "cancel", "2").code == 0
        gone = later + timedelta(days=1, hours=1)
        assert link_pending.evaluate(conn, gone, settings) == {"clear": 1}
        assert link_pending.evaluate(conn, gone + timedelta(hours=1, minutes=1), settings) == {
            "resolve": 1, "mailed": 1}
        with db.reading(conn) as cur:
            cur.execute("SELECT state FROM problems")
            assert [r[0] for r in cur.fetchall()] == ["resolved"]
            cur.execute("SELECT event, subject FROM outbox ORDER BY id")
            events = cur.fetchall()
        assert [e for e, _ in events] == ["opened", "reminder", "resolved"]
        assert events[2][1] == "[L1NDA] Resolved \u2013 no requested link is waiting any more"
    finally:
        conn.close()


def test_zero_turns_it_off_and_dutch_mails_render(cli, registry_url) -> None:
    assert cli("links", "request", "--customer", "CUST-KOK", "--company", "50701").code == 0
    conn = db.connect(registry_url)
    try:
        later = _now(conn) + timedelta(days=2)
        nl = dataclasses.replace(_settings(), default_language="nl")
        assert link_pending.evaluate(conn, later, nl) == {"open": 1, "mailed": 1}
        with db.reading(conn) as cur:
            cur.execute("SELECT subject, body_text FROM outbox")
            subject, text = cur.fetchone()
        assert subject == "[L1NDA] 1 aangevraagde koppeling wacht al meer dan 24 uur"
        assert "klant CUST-KOK, bedrijf 50701" in text
        off = dataclasses.replace(nl, link_pending_after=0.0)
        assert link_pending.evaluate(conn, later, off) == {"resolve": 1}  # closed without a mail
        with db.reading(conn) as cur:
            cur.execute("SELECT count(*) FROM outbox")
            assert cur.fetchone()[0] == 1
    finally:
        conn.close()
