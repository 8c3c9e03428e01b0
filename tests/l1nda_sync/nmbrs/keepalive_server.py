"""A scripted HTTP/1.1 server over a real socket, for the keep-alive pool's fault matrix.

Each accepted connection serves requests one after another; for each request the server reads the head and the
Content-Length body, records it, and plays the next step of the script: bytes to write (in the fragments given),
then whether to close, to close without answering, or to go silent. With no step left it answers 200 "ok"
(or, with `echo`, the request's own body).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Step:
    """What the server does with one request."""

    fragments: tuple[bytes, ...] = ()
    close: bool = False  # close the connection after writing
    silent: bool = False  # write nothing and keep the connection open (a hang)
    pause: float = 0.0  # seconds the server works on the request before it writes (or closes)
    later: tuple[threading.Event, bytes] | None = None  # once the event is set, write these bytes too (unasked)
    written: threading.Event = field(default_factory=threading.Event)  # set when `later` has been written


def answer(status: int = 200, body: bytes = b"ok", headers: dict[str, str] | None = None, *,
           reason: str = "OK") -> bytes:
    head = [f"HTTP/1.1 {status} {reason}"]
    given = dict(headers or {})
    if "Content-Length" not in given and "Transfer-Encoding" not in given:
        given["Content-Length"] = str(len(body))
    head.extend(f"{name}: {value}" for name, value in given.items())
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def chunked(body: bytes, sizes: Iterator[int] | None = None) -> bytes:
    out, at = [], 0
    for size in sizes or iter([max(1, len(body) // 3)] * (len(body) + 1)):
        part = body[at:at + size]
        if not part:
            break
        out.append(b"%x\r\n%s\r\n" % (len(part), part))
        at += size
    return b"".join(out) + b"0\r\n\r\n"


@dataclass
class ScriptedServer:
    """Listens on 127.0.0.1 (optionally with TLS); `requests` holds every request body it read, in order."""

    tls: ssl.SSLContext | None = None
    echo: bool = False  # with no step left, answer 200 with the request's own body (else 200 "ok")
    script: deque[Step] = field(default_factory=deque)
    requests: list[bytes] = field(default_factory=list)
    heads: list[bytes] = field(default_factory=list)  # each request's line and headers, as sent
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/soap/v3/DebtorService.asmx"

    def play(self, *steps: Step) -> None:
        with self.lock:
            self.script.extend(steps)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            self._open.append(conn)
            reader = conn.makefile("rb")
            while True:
                read = _read_request(reader)
                if read is None:
                    return
                head, body = read
                with self.lock:
                    self.heads.append(head)
                    self.requests.append(body)
                    step = self.script.popleft() if self.script else Step((answer(200, body if self.echo else b"ok"),))
                if step.silent:
                    reader.read()  # until the client gives up and closes
                    return
                if step.pause:
                    threading.Event().wait(step.pause)
                for fragment in step.fragments:
                    conn.sendall(fragment)
                if step.later is not None:
                    event, data = step.later
                    event.wait(5)
                    conn.sendall(data)
                    step.written.set()
                if step.close:
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()

    def drop_connections(self) -> None:
        """Close every connection (as a restarted server does) but keep listening."""
        for conn in list(self._open):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread: the port refuses from now on
        self.listener.close()
        for conn in self._open:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


def _read_request(reader: object) -> tuple[bytes, bytes] | None:
    """(request line and headers, body) of the next request; None when the client closed."""
    length = 0
    first = reader.readline()  # type: ignore[attr-defined]
    if not first:
        return None
    head = [first]
    while True:
        line = reader.readline()  # type: ignore[attr-defined]
        if line in (b"\r\n", b"\n", b""):
            break
        head.append(line)
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return b"".join(head), reader.read(length) if length else b""  # type: ignore[attr-defined]
