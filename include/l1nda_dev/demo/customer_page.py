"""The customer page in the demo: `l1nda-sync web`'s app served by uvicorn in the demo's process, and what a
customer does with an invitation mail.

The page listens on 127.0.0.1; `make airflow` serves it on 8090 by default, the port of the demo scenario's
redirect URI (`http://127.0.0.1:8090/nmbrs/callback`), so a REST invitation can be followed in a browser through
the simulator's consent page and back. `make demo` serves it on a free port and follows one token invitation
itself, as the customer would in a browser: open the link, fill in the form, read the result.
"""

from __future__ import annotations

import html
import re
import socket
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import httpx

from l1nda_dev.demo.stack import DemoError

if TYPE_CHECKING:
    from l1nda_dev.demo.mailsink import StoredMail

START_TIMEOUT_S = 20.0
INVITE = re.compile(r"https?://[^\s<>\"']+/invite/[A-Za-z0-9_-]{20,}")


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:port (0: a free one); a busy port is a clear error."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise DemoError(f"the customer page cannot listen on 127.0.0.1:{port} ({exc.strerror}); stop what uses it "
                        "or choose another with --web-port") from None
    return sock


class CustomerPage:
    """uvicorn serving the customer page on a bound socket, in a daemon thread of the demo's process."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.port = int(sock.getsockname()[1])
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> CustomerPage:
        """Serve the app (settings as `l1nda-sync web` reads them: the environment the demo set, with Airflow's
        connections such as nmbrs_soap); returns once it accepts requests."""
        import uvicorn

        from l1nda_sync.settings import Settings
        from l1nda_sync.web.app import create_app

        app = create_app(Settings.load())
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                        name="customer-page")
        self._thread.start()
        started = threading.Event()
        for _ in range(int(START_TIMEOUT_S / 0.05)):
            if self._server.started or not self._thread.is_alive():
                break
            started.wait(0.05)
        if not self._server.started:
            self.stop()
            raise DemoError(f"the customer page did not start within {START_TIMEOUT_S:.0f} s")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> CustomerPage:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def invitation_link(mail: StoredMail) -> str | None:
    """The invitation link in a mail's text, if it has one."""
    message = mail.message()
    body = message.get_body(("plain",)) if isinstance(message, EmailMessage) else None
    text = body.get_content() if body is not None else ""
    found = INVITE.search(str(text))
    return found.group(0) if found else None


@dataclass(frozen=True)
class Answer:
    """What the page showed: the HTTP status, `main`'s id and data attribute, the list items by list id."""

    status: int
    main: str
    code: str | None
    items: dict[str, list[str]]


def read_page(response: httpx.Response) -> Answer:
    text = response.text
    main = re.search(r'<main id="([a-z_]+)"(?: data-(?:error|purpose)="([a-z_]+)")?', text)
    items = {m.group(1): [html.unescape(re.sub(r"<[^>]+>", "", li)).strip()
                          for li in re.findall(r"<li[^>]*>(.*?)</li>", m.group(2), re.S)]
             for m in re.finditer(r'<ul id="([a-z_]+)">(.*?)</ul>', text, re.S)}
    return Answer(response.status_code, main.group(1) if main else "", main.group(2) if main else None, items)


def hand_over_token(link: str, username: str, token: str) -> tuple[Answer, Answer]:
    """Open the link, fill in the token form and send it, then open the link again: both pages as read."""
    with httpx.Client(timeout=30.0, follow_redirects=False) as browser:
        form = browser.get(link)
        found = re.search(r'name="csrf" value="([^"]+)"', form.text)
        if form.status_code != 200 or found is None:
            raise DemoError(f"the invitation page answered {form.status_code} without a token form: "
                            f"{read_page(form)}")
        result = browser.post(f"{link}/token", data={"csrf": html.unescape(found.group(1)), "username": username,
                                                     "token": token})
        again = browser.get(link)
    return read_page(result), read_page(again)
