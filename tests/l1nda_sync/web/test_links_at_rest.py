"""No invitation link is ever stored in plain text: every column of every registry table is scanned for the
link's value while the mail waits in the outbox and after it left (`l1nda-sync invite`, and a revoked token's
alert mail); the mail the SMTP sink received carries the working link. The drain checks the invitation when
the mail leaves: used meanwhile (not sent), expired or made under a rotated web secret (a new one), and a resend
of an uncertain mail (the same link)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from l1nda_sync.alerts import store
from l1nda_sync.alerts.outbox import drain
from l1nda_sync.alerts.rendering import when
from l1nda_sync.masking import Secret
from l1nda_sync.registry import db
from l1nda_sync.registry.invitations import derive_value, value_hash
from tests.l1nda_sync.alerts.harness import parts
from tests.l1nda_sync.web.conftest import WEB_SECRET, WebStack, invitation_url
from tests.l1nda_sync.web.helpers import (
    browser,
    cli,
    consent,
    consent_at_nmbrs,
    error_code,
    items,
    register_soap_token,
    rows,
)

DEGRAAF = "salaris@bakkerij-degraaf.example"
CONTACT = "jan@bakkerij-degraaf.example"


def stored_anywhere(stack: WebStack, needle: str) -> list[str]:
    """'table.column' of every registry column (any type, as text) that holds `needle`."""
    conn = psycopg2.connect(stack.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("""SELECT c.table_schema, c.table_name, c.column_name FROM information_schema.columns c
                           JOIN information_schema.tables t USING (table_schema, table_name)
                           WHERE t.table_type = 'BASE TABLE'
                             AND c.table_schema NOT IN ('pg_catalog', 'information_schema')""")
            columns = cur.fetchall()
            assert len(columns) > 50, "the scan sees the registry's tables"
            found = []
            for schema, table, column in columns:
                cur.execute(sql.SQL("SELECT count(*) FROM {}.{} WHERE strpos({}::text, %s) > 0").format(
                    sql.Identifier(schema), sql.Identifier(table), sql.Identifier(column)), (needle,))
                if cur.fetchone()[0]:
                    found.append(f"{table}.{column}")
            return found
    finally:
        conn.close()


def assert_not_stored(stack: WebStack, value: str) -> None:
    assert len(value) == 43
    for needle in (value, value[:20], value[-20:]):  # nor a part of it
        assert stored_anywhere(stack, needle) == [], f"{needle!r} is stored"


def value_of(stack: WebStack, invitation_id: int, secret: str = WEB_SECRET) -> str:
    """The link's value as the page's secret makes it from the stored nonce."""
    (nonce,), = rows(stack, "SELECT nonce FROM invitations WHERE id = %s", invitation_id)
    return derive_value(Secret(secret), nonce).reveal()


def drain_now(stack: WebStack, now: datetime | None = None, **settings: Any) -> dict[str, int]:
    conn = db.connect(stack.database_url)
    try:
        return drain(conn, now or datetime.now(UTC), dataclasses.replace(stack.settings, **settings))
    finally:
        conn.close()


def queued_invitation(stack: WebStack, purpose: str = "rest", language: str = "en") -> tuple[int, str]:
    """`l1nda-sync invite --no-send`: (invitation id, printed URL)."""
    code, out = cli("invite", "--customer", "CUST-DEGRAAF", "--contact", CONTACT, "--purpose", purpose, "--language",
                    language, "--no-send", "--json")
    assert code == 0, out
    data = json.loads(out)
    return int(data["invitation"]["id"]), str(data["url"])


def test_invite_stores_no_link_queued_or_sent_and_the_mailed_link_works(
        web_stack: WebStack, caplog: pytest.LogCaptureFixture) -> None:
    invitation_id, printed = queued_invitation(web_stack)
    value = printed.rsplit("/", 1)[1]
    assert value == value_of(web_stack, invitation_id)
    # the scan finds what is stored: the invitation's hash is where it should be
    assert stored_anywhere(web_stack, value_hash(value)) == ["invitations.value_hash"]

    # (a) queued, not yet sent
    assert_not_stored(web_stack, value)
    (text, html), = rows(web_stack, "SELECT body_text, body_html FROM outbox")
    assert f"[[l1nda-invitation:{invitation_id}:link]]" in text
    assert f'href="[[l1nda-invitation:{invitation_id}:link]]"' in html
    assert web_stack.mails(CONTACT) == []

    # (b) sent
    assert drain_now(web_stack)["sent"] == 1
    assert_not_stored(web_stack, value)
    assert rows(web_stack, "SELECT state FROM outbox") == [("sent",)]
    (mail,) = web_stack.mails(CONTACT)
    plain, rich = parts(mail)
    assert invitation_url(mail, web_stack.base_url) == printed
    assert f'href="{printed}"' in rich
    (expires,), = rows(web_stack, "SELECT expires_at FROM invitations")
    assert when(expires, "en") in plain
    assert when(expires, "en") in rich
    assert "l1nda-invitation" not in mail.as_string()
    assert value not in caplog.text

    page = browser().get(printed)
    assert page.status_code == 200
    assert '<main id="invite" data-purpose="rest"' in page.text
    assert "CUST-DEGRAAF" in page.text


def test_a_revoked_tokens_alert_mail_stores_no_link_queued_or_sent(
        web_stack: WebStack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("L1NDA_REVOKE_MIN_SPACING", "0")
    monkeypatch.setenv("L1NDA_BREAKER_SHARE", "0.6")
    token_id = register_soap_token(web_stack)
    register_soap_token(web_stack, "payroll@modehuis-vandijk.example", "petra@modehuis-vandijk.example", "Van Dijk")
    assert cli("links", "request", "--customer", "CUST-DEGRAAF", "--company", "60101")[0] == 0
    web_stack.sim.admin.reset_token(DEGRAAF)
    for _ in range(2):
        code, out = cli("sync", "run", "--force", "--hold-mails")
        assert code == 0, out
    (invitation_id, problem_id), = rows(web_stack, "SELECT id, problem_id FROM invitations")
    value = value_of(web_stack, invitation_id)

    # (c) queued: the customer's copy holds the placeholder, the operations copy only the invitation's id
    assert_not_stored(web_stack, value)
    queued = rows(web_stack, "SELECT audience, body_text FROM outbox WHERE problem_id = %s AND event = 'escalated'",
                  problem_id)
    bodies = dict(queued)
    assert f"[[l1nda-invitation:{invitation_id}:link]]" in bodies["customer"]
    assert "l1nda-invitation" not in bodies["ops"]
    assert f"invitation {invitation_id}" in bodies["ops"]

    # ... and sent
    assert drain_now(web_stack)["sent"] >= 2
    assert_not_stored(web_stack, value)
    (mail,) = [m for m in web_stack.mails(CONTACT) if m["X-L1NDA-Event"] == "escalated"]
    url = invitation_url(mail, web_stack.base_url)
    assert url == f"{web_stack.base_url}/invite/{value}"
    assert f'href="{url}"' in parts(mail)[1]
    assert all(value not in m.as_string() for m in web_stack.mails("support@l1nda.example"))
    assert value not in caplog.text
    page = browser().get(url)
    assert page.status_code == 200
    assert '<main id="invite" data-purpose="token"' in page.text
    assert rows(web_stack, "SELECT token_id, state FROM invitations") == [(token_id, "opened")]


def test_a_link_used_before_its_mail_left_is_not_mailed(web_stack: WebStack) -> None:
    register_soap_token(web_stack)
    invitation_id, printed = queued_invitation(web_stack)
    done = consent(web_stack, printed, DEGRAAF)  # the operator handed the printed link over another way
    assert '<main id="result"' in done.text

    assert drain_now(web_stack)["dropped"] == 1
    assert web_stack.mails(CONTACT) == []
    (state, reason, by), = rows(web_stack, "SELECT state, dropped_reason, dropped_by FROM outbox "
                                           "WHERE event = 'invitation'")
    assert (state, by) == ("dropped", "outbox")
    assert f"invitation {invitation_id} was used" in reason
    code, out = cli("outbox", "list", "--state", "dropped", "--json")
    assert code == 0
    assert json.loads(out)[0]["dropped_reason"] == reason


def test_a_rotated_web_secret_mails_a_new_invitation_not_a_dead_link(web_stack: WebStack) -> None:
    old_id, printed = queued_invitation(web_stack, language="nl")
    rotated = "rotated-web-secret-abcdefghijklmnopqrstuvwxyz0123"
    assert drain_now(web_stack, web_secret=Secret(rotated))["sent"] == 1

    (mail,) = web_stack.mails(CONTACT)
    url = invitation_url(mail, web_stack.base_url)
    assert url != printed
    (new_id,), = rows(web_stack, "SELECT id FROM invitations WHERE id <> %s", old_id)
    assert url.rsplit("/", 1)[1] == value_of(web_stack, new_id, rotated)
    assert rows(web_stack, "SELECT id, state, language, purpose FROM invitations ORDER BY id") == [
        (old_id, "expired", "nl", "rest"), (new_id, "sent", "nl", "rest")]
    (text,), = rows(web_stack, "SELECT body_text FROM outbox")
    assert f"[[l1nda-invitation:{new_id}:link]]" in text
    for value in (printed.rsplit("/", 1)[1], url.rsplit("/", 1)[1]):
        assert_not_stored(web_stack, value)

    client = browser()
    assert client.get(url).status_code == 200
    dead = client.get(printed)
    assert error_code(dead) == "expired"


def test_an_expired_invitation_is_renewed_when_its_mail_leaves_and_an_uncertain_resend_repeats_the_link(
        web_stack: WebStack) -> None:
    old_id, printed = queued_invitation(web_stack)
    (created, expires), = rows(web_stack, "SELECT created_at, expires_at FROM invitations")
    web_stack.clock.advance(days=15)
    later = datetime.now(UTC) + timedelta(days=15)
    web_stack.smtp.mode = "drop"  # takes the message, then the line breaks before its 250: uncertain
    assert drain_now(web_stack, later)["uncertain"] == 1
    (first,) = web_stack.mails(CONTACT)
    url = invitation_url(first, web_stack.base_url)
    assert url != printed
    (new_id, new_created, new_expires), = rows(web_stack, "SELECT id, created_at, expires_at FROM invitations "
                                                          "WHERE id <> %s", old_id)
    assert new_expires - new_created == expires - created, "as long as the one it replaces"
    assert url.rsplit("/", 1)[1] == value_of(web_stack, new_id)
    assert rows(web_stack, "SELECT state FROM invitations WHERE id = %s", old_id) == [("expired",)]
    assert when(new_expires, "en") in parts(first)[0]

    web_stack.smtp.mode = "ok"
    code, out = cli("outbox", "resend", "1", "--yes")
    assert code == 0, out
    assert drain_now(web_stack, later)["sent"] == 1
    second = web_stack.mails(CONTACT)[-1]
    assert invitation_url(second, web_stack.base_url) == url, "a resend carries the same link"
    assert rows(web_stack, "SELECT count(*) FROM invitations") == [(2,)]
    for value in (printed.rsplit("/", 1)[1], url.rsplit("/", 1)[1]):
        assert_not_stored(web_stack, value)

    client = browser()
    assert client.get(url).status_code == 200
    assert error_code(client.get(printed)) == "expired"


def test_without_the_web_secret_where_the_outbox_drains_the_mail_fails_and_says_what_to_set(
        web_stack: WebStack) -> None:
    queued_invitation(web_stack)
    assert drain_now(web_stack, web_secret=None)["failed"] == 1
    (state, error), = rows(web_stack, "SELECT state, last_error FROM outbox")
    assert state == "failed"
    assert "L1NDA_WEB_SECRET" in error
    assert "outbox resend 1" in error
    assert web_stack.mails(CONTACT) == []

    assert cli("outbox", "resend", "1", "--yes")[0] == 0
    assert drain_now(web_stack)["sent"] == 1
    assert invitation_url(web_stack.mails(CONTACT)[0], web_stack.base_url)


def test_a_placeholder_for_another_contacts_invitation_is_not_filled_in(web_stack: WebStack) -> None:
    """A company or debtor name can carry any text into a customer's mail: a placeholder naming someone else's
    invitation must not fetch that link."""
    other_id, _ = queued_invitation(web_stack)
    assert drain_now(web_stack)["sent"] == 1
    conn = db.connect(web_stack.database_url)
    try:
        with db.transaction(conn) as cur:
            store.insert_outbox(cur, problem_id=None, event="test", audience="customer", language="en",
                                recipients=["mallory@example.com"], subject="hi",
                                body_text=f"company [[l1nda-invitation:{other_id}:link]]", body_html="<p>hi</p>",
                                message_id="<mallory@test>", now=datetime.now(UTC))
    finally:
        conn.close()
    assert drain_now(web_stack)["failed"] == 1
    assert web_stack.mails("mallory@example.com") == []
    (error,), = rows(web_stack, "SELECT last_error FROM outbox WHERE message_id = '<mallory@test>'")
    assert "is not this mail's" in error


def test_a_consent_started_with_connections_start_is_finished_by_the_page(web_stack: WebStack) -> None:
    """No invitation: the operator started the consent and sent its URL; Nmbrs sends the browser to the page's
    callback (L1NDA's redirect URI). The state (random, single use, stored hashed) and the PKCE verifier bind it
    to that consent, so the page finishes it rather than strand a customer who just consented; `connections
    finish` with the same callback then says it was finished already."""
    register_soap_token(web_stack)
    assert cli("links", "request", "--customer", "CUST-DEGRAAF", "--company", "60101")[0] == 0
    code, out = cli("connections", "start", "--customer", "CUST-DEGRAAF", "--contact", CONTACT, "--language", "nl",
                    "--json")
    assert code == 0, out
    started = json.loads(out)["url"]

    client = browser()
    callback = consent_at_nmbrs(client, started, DEGRAAF)
    assert callback.startswith(web_stack.callback_url)
    result = client.get(callback)
    assert result.status_code == 200, result.text[:500]
    assert '<main id="result"' in result.text
    assert items(result.text, "links") == ["Bakkerij De Graaf B.V.: actief vanaf nu"]  # the contact's language
    (token_id, state), = rows(web_stack, "SELECT id, state FROM tokens WHERE kind = 'rest_connection'")
    assert state == "active"
    assert rows(web_stack, "SELECT state, token_id FROM links") == [("active", token_id)]
    assert rows(web_stack, "SELECT customer_ref FROM rest_connections") == [("CUST-DEGRAAF",)]
    assert rows(web_stack, "SELECT count(*) FROM invitations") == [(0,)]
    assert rows(web_stack, "SELECT used_at IS NOT NULL, invitation_id FROM rest_authorizations") == [(True, None)]
    (subject, recipients, body), = rows(web_stack, "SELECT subject, recipients, body_text FROM outbox "
                                                   "WHERE event = 'customer_page'")
    assert recipients == ["support@l1nda.example"], "ops hear of it as of a consent through an invitation"
    assert "CUST-DEGRAAF consented" in subject
    assert f"REST connection {token_id}" in body
    assert "connections start" in body

    again = client.get(callback)
    assert error_code(again) == "code_reused"
    code, out = cli("connections", "finish", "--callback-url", callback, "--json")
    assert code == 2
    assert "finished already" in json.loads(out)["error"]["message"]
    assert rows(web_stack, "SELECT count(*) FROM rest_connections") == [(1,)]


def test_the_page_refuses_a_callback_of_a_consent_nobody_started(web_stack: WebStack) -> None:
    page = browser().get(web_stack.callback_url + "?code=abc&state=never-started")
    assert page.status_code >= 400
    assert error_code(page) == "bad_state"
    assert rows(web_stack, "SELECT count(*) FROM rest_connections") == [(0,)]
