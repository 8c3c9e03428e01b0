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
        reader = sock.makefile("rb")
        self.connected.set()

        def say(line: str) -> None:
            sock.sendall(line.encode() + b"\r\n")

        def drop() -> None:
            self.reached.set()
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()

        try:
            if fail == "greeting":
                self.reached.set()
                self.release.wait(30)
                sock.close()
                return
            say("220 raw.test ESMTP")
            while True:
                line = reader.readline()
                if not line:
                    return
                verb = line.split(b" ", 1)[0].split(b":", 1)[0].strip().upper()
                if verb in (b"EHLO", b"HELO"):
                    if fail == "ehlo":
                        return drop()
                    say("250 raw.test")
                elif verb == b"MAIL":
                    if fail == "mail":
                        return drop()
                    say("250 OK")
                elif verb == b"RCPT":
                    if fail == "rcpt":
                        return drop()
                    say("250 OK")
                elif verb == b"DATA":
                    if fail == "data":
                        return drop()
                    say("354 go ahead")
                    body = bytearray()
                    while True:
                        chunk = reader.readline()
                        if not chunk:
                            return
                        if chunk == b".\r\n":
                            break
                        body += chunk
                        if fail == "body" and len(body) > 200:
                            return drop()
                    self.complete.append(bytes(body))
                    if fail == "before_250":
                        return drop()
                    if fail == "body_hang":
                        self.reached.set()
                        self.release.wait(30)
                        sock.close()
                        return
                    self.accepted.append(bytes(body))
                    say("250 OK queued")
                    if fail == "before_quit":
                        return drop()
                elif verb == b"RSET" or verb == b"NOOP":
                    say("250 OK")
                elif verb == b"QUIT":
                    say("221 bye")
                    return sock.close()
                else:
                    say("502 not implemented")
        except OSError:
            return
