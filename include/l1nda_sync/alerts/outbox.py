"""Delivering the outbox through the Airflow SMTP connection, one message per row.

Guarantee: AT MOST ONCE per row, and nothing silently lost.
- Order: claim the row (state 'sending', attempts + 1, a claim that expires after CLAIM_LEASE) and COMMIT;
  open the SMTP session, MAIL FROM, RCPT TO, then the DATA command. Only when the server answers DATA with 354
  is the hand-over marked (`handover_at`, committed) and the message body sent; then the row is marked 'sent'.
  Only one drain runs at a time (a PostgreSQL session advisory lock, released when the drainer's connection
  ends, also by a crash).
- A row still 'sending' when a drain starts was claimed by a drain that died. If its hand-over had begun it
  may have been delivered: it becomes 'uncertain', logged, counted, and NOT resent. If not (the sender died
  while connecting, before the greeting, during MAIL/RCPT/DATA), nothing was handed over: it returns to
  'pending' once its claim expires, and is sent then.
- Failures where the server provably did not take the message (no connection, a 4xx/5xx answer to MAIL, RCPT
  or DATA, or a connection lost before the 354 answer to DATA) put the row back to 'pending' with exponential
  backoff (`l1nda_sync.backoff`: 1 min doubling, at most 1 hour). A message the server refused outright becomes
  'failed' after MAX_ATTEMPTS; an unreachable server never fails a row (the message is fine; it waits until SMTP
  is back).
- A connection lost after the 354, while the server was taking the message body or before it confirmed it,
  cannot be told apart from a delivery: 'uncertain', not resent.
- 'uncertain' and 'failed' rows are never left to rot: while any exists, operations have an open
  `outbox_stuck` problem (one mail, then the daily reminder; `alerts.delivery_problems`, run by the sweep), and
  `l1nda-sync outbox list|resend|drop` shows and settles them.
- A customer mail with an invitation holds a placeholder, never the link: the drain fills it in right before
  building the message, and drops a mail whose invitation was used meanwhile (`alerts.invitation_links`).
Each row carries its own Message-ID (made when the row was written), so a receiving system can also spot a
duplicate should an operator resend an 'uncertain' row by hand.

SmtpHook.send_email_smtp is not used to send: it builds an HTML-only message (no text/plain alternative)
and retries `sendmail` on any error, which can deliver twice. The hook still does the connection work
(host, port, SSL or STARTTLS, login, time-out from the connection `smtp_default`); the protocol steps run on
its client, so each failure is known to be before or during the hand-over.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import smtplib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy
from email.errors import MessageError
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parseaddr
from typing import TYPE_CHECKING, Protocol, cast

from l1nda_sync.alerts import invitation_links
from l1nda_sync.backoff import backoff
from l1nda_sync.registry import locks

if TYPE_CHECKING:
    from airflow.providers.smtp.hooks.smtp import SmtpHook
    from psycopg2.extensions import connection as Connection

    from l1nda_sync.settings import Settings

log = logging.getLogger(__name__)

# Subjects are at most 200 characters: no folding, because folding next to an encoded word (the masked token's
# '…') leaves a double space in some readers. RFC 5322 allows lines up to 998 characters.
WIRE_POLICY = policy.SMTP.clone(max_line_length=998)

MAX_ATTEMPTS = 8
BATCH_LIMIT = 500  # rows per drain; the rest wait for the next one
CLAIM_LEASE = timedelta(minutes=15)  # a claimed row not handed over goes back to pending after this


class NotSent(Exception):
    """The server did not take the message; safe to try again. `server_down`: stop this drain."""

    def __init__(self, message: str, *, server_down: bool = False) -> None:
        super().__init__(message)
        self.server_down = server_down


class MaybeSent(Exception):
    """The connection broke while the server was taking the message: it may have been delivered."""


class ClaimLost(Exception):
    """The row is no longer this drain's to send (marking the hand-over found it changed): nothing was sent."""


