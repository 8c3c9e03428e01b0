"""The transport's POST skips requests' per-call preparation only when the result is the same request."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
import requests

from l1nda_sync.nmbrs.client import NmbrsClient

from .conftest import ENV, MASTER_ALL

HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"https://api.nmbrs.nl/soap/v3/X"'}


def prepared_by_requests(session: requests.Session, address: str, body: bytes) -> requests.PreparedRequest:
    return session.prepare_request(requests.Request("POST", address, data=body, headers=HEADERS))


def test_the_prepared_post_is_what_requests_prepares(client: NmbrsClient) -> None:
    address = f"{client.base_url}DebtorService.asmx"
    first = client.transport.prepare_post(address, b"<first-call-builds-the-template/>", HEADERS)
    body = "<x>ünï</x>".encode()
    ours = client.transport.prepare_post(address, body, HEADERS)
    assert first is not None
    assert ours is not first
    assert first.body == b"<first-call-builds-the-template/>"  # each call has its own body and length
    assert first.headers["Content-Length"] == "33"
    theirs = prepared_by_requests(client.session, address, body)
    assert ours is not None
    assert (ours.method, ours.url, ours.body, ours.hooks) == (theirs.method, theirs.url, theirs.body, theirs.hooks)
    assert list(ours.headers.items()) == list(theirs.headers.items())
    assert type(ours._cookies) is type(theirs._cookies)
    assert list(ours._cookies) == list(theirs._cookies) == []
    assert ours.headers["Content-Length"] == str(len(body))
    assert ours.headers["User-Agent"] == "l1nda-nmbrs-sync (zeep)"


def test_what_requests_would_add_takes_requests_own_path(client: NmbrsClient) -> None:
    address = f"{client.base_url}DebtorService.asmx"
    transport, session = client.transport, client.session
    assert transport.prepare_post(address, "<x/>", HEADERS) is None  # text, not bytes
    assert transport.prepare_post("http://user:pw@127.0.0.1:1/x.asmx", b"<x/>", HEADERS) is None  # auth in the URL
    session.cookies.set("sticky", "1")
    assert transport.prepare_post(address, b"<x/>", HEADERS) is None
    session.cookies.clear()
    session.hooks["response"].append(lambda response, **kwargs: response)
    assert transport.prepare_post(address, b"<x/>", HEADERS) is None
    session.hooks["response"].clear()
    assert transport.prepare_post(address, b"<x/>", HEADERS) is not None



class _Redirecting(http.server.BaseHTTPRequestHandler):
    """Answers every POST with a 307 to the same path on `target`, setting a cookie (as a load balancer may)."""

    target = ""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._redirect(cookie=True)

    def do_GET(self) -> None:
        self._redirect(cookie=False)

    def _redirect(self, *, cookie: bool) -> None:
        self.send_response(307)
        self.send_header("Location", self.target + self.path.split("/soap/v3/", 1)[1])
        if cookie:
            self.send_header("Set-Cookie", "node=2; Path=/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def redirecting(sim) -> Iterator[str]:
    handler = type("Handler", (_Redirecting,), {"target": sim.base_url})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/soap/v3/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_redirect_is_followed_and_its_cookie_kept_as_requests_does(sim, client, make_client, redirecting) -> None:
    redirected = make_client(nmbrs_base_url=redirecting)
    assert redirected.soap_service("DebtorService").address.startswith(redirecting)
    assert not redirected.session.cookies  # the WSDL's redirect set none
    direct = client.debtors(MASTER_ALL.creds(ENV))
    via = redirected.debtors(MASTER_ALL.creds(ENV))
    assert via == direct
    assert redirected.session.cookies.get("node") == "2"
    assert redirected.transport.prepare_post(f"{redirecting}DebtorService.asmx", b"<x/>", HEADERS) is None
