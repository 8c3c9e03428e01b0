"""`web_stack`: the customer page served by uvicorn on a free port, against a migrated registry (embedded
PostgreSQL), the Nmbrs simulator (demo scenario, with L1NDA's REST app's redirect URI pointing at the page's
callback) and an aiosmtpd sink that receives every mail.

    def test_x(web_stack):
        url = web_stack.invite("CUST-DEGRAAF", "jan@bakkerij-degraaf.example", "rest")  # as mailed
        httpx.get(url) ...

`web_stack.clock` is the page's clock (`advance(days=15)` to see a link expire). The settings are in the
environment (monkeypatch), so `l1nda-sync` run in-process uses the same world.
"""

from __future__ import annotations

import copy
import email
import logging
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml

import nmbrs_sim
from l1nda_sync.cli import main
from l1nda_sync.settings import Settings
from l1nda_sync.web.app import create_app
from nmbrs_sim.testing import RunningSim, running_simulator
from tests.l1nda_sync.alerts.harness import MailServer

DEMO = Path(nmbrs_sim.__file__).parent / "scenarios" / "demo.yaml"
APP_ID = "PartnerApp_L1NDA_demo"
CALLBACK_PATH = "/nmbrs/callback"
WEB_SECRET = "test-web-secret-0123456789abcdefghijklmnop"
# The demo's logins and their passwords on the simulator's consent page.
PASSWORDS = {
    "salaris@bakkerij-degraaf.example": "degraaf-demo-pw",
    "payroll@modehuis-vandijk.example": "vandijk-demo-pw",
    "hr@thuiszorg-delinde.example": "delinde-demo-pw",
}


@dataclass
class Clock:
    """The page's clock: real time, or `advance`d past it."""

    offset: timedelta = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


@dataclass
class WebStack:
    base_url: str
    database_url: str
    sim: RunningSim
    smtp: MailServer
    settings: Settings
    clock: Clock
    scenario: dict[str, Any] = field(repr=False)

    @property
    def callback_url(self) -> str:
        return self.base_url + CALLBACK_PATH

    def mails(self, to: str | None = None) -> list[EmailMessage]:
        return self.smtp.messages(to)

    def invite(self, customer: str, contact: str, purpose: str, language: str = "en", *,
               token_id: int | None = None) -> str:
        """`l1nda-sync invite ...` in-process; the URL as the mail to `contact` carries it."""
        before = len(self.smtp.messages(contact))
        argv = ["invite", "--customer", customer, "--contact", contact, "--purpose", purpose, "--language", language,
                "--json"]
        if token_id is not None:
            argv += ["--token-id", str(token_id)]
        code = main(argv)
        assert code == 0, f"l1nda-sync invite exited {code}"
        received = self.smtp.messages(contact)
        assert len(received) == before + 1, "the invitation mail did not arrive"
        return invitation_url(received[-1], self.base_url)

    def token_of(self, username: str) -> str:
        """The SOAP token the scenario gives a login (the simulator accepts it)."""
        for env in self.scenario["environments"]:
            for login in env["logins"]:
                if login["username"] == username:
                    return str(login["token"])
        raise KeyError(username)


def invitation_url(message: EmailMessage, base_url: str) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    found = re.search(re.escape(base_url) + r"/invite/[A-Za-z0-9_-]+", text)
    assert found, f"no invitation link in the mail: {text[:500]}"
    return found.group(0)


def message_from(raw: bytes) -> EmailMessage:
    parsed: EmailMessage = email.message_from_bytes(raw, policy=default_policy)  # type: ignore[assignment]
    return parsed


def _scenario(callback: str) -> dict[str, Any]:
    scenario = yaml.safe_load(DEMO.read_text())
    scenario = copy.deepcopy(scenario)
    for client in scenario["rest"]["clients"]:
        if client["client_id"] == APP_ID:
            client["redirect_uris"] = [callback]
    return scenario


class Served:
    """uvicorn serving an app on an already bound socket, in a daemon thread."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        config = uvicorn.Config(app, log_config=None, log_level="debug", access_log=True, lifespan="off")
        self.server = uvicorn.Server(config)
        self.sock = sock
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True,
                                       name="customer-page")

    def start(self) -> Served:
        self.thread.start()
        started = threading.Event()

        def wait() -> None:
            while not self.server.started and self.thread.is_alive():
                started.wait(0.02)

        wait()
        if not self.server.started:
            raise RuntimeError("the customer page did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture(autouse=True)
def _quiet_smtp_server_log() -> None:
    logging.getLogger("mail.log").setLevel(logging.WARNING)


@pytest.fixture
def web_stack(registry_url: str, fernet_keys: list[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[WebStack]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    scenario = _scenario(base_url + CALLBACK_PATH)
    smtp = MailServer().start()
    try:
        with running_simulator(scenario) as sim:
            app_cfg = next(c for c in scenario["rest"]["clients"] if c["client_id"] == APP_ID)
            env = {
                "L1NDA_DATABASE_URL": registry_url,
                "L1NDA_NMBRS_BASE_URL": sim.base_url,
                "L1NDA_NMBRS_REST_API_BASE_URL": sim.root_url,
                "L1NDA_NMBRS_REST_IDENTITY_BASE_URL": sim.root_url,
                "L1NDA_NMBRS_REST_CLIENT_ID": APP_ID,
                "L1NDA_NMBRS_REST_CLIENT_SECRET": str(app_cfg["client_secret"]),
                "L1NDA_NMBRS_REST_SUBSCRIPTION_KEY": str(app_cfg["subscription_keys"][0]),
                "L1NDA_NMBRS_REST_REDIRECT_URI": base_url + CALLBACK_PATH,
                "L1NDA_WEB_BASE_URL": base_url,
                "L1NDA_WEB_SECRET": WEB_SECRET,
                "L1NDA_OPS_RECIPIENTS": "support@l1nda.example",
                "AIRFLOW_CONN_SMTP_DEFAULT": smtp.connection_json,
            }
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            settings = Settings.load()
            clock = Clock()
            served = Served(create_app(settings, clock=clock), sock).start()
            try:
                yield WebStack(base_url, registry_url, sim, smtp, settings, clock, scenario)
            finally:
                served.stop()
    finally:
        smtp.stop()
