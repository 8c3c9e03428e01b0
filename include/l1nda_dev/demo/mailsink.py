"""A local SMTP server that accepts every message and stores it as an .eml file, for the demo and trials.

Each message is written exactly as received, with two headers in front that an MTA would add on delivery
(`Return-Path` and one `X-Original-To` per envelope recipient), so that Bcc-style recipients are visible
too. A file opens in any mail client. Files are written to a temporary name and renamed, so a reader never
sees half a message.

Run on its own: `python -m l1nda_dev.demo.mailsink --dir var/mail --port 1025`.
"""

from __future__ import annotations

import argparse
import email
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class StoredMail:
    """One mail the demo's sink received, as stored on disk."""

    path: Path
    mail_from: str
    recipients: tuple[str, ...]
    subject: str

    def message(self) -> Message:
        return email.message_from_bytes(self.path.read_bytes(), policy=default_policy)


def _slug(text: str, limit: int = 48) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].rstrip("-") or "no-subject"


def _subject(raw: bytes) -> str:
    parsed = email.message_from_bytes(raw, policy=default_policy)
    return str(parsed.get("Subject", "")).strip()


class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.sink.store(envelope.mail_from or "", list(envelope.rcpt_tos), bytes(envelope.content))
        return "250 OK: stored"


@dataclass
class MailSink:
    """aiosmtpd on `host:port` (0: a free port) writing one .eml per message into `directory`."""

    directory: Path
    host: str = "127.0.0.1"
    port: int = 0
    stored: list[StoredMail] = field(default_factory=list)
    _controller: Controller | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def start(self) -> MailSink:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            import socket

            with socket.socket() as s:
                s.bind((self.host, 0))
                self.port = int(s.getsockname()[1])
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def store(self, mail_from: str, recipients: Sequence[str], content: bytes) -> StoredMail:
        subject = _subject(content)
        header = f"Return-Path: <{mail_from}>\r\n" + "".join(f"X-Original-To: {r}\r\n" for r in recipients)
        with self._lock:
            number = len(self.stored) + 1
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            path = self.directory / f"{stamp}-{number:03d}-{_slug(subject)}.eml"
            partial = path.with_suffix(".part")
            partial.write_bytes(header.encode("ascii", "replace") + content.replace(b"\r\n", b"\n")
                                .replace(b"\n", b"\r\n"))
            partial.rename(path)
            mail = StoredMail(path, mail_from, tuple(recipients), subject)
            self.stored.append(mail)
        return mail


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m l1nda_dev.demo.mailsink",
                                     description="Accept every SMTP message and store it as an .eml file.")
    parser.add_argument("--dir", default="var/mail", type=Path, help="where .eml files go (default var/mail)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default=1025, type=int)
    args = parser.parse_args(argv)
    sink = MailSink(args.dir, host=args.host, port=args.port).start()
    print(f"storing mail sent to smtp://{args.host}:{sink.port} in {args.dir}/ (Ctrl-C stops)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
