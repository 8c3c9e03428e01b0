"""`l1nda-sync web --proxy-headers` believes X-Forwarded-For only from the proxy (--forwarded-allow-ips, default
127.0.0.1): a client elsewhere that names a new address in each request is still counted as itself, so it cannot
walk around the per-address rate limit. Real HTTP against uvicorn run with the keywords `l1nda-sync web` passes it;
the "elsewhere" client connects from 127.0.0.2 (the whole of 127/8 is loopback on Linux)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from l1nda_sync.cli import main
from tests.l1nda_sync.web.conftest import WebStack

LIMIT = 3


def _serve(monkeypatch: pytest.MonkeyPatch, *argv: str) -> dict[str, Any]:
    """What `l1nda-sync web ARGV` hands uvicorn.run (the app and its keywords), without serving."""
    monkeypatch.setenv("L1NDA_WEB_RATE_LIMIT", str(LIMIT))
    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    assert main(["web", *argv]) == 0
    return served


@pytest.fixture
def proxied(web_stack: WebStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The page as `l1nda-sync web --proxy-headers` serves it (its own uvicorn), on 127.0.0.1: its base URL."""
    from tests.l1nda_sync.web.conftest import Served

    served = _serve(monkeypatch, "--proxy-headers")
    assert served["forwarded_allow_ips"] == "127.0.0.1"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    running = Served(served["app"], sock)
    running.server.config = uvicorn.Config(served["app"], log_config=None, lifespan="off", access_log=False,
                                           proxy_headers=served["proxy_headers"],
                                           forwarded_allow_ips=served["forwarded_allow_ips"])
    running.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        running.stop()


def _statuses(base: str, source: str, spoof: bool) -> list[int]:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=10) as client:
        return [client.get(f"{base}/invite/not-a-link-{n}",
                           headers={"X-Forwarded-For": f"203.0.113.{n}"} if spoof else {}).status_code
                for n in range(LIMIT + 2)]


def test_a_client_cannot_fake_its_address_around_the_rate_limit(proxied: str) -> None:
    assert _statuses(proxied, "127.0.0.2", spoof=True) == [404] * LIMIT + [429, 429]


def test_the_proxy_names_each_customer_and_each_is_counted_alone(proxied: str) -> None:
    assert _statuses(proxied, "127.0.0.1", spoof=True) == [404] * (LIMIT + 2)


@pytest.mark.parametrize(("value", "why"), [("*", "trusts every client"), ("127.0.0.1,*", "trusts every client"),
                                            ("proxy.local", "not an IP address"), ("", "the proxy's address")])
def test_web_refuses_to_trust_every_client(value: str, why: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["web", "--proxy-headers", "--forwarded-allow-ips", value]) == 2
    err = capsys.readouterr().err
    assert "--forwarded-allow-ips" in err
    assert why in err


def test_web_takes_the_proxys_networks(web_stack: WebStack, monkeypatch: pytest.MonkeyPatch) -> None:
    served = _serve(monkeypatch, "--proxy-headers", "--forwarded-allow-ips", "172.16.0.0/12, 192.168.0.1")
    assert served["forwarded_allow_ips"] == "172.16.0.0/12,192.168.0.1"
