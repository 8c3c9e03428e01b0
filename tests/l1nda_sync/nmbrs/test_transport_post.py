"""The transport's POST skips requests' per-call preparation only when the result is the same request."""

from __future__ import annotations

import requests

from l1nda_sync.nmbrs.client import NmbrsClient

HEADERS = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"https://api.nmbrs.nl/soap/v3/X"'}


def prepared_by_requests(session: requests.Session, address: str, body: bytes) -> requests.PreparedRequest:
    return session.prepare_request(requests.Request("POST", address, data=body, headers=HEADERS))


def test_the_prepared_post_is_what_requests_prepares(client: NmbrsClient) -> None:
    address = f"{client.base_url}DebtorService.asmx"
    body = "<x>ünï</x>".encode()
    ours = client.transport.prepare_post(address, body, HEADERS)
    theirs = prepared_by_requests(client.session, address, body)
    assert ours is not None
    assert (ours.method, ours.url, ours.body, ours.hooks) == (theirs.method, theirs.url, theirs.body, theirs.hooks)
    assert list(ours.headers.items()) == list(theirs.headers.items())
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

