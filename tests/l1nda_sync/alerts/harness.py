"""Test harness for the alerts: a real SMTP server (aiosmtpd), a settable clock, and a `World` that drives the
real engine (apply_pending + reconcile_all with AlertHooks, then sweep and drain) over a migrated registry.

Only the Nmbrs probe is left out: each run stores the check results a probe would have produced.
"""

from __future__ import annotations

import contextlib
import email
import json
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller

from l1nda_sync.alerts.hooks import AlertHooks
from l1nda_sync.alerts.outbox import drain
from l1nda_sync.alerts.sweep import sweep
from l1nda_sync.engine.applying import apply_pending
from l1nda_sync.engine.reconciling import reconcile_all
from l1nda_sync.engine.token_state import Outcome, StatePolicy
from l1nda_sync.settings import Settings

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
OPS = "support@l1nda.example"
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Collector:
    def __init__(self, server: MailServer) -> None:
        self.server = server

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list) -> str:
        if address.startswith("unknown"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mode = self.server.mode
        if mode == "refuse":
            return "554 5.6.0 message refused"
        if mode == "busy":
            return "451 4.3.0 try again later"
        self.server.received.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        if mode == "drop":  # took the message, then the line broke before the 250
            server.transport.close()
            return "250 OK"
        return "250 OK"


@dataclass
class MailServer:
    """aiosmtpd on 127.0.0.1; `mode` makes it refuse, defer or drop the connection after taking a message."""

    port: int = field(default_factory=free_port)
    mode: str = "ok"
    received: list[tuple[list[str], bytes]] = field(default_factory=list)
    _controller: Controller | None = None

    def start(self) -> MailServer:
        self._controller = Controller(_Collector(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def connection_json(self) -> str:
        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port,
                           "extra": {"disable_ssl": True, "disable_tls": True, "timeout": 5, "retry_limit": 0}})

    def messages(self, to: str | None = None) -> list[EmailMessage]:
        out = []
        for rcpts, raw in self.received:
            if to is None or to in rcpts:
                out.append(email.message_from_bytes(raw, policy=default_policy))
        return out

    def subjects(self, to: str | None = None) -> list[str]:
        return [str(m["Subject"]) for m in self.messages(to)]

    def events(self) -> list[tuple[str, str, str]]:
        """(recipient, problem kind's event header, subject) per delivered copy, in arrival order."""
        out = []
        for rcpts, raw in self.received:
            message = email.message_from_bytes(raw, policy=default_policy)
            out += [(r, str(message["X-L1NDA-Event"]), str(message["Subject"])) for r in rcpts]
        return out

    def tally(self) -> dict[tuple[str, str], int]:
        """{(recipient, event): copies delivered}."""
        counts: dict[tuple[str, str], int] = {}
        for rcpt, event, _ in self.events():
            counts[(rcpt, event)] = counts.get((rcpt, event), 0) + 1
        return counts

    def clear(self) -> None:
        self.received.clear()


def parts(message: EmailMessage) -> tuple[str, str]:
    """(plain text, HTML) of a received message."""
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    return (text.get_content() if text else ""), (html.get_content() if html else "")


def test_settings(**overrides: Any) -> Settings:
    base = Settings(
        ops_recipients=(OPS,), mail_from="L1NDA Nmbrs sync <no-reply@l1nda.example>", default_language="en",
        problem_quiet_period=3600.0, reminder_interval=86400.0, smtp_conn_id="smtp_default",
        breaker_share=0.5, breaker_min_tokens=5,
    )
    return replace(base, **overrides)


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def probe(debtors: Iterable[tuple[int, str]] = (), companies: Iterable[tuple[int, int, str]] = ()) -> dict:
    """A stored probe (Probe.to_dict() shape): debtors (id, name), companies (id, debtor id, name)."""
    return {
        "domain": "demo",
        "debtors": [{"id": d, "number": f"D{d}", "name": n, "tags": []} for d, n in debtors],
        "companies": [{"id": c, "debtor_id": d, "number": 1000 + c, "name": n} for c, d, n in companies],
    }


def confirm_streak(cur: Any, token_id: int, outcome: Outcome, since: datetime) -> None:
    """Record that the token already answered `outcome` once, at `since` (unless its streak is of that refusal
    already): the next such answer confirms it."""
    cur.execute(
        """UPDATE tokens SET refusal = %s, consecutive_invalid = 1, first_invalid_at = %s
           WHERE id = %s AND refusal IS DISTINCT FROM %s""",
        (outcome.value, since, token_id, outcome.value),
    )


class World:
    """Tokens, links and runs over a real registry; `run()` is one sync run with alerts, sweep and drain."""

    def __init__(self, conn: Any, settings: Settings, *, policy: StatePolicy | None = None,
                 bystanders: int | None = None, confirm_refusals: bool = True) -> None:
        """`bystanders` healthy tokens (default: breaker_min_tokens) answer validly in every run, so that one
        token's failure is judged beside a fleet, as in production, and not as a provider incident; with
        `confirm_refusals` a 1002/1004 given to `run()` arrives confirmed (an earlier answer of the same refusal is
        recorded a spacing before), so that alert tests speak of confirmed states in one run."""
        self.conn = conn
        self.settings = settings
        self.now = T0
        self.bystanders = settings.breaker_min_tokens if bystanders is None else bystanders
        self.bystander_ids: list[int] = []
        self.confirm_refusals = confirm_refusals
        self.policy = policy or StatePolicy(revoke_confirmations=2, revoke_min_spacing=10 * MIN,
                                            unreachable_after=30 * MIN)
        self.hooks = AlertHooks(settings)
        self.secrets: list[str] = []
        self.last_drain: dict[str, int] = {}

    def add_token(self, label: str, *, level: str = "debtor", contacts: Iterable[str] = ("piet@klant.example",),
                  language: str = "en", username: str | None = None, secret: str | None = None) -> int:
        from l1nda_sync.registry.tokens import NewToken, TokenStore

        secret = secret or f"{len(self.secrets):02d}" + "9f3c2b7a1d4e5f60718293a4b5c6d7"
        self.secrets.append(secret)
        new = NewToken.validate(label=label, level=level, username=username or f"api+{len(self.secrets)}@klant.example",
                                token=secret, contacts=list(contacts), language=language)
        with self.conn:
            return TokenStore.from_settings().add(self.conn, new, actor="test").id

    def add_link(self, company_id: int, customer_ref: str = "CUST-1") -> int:
        from l1nda_sync.registry.links import request_link

        with self.conn:
            return request_link(self.conn, customer_ref=customer_ref, company_id=company_id, environment=None,
                                actor="test").id

    def advance(self, delta: timedelta) -> None:
        self.now += delta

    def run(self, results: Mapping[int, Outcome | tuple[Outcome, Any]], *, step: timedelta = 10 * MIN,
            send: bool = True) -> dict[str, Any]:
        """One sync run at the current time, then the clock moves on by `step`.

        `results` maps token id -> outcome, or (outcome, probe dict) for a valid check, or
        (Outcome.RIGHTS_MISSING, "Service.Operation").
        """
        at = self.now
        if len(self.bystander_ids) < self.bystanders:
            self.bystander_ids = [self.add_token(f"bystander {n}", contacts=(f"bystander{n}@klant.example",))
                                  for n in range(self.bystanders)]
        results = {**{b: Outcome.VALID for b in self.bystander_ids}, **results}
        with self.conn, self.conn.cursor() as cur:
            cur.execute("INSERT INTO runs (started_at, state) VALUES (%s, 'running') RETURNING id", (at,))
            run_id = cur.fetchone()[0]
            for token_id, result in results.items():
                outcome, extra = result if isinstance(result, tuple) else (result, None)
                if self.confirm_refusals and outcome in (Outcome.RIGHTS_MISSING, Outcome.NO_SUBSCRIPTION):
                    confirm_streak(cur, token_id, outcome, at - self.policy.revoke_min_spacing)
                cur.execute(
                    """INSERT INTO checks (token_id, run_id, checked_at, outcome, missing_operation, probe)
                       VALUES (%s, %s, %s, %s, %s, %s::jsonb)""",
                    (token_id, run_id, at, outcome.value,
                     extra if outcome is Outcome.RIGHTS_MISSING else None,
                     json.dumps(extra) if isinstance(extra, dict) else None),
                )
        summary = apply_pending(self.conn, policy=self.policy, now=lambda: at, run_id=run_id,
                                breaker_share=self.settings.breaker_share, hooks=self.hooks)
        with self.conn, self.conn.cursor() as cur:
            reconcile_all(cur, now=lambda: at, run_id=run_id, breaker_open=summary.breaker_open, hooks=self.hooks)
        swept = self.sweep_and_send() if send else {}
        self.advance(step)
        return {"run_id": run_id, "summary": summary, "swept": swept, "drained": self.last_drain}

    def sweep_and_send(self) -> dict[str, int]:
        """The run pipeline's delivery step at the current time: sweep, then drain."""
        swept = sweep(self.conn, self.now, self.settings)
        self.last_drain = drain(self.conn, self.now, self.settings)
        return swept

    # -- looking ------------------------------------------------------------------------------------------
    def problems(self, *, state: str | None = None) -> list[dict[str, Any]]:
        with self.conn, self.conn.cursor() as cur:
            cur.execute(
                """SELECT id, token_id, kind, state, stage, muted, cause_cleared_at, resolved_at, last_notified_at,
                          detail FROM problems WHERE %s::text IS NULL OR state = %s ORDER BY id""",
                (state, state),
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def outbox(self) -> list[dict[str, Any]]:
        with self.conn, self.conn.cursor() as cur:
            cur.execute("SELECT id, problem_id, event, audience, language, recipients, state, attempts, last_error, "
                        "message_id FROM outbox ORDER BY id")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def link_state(self, link_id: int) -> tuple[str, str | None]:
        with self.conn, self.conn.cursor() as cur:
            cur.execute("SELECT state, reason FROM links WHERE id = %s", (link_id,))
            return cur.fetchone()


def assert_no_secret(server: MailServer, secrets: Iterable[str]) -> None:
    """No received mail holds a token in plain text: raw bytes, or any decoded part."""
    for _rcpts, raw in server.received:
        message = email.message_from_bytes(raw, policy=default_policy)
        decoded = [raw.decode("utf-8", "replace"), str(message["Subject"])]
        decoded += [p.get_content() for p in message.walk() if p.get_content_maintype() == "text"]
        for secret in secrets:
            assert all(secret not in text for text in decoded), "a plaintext token is in a mail"
            assert all(secret[:-4] not in text for text in decoded), "a token prefix is in a mail"


@contextlib.contextmanager
def stopped(server: MailServer):
    server.stop()
    try:
        yield
    finally:
        server.start()