def _dot_stuffed(data: bytes) -> bytes:
    """The message as the DATA phase carries it (what smtplib.SMTP.data sends after the 354)."""
    data = re.sub(rb"(?m)^\.", b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


Send = Callable[[EmailMessage], "str | None"]  # returns an optional note kept as last_error of a sent row


class HandoverSender(Protocol):
    """A `Send` that says when the hand-over begins: it calls `handover` right before the body goes out."""

    marks_handover: bool

    def __call__(self, message: EmailMessage, *, handover: Callable[[], None] | None = None) -> str | None: ...


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One claimed row of `outbox`: a mail to send."""

    id: int
    problem_id: int | None
    event: str
    audience: str
    recipients: list[str]
    subject: str
    body_text: str
    body_html: str | None
    message_id: str
    created_at: datetime
    attempts: int
    thread_root: str | None  # Message-ID of the first mail about the same problem to the same audience
    language: str = "en"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def build_message(row: OutboxRow, settings: Settings) -> EmailMessage:
    """A multipart/alternative mail (text, then HTML) with the row's own Message-ID."""
    msg = EmailMessage()
    msg["Subject"] = row.subject
    msg["From"] = settings.mail_from
    msg["To"] = ", ".join(row.recipients)
    if row.audience == "customer" and settings.ops_recipients:
        msg["Reply-To"] = ", ".join(settings.ops_recipients)
    msg["Date"] = format_datetime(row.created_at)
    msg["Message-ID"] = row.message_id
    if row.thread_root and row.thread_root != row.message_id:
        msg["In-Reply-To"] = row.thread_root
        msg["References"] = row.thread_root
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to these
    if row.problem_id is not None:
        msg["X-L1NDA-Problem"] = str(row.problem_id)
    msg["X-L1NDA-Event"] = row.event
    msg.set_content(row.body_text, cte="quoted-printable")
    if row.body_html:
        msg.add_alternative(row.body_html, subtype="html", cte="quoted-printable")
    return msg


class SmtpSender:
    """Sends messages over one SMTP session of the Airflow connection `conn_id`, opened on the first message."""

    def __init__(self, conn_id: str = "smtp_default") -> None:
        self.conn_id = conn_id
        self._hook: SmtpHook | None = None

    def _client(self) -> smtplib.SMTP:
        if self._hook is None:
            from airflow.providers.smtp.hooks.smtp import SmtpHook

            hook = SmtpHook(smtp_conn_id=self.conn_id)
            try:
                hook.get_conn()
            except Exception as exc:
                raise NotSent(f"cannot reach the SMTP server of connection {self.conn_id!r}: {_short(exc)}",
                              server_down=True) from None
            self._hook = hook
        client = _smtp_client(self._hook)
        assert client is not None, "SmtpHook.get_conn() leaves an smtplib client"
        return client

    def close(self) -> None:
        client = _smtp_client(self._hook)
        self._hook = None
        if client is None:
            return
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()
        with contextlib.suppress(Exception):  # closing a socket that is already gone (what the hook's exit does)
            client.close()

    def _drop(self) -> None:
        self.close()

    def _reset(self, client: smtplib.SMTP) -> None:
        """Abandon the current transaction (RSET); a session that cannot even do that is dropped."""
        try:
            client.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    marks_handover = True  # calls `handover` right before the message body goes out (see drain)

    def __call__(self, message: EmailMessage, *, handover: Callable[[], None] | None = None) -> str | None:
        """Hand one message over; returns a note on recipients the server refused (the rest got it).

        `handover` is called after the server accepted DATA (354) and before the first byte of the message is
        sent; if it raises, the session is dropped without sending the message, and the error propagates.
        """
        client = self._client()
        refused = self._open_data(client, message)
        if handover is not None:
            try:
                handover()
            except BaseException:
                self._drop()  # the body never went out; the server drops the unfinished transaction
                raise
        self._send_body(client, message)
        if refused:
            return f"delivered, but these recipients were refused: {refused}"
        return None

    def _open_data(self, client: smtplib.SMTP, message: EmailMessage) -> dict[str, str]:
        """MAIL FROM, RCPT TO, then the DATA command up to the server's 354: nothing is handed over yet.

        Returns the recipients the server refused (not all of them); raises NotSent otherwise."""
        sender = parseaddr(str(message["From"]))[1]
        recipients = [addr for _, addr in getaddresses([str(v) for v in message.get_all("To", [])]) if addr]
        try:
            refused = self._envelope(client, sender, recipients)
            code, reply = client.docmd("DATA")  # the command alone: until its 354, nothing is handed over
        except NotSent:
            raise
        except (smtplib.SMTPException, OSError) as exc:  # before the hand-over: nothing was delivered
            self._drop()
            raise NotSent(f"SMTP failed before the message was handed over: {_short(exc)}", server_down=True) from None
        if code != 354:  # the server answered DATA with an error: it took nothing
            self._reset(client)
            raise NotSent(f"DATA refused: {code} {reply.decode(errors='replace')}")
        return refused

    def _envelope(self, client: smtplib.SMTP, sender: str, recipients: list[str]) -> dict[str, str]:
        """MAIL FROM and one RCPT TO per recipient; returns the refused ones, raises NotSent when all are."""
        client.ehlo_or_helo_if_needed()
        code, reply = client.mail(sender)
        if code != 250:
            self._reset(client)
            raise NotSent(f"MAIL FROM refused: {code} {reply.decode(errors='replace')}")
        refused: dict[str, str] = {}
        for rcpt in recipients:
            code, reply = client.rcpt(rcpt)
            if code not in (250, 251):
                refused[rcpt] = f"{code} {reply.decode(errors='replace')}"
        if len(refused) == len(recipients):
            self._reset(client)
            raise NotSent(f"every recipient refused: {refused}")
        return refused

    def _send_body(self, client: smtplib.SMTP, message: EmailMessage) -> None:
        """The message after the 354, and the server's answer; a lost connection here may have delivered it."""
        try:
            client.send(_dot_stuffed(message.as_bytes(policy=WIRE_POLICY)))
            code, reply = client.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise MaybeSent(f"connection lost while the server was taking the message: {_short(exc)}") from None
        if code != 250:
            self._reset(client)
            raise NotSent(f"message refused: {code} {reply.decode(errors='replace')}")


def _smtp_client(hook: SmtpHook | None) -> smtplib.SMTP | None:
    """The hook's authenticated smtplib client (see the module docstring), once it connected."""
    client = hook._smtp_client if hook is not None else None
    return client if isinstance(client, smtplib.SMTP) else None


# -- the drain ----------------------------------------------------------------------------------------------

_CLAIM = """
UPDATE outbox o SET state = 'sending', attempts = o.attempts + 1, claimed_until = %s, handover_at = NULL
WHERE o.id = (SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= %s
              ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING o.id, o.problem_id, o.event, o.audience, o.recipients, o.subject, o.body_text, o.body_html,
          o.message_id, o.created_at, o.attempts,
          (SELECT f.message_id FROM outbox f WHERE f.problem_id = o.problem_id AND f.audience = o.audience
           ORDER BY f.id LIMIT 1), o.language
"""


def _claim(conn: Connection, now: datetime) -> OutboxRow | None:
    with conn, conn.cursor() as cur:
        cur.execute(_CLAIM, (now + CLAIM_LEASE, now))
        row = cur.fetchone()
    return OutboxRow(*row) if row else None


def _finish(conn: Connection, row_id: int, state: str, *, now: datetime, error: str | None = None,
            next_attempt_at: datetime | None = None) -> None:
    with conn, conn.cursor() as cur:
        cur.execute(
            """UPDATE outbox SET state = %s, last_error = %s, sent_at = CASE WHEN %s = 'sent' THEN %s END,
                   next_attempt_at = COALESCE(%s, next_attempt_at), claimed_until = NULL
               WHERE id = %s AND state = 'sending'""",
            (state, error, state, now, next_attempt_at, row_id),
        )


def _drop(conn: Connection, row_id: int, reason: str, now: datetime) -> None:
    """The drain gives up on a row that is not to be sent (its invitation was used, say); the reason stays."""
    with conn, conn.cursor() as cur:
        cur.execute("""UPDATE outbox SET state = 'dropped', dropped_at = %s, dropped_reason = %s, dropped_by = %s,
                           claimed_until = NULL WHERE id = %s AND state = 'sending'""",
                    (now, reason, invitation_links.ACTOR, row_id))
    log.info("outbox %s: not sent: %s", row_id, reason)


def _prepare(conn: Connection, row: OutboxRow, now: datetime, settings: Settings) -> EmailMessage | str:
    """The message to send (its invitation link filled in, in memory only), or the state the row was put in."""
    try:
        filled = invitation_links.fill(conn, row, settings, now)
        if isinstance(filled, invitation_links.Dropped):
            _drop(conn, row.id, filled.reason, now)
            return "dropped"
        return build_message(filled, settings)
    except invitation_links.Unsendable as exc:
        error = f"cannot fill in the invitation link: {exc}"
    except (ValueError, TypeError, MessageError) as exc:  # a malformed address or header stays malformed
        error = f"cannot build the message: {_short(exc)}"
    _finish(conn, row.id, "failed", now=now, error=error)
    log.warning("outbox %s: failed: %s", row.id, error)
    return "failed"


def _mark_handover(conn: Connection, row_id: int, now: datetime) -> None:
    """Record (and commit) that the hand-over of this row begins; raises ClaimLost if it is not ours to send."""
    with conn, conn.cursor() as cur:
        cur.execute("UPDATE outbox SET handover_at = %s WHERE id = %s AND state = 'sending' AND handover_at IS NULL",
                    (now, row_id))
        if cur.rowcount != 1:
            raise ClaimLost(f"outbox {row_id} is no longer claimed by this drain")


def mark_interrupted(conn: Connection, now: datetime | None = None) -> list[int]:
    """Rows a dead drain left in 'sending' (call only while holding the drain lock): those whose hand-over began
    (or claimed before hand-overs were recorded) become 'uncertain'; the others go back to 'pending' once their
    claim expired (at `now`). Returns the ids made uncertain."""
    with conn, conn.cursor() as cur:
        cur.execute(
            """UPDATE outbox SET state = 'uncertain', claimed_until = NULL,
                   last_error = 'the sender stopped after handing this mail to SMTP and before marking it sent: '
                                || 'it may have been delivered, so it is not sent again'
               WHERE state = 'sending' AND (handover_at IS NOT NULL OR claimed_until IS NULL)
               RETURNING id, subject"""
        )
        rows = cur.fetchall()
        returned = []
        if now is not None:
            cur.execute(
                """UPDATE outbox SET state = 'pending', claimed_until = NULL, next_attempt_at = %s,
                       last_error = 'the sender stopped before handing this mail over; it is sent again'
                   WHERE state = 'sending' AND handover_at IS NULL AND claimed_until <= %s RETURNING id""",
                (now, now),
            )
            returned = [r[0] for r in cur.fetchall()]
    for row_id, subject in rows:
        log.warning("outbox %s (%s): delivery uncertain after an interrupted drain; not resent", row_id, subject)
    for row_id in returned:
        log.info("outbox %s: its sender stopped before the hand-over; pending again", row_id)
    return [r[0] for r in rows]


def _try_lock(conn: Connection) -> bool:
    with conn, conn.cursor() as cur:
        return locks.try_lock_outbox_drain(cur)


def _unlock(conn: Connection) -> None:
    with conn, conn.cursor() as cur:
        locks.unlock_outbox_drain(cur)


def drain(
    conn: Connection, now: datetime, settings: Settings, *, send: Send | None = None, limit: int = BATCH_LIMIT
) -> dict[str, int]:
    """Send every due outbox row; returns counts: sent, retry (back to pending), failed, uncertain, dropped (its
    invitation was used before it left: `invitation_links`), and busy (1 when another drain holds the lock, and
    this one did nothing)."""
    counts: Counter[str] = Counter(dict.fromkeys(("sent", "retry", "failed", "uncertain", "dropped", "busy"), 0))
    if not _try_lock(conn):
        log.info("another drain is running; leaving the outbox to it")
        counts["busy"] = 1
        return dict(counts)
    sender: Send = send if send is not None else SmtpSender(settings.smtp_conn_id)
    try:
        counts["uncertain"] += len(mark_interrupted(conn, now))
        for _ in range(limit):
            row = _claim(conn, now)
            if row is None:
                break
            message = _prepare(conn, row, now, settings)
            if isinstance(message, str):
                counts[message] += 1
                continue
            try:
                if getattr(sender, "marks_handover", False):
                    handing_over = cast(HandoverSender, sender)
                    note = handing_over(message, handover=functools.partial(_mark_handover, conn, row.id, now))
                else:  # a sender that does not say when the hand-over begins: it begins now
                    _mark_handover(conn, row.id, now)
                    note = sender(message)
            except ClaimLost as exc:
                log.warning("outbox %s: not sent: %s", row.id, exc)
                break
            except NotSent as exc:
                gives_up = not exc.server_down and row.attempts >= MAX_ATTEMPTS
                _finish(conn, row.id, "failed" if gives_up else "pending", now=now, error=str(exc),
                        next_attempt_at=now + backoff(row.attempts))
                counts["failed" if gives_up else "retry"] += 1
                log.warning("outbox %s: not sent (attempt %s): %s", row.id, row.attempts, exc)
                if exc.server_down:
                    break  # the rest stay pending, untouched, for the next drain
                continue
            except MaybeSent as exc:
                _finish(conn, row.id, "uncertain", now=now, error=str(exc))
                counts["uncertain"] += 1
                log.warning("outbox %s: delivery uncertain, not resent: %s", row.id, exc)
                break
            except Exception as exc:  # an unknown failure inside a custom sender: it may have sent
                _finish(conn, row.id, "uncertain", now=now, error=f"sender failed: {_short(exc)}")
                counts["uncertain"] += 1
                log.exception("outbox %s: sender failed; delivery uncertain, not resent", row.id)
                break
            _finish(conn, row.id, "sent", now=now, error=note if isinstance(note, str) else None)
            counts["sent"] += 1
    finally:
        close = getattr(sender, "close", None)
        if send is None and close is not None:
            close()
        _unlock(conn)
    return dict(counts)
