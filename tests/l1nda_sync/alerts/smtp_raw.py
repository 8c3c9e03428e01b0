"""A raw-socket SMTP server that misbehaves on cue: it drops the line (or hangs) at a chosen protocol step.

`fail_at` is consumed by the next connection only: 'greeting' (hang without greeting until released),
'ehlo', 'mail', 'rcpt', 'data' (after the DATA command, before 354), 'body' (after 354, halfway through the
message), 'body_hang' (after 354: reads the whole message, never answers until released), 'before_250'
(reads the whole message, closes without answering), 'before_quit' (answers 250, then closes).
`complete` holds every message received up to its final dot; `accepted` those it also answered 250 to.
Connection events are signalled with threading.Event, so tests wait for them instead of sleeping.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field


@dataclass
class RawSmtp:
    fail_at: str | None = None
    complete: list[bytes] = field(default_factory=list)
    accepted: list[bytes] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    reached: threading.Event = field(default_factory=threading.Event)  # the failure point was reached
    release: threading.Event = field(default_factory=threading.Event)

    def start(self) -> RawSmtp:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop = True
        self.release.set()
        self._sock.close()

    @property
    def connection_json(self) -> str:
        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port,
                           "extra": {"disable_ssl": True, "disable_tls": True, "timeout": 5, "retry_limit": 0}})

    def _serve(self) -> None:
        while not self._stop:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            fail, self.fail_at = self.fail_at, None
            threading.Thread(target=self._session, args=(client, fail), daemon=True).start()

    def _session(self, sock: socket.socket, fail: str | None) -> None:
        session = _Session(self, sock, fail)
        self.connected.set()
        try:
            session.run()
        except OSError:
            return


class _Session:
    """One client connection: answers each command, and breaks off where `fail` says."""

    def __init__(self, server: RawSmtp, sock: socket.socket, fail: str | None) -> None:
        self.server = server
        self.sock = sock
        self.fail = fail
        self.reader = sock.makefile("rb")

    def say(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def drop(self) -> bool:
        """Close the line at the failure point; the session ends (False)."""
        self.server.reached.set()
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        return False

    def hang(self) -> bool:
        """Say nothing until the test releases the server, then close; the session ends (False)."""
        self.server.reached.set()
        self.server.release.wait(30)
        self.sock.close()
        return False

    def run(self) -> None:
        if self.fail == "greeting":
            self.hang()
            return
        self.say("220 raw.test ESMTP")
        while True:
            line = self.reader.readline()
            if not line:
                return
            verb = line.split(b" ", 1)[0].split(b":", 1)[0].strip().upper()
            if not self.answer(verb):
                return

    def answer(self, verb: bytes) -> bool:
        """Answer one command; False when the session ends."""
        if verb in (b"EHLO", b"HELO"):
            return self.reply("ehlo", "250 raw.test")
        if verb == b"MAIL":
            return self.reply("mail", "250 OK")
        if verb == b"RCPT":
            return self.reply("rcpt", "250 OK")
        if verb == b"DATA":
            return self.data()
        if verb in (b"RSET", b"NOOP"):
            self.say("250 OK")
            return True
        if verb == b"QUIT":
            self.say("221 bye")
            self.sock.close()
            return False
        self.say("502 not implemented")
        return True

    def reply(self, step: str, answer: str) -> bool:
        if self.fail == step:
            return self.drop()
        self.say(answer)
        return True

    def data(self) -> bool:
        if self.fail == "data":
            return self.drop()
        self.say("354 go ahead")
        body = self.body()
        if body is None:
            return False
        self.server.complete.append(body)
        if self.fail == "before_250":
            return self.drop()
        if self.fail == "body_hang":
            return self.hang()
        self.server.accepted.append(body)
        self.say("250 OK queued")
        if self.fail == "before_quit":
            return self.drop()
        return True

    def body(self) -> bytes | None:
        """The message up to its final dot; None when the line closed (or was dropped) before it."""
        body = bytearray()
        while True:
            chunk = self.reader.readline()
            if not chunk:
                return None
            if chunk == b".\r\n":
                return bytes(body)
            body += chunk
            if self.fail == "body" and len(body) > 200:
                self.drop()
                return None
