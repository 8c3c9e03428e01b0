"""The keep-alive pool against a scripted server on a real socket: what every odd answer becomes.

Every failure must surface as the requests exception the client already maps to a TransientError (never an
answer that is not the server's), a reused connection that the server had closed must cost no error and no
duplicate, and answers cut anywhere must read the same.
"""

from __future__ import annotations

import gzip
import itertools
import os
import select
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l1nda_sync.nmbrs import keepalive
from l1nda_sync.nmbrs.keepalive import KeepAlivePool, Origin, request_head
from l1nda_sync.nmbrs.transport import HttpStatusError, NmbrsTransport, pooled_session
from l1nda_sync.nmbrs.wsdl_cache import WsdlCache

from .keepalive_server import ScriptedServer, Step, answer, chunked

TIMEOUT = (2.0, 2.0)
SOAP = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"https://api.nmbrs.nl/soap/v3/X"'}


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    running = ScriptedServer()
    yield running
    running.close()


@pytest.fixture
def pool() -> Iterator[KeepAlivePool]:
    made = KeepAlivePool(maxsize=4, verify=True)
    yield made
    made.close()


def wait_readable(sock: object) -> None:
    """Until the socket has something to read (a close included); no sleep: it waits for the event itself."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)  # type: ignore[arg-type]
    assert poller.poll(2000)


def post(pool: KeepAlivePool, server: ScriptedServer, body: bytes = b"<x/>",
         timeout: tuple[float, float] = TIMEOUT) -> requests.Response:
    origin = Origin.of(server.url)
    head = request_head(origin, "/soap/v3/DebtorService.asmx", {**SOAP, "Content-Length": str(len(body))})
    return pool.send(server.url, origin, head, body, timeout)


# -- what is read -----------------------------------------------------------------------------------------------
BODY = ("<soap:Envelope>" + "<Company><Id>1</Id><Name>Bakkerij ü</Name></Company>" * 40 + "</soap:Envelope>").encode()
WIRES = {
    "length": answer(200, BODY, {"Content-Type": "text/xml; charset=utf-8"}),
    "chunked": answer(200, chunked(BODY), {"Transfer-Encoding": "chunked"}),
    "gzip": answer(200, gzip.compress(BODY), {"Content-Encoding": "gzip"}),
    "deflate": answer(200, zlib.compress(BODY), {"Content-Encoding": "deflate"}),
    "raw deflate": answer(200, zlib.compress(BODY)[2:-4], {"Content-Encoding": "deflate"}),
    "gzip, then padding": answer(200, gzip.compress(BODY) + b"\0" * 8, {"Content-Encoding": "gzip"}),
    "gzip, then one byte": answer(200, gzip.compress(BODY) + b"\n", {"Content-Encoding": "gzip"}),
    "gzip, then junk": answer(200, gzip.compress(BODY) + b"junk", {"Content-Encoding": "gzip"}),
    "two gzip members": answer(200, gzip.compress(BODY[:99]) + gzip.compress(BODY[99:]), {"Content-Encoding": "gzip"}),
    "continue first": b"HTTP/1.1 100 Continue\r\n\r\n" + answer(200, BODY),
}


def split(wire: bytes, cuts: list[int]) -> tuple[bytes, ...]:
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    return tuple(wire[a:b] for a, b in itertools.pairwise(points) if b > a)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(WIRES)), cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=8))
def test_an_answer_reads_the_same_however_it_is_cut(server: ScriptedServer, pool: KeepAlivePool, kind: str,
                                                    cuts: list[int]) -> None:
    server.play(Step(split(WIRES[kind], cuts)))
    response = post(pool, server)
    assert (response.status_code, response.content) == (200, BODY)
    assert pool.opened == 1  # every answer had a length: the one connection carried them all


def test_headers_are_kept_as_requests_keeps_them(server: ScriptedServer, pool: KeepAlivePool) -> None:
    wire = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html; charset=iso-8859-1\r\nRetry-After: 7\r\n"
            b"X-Seen: a\r\nX-Seen: b\r\nContent-Length: 4\r\n\r\ndown")
    server.play(Step((wire,)))
    response = post(pool, server)
    assert (response.status_code, response.reason, response.content) == (503, "Service Unavailable", b"down")
    assert response.headers["retry-after"] == "7"
    assert response.headers["X-Seen"] == "a, b"
    assert response.encoding == "iso-8859-1"
    assert response.raw is None  # no Set-Cookie: nothing for a cookie jar


def test_set_cookie_reaches_the_session_jar_and_later_posts_go_requests_way(server: ScriptedServer,
                                                                             tmp_path: Path) -> None:
    transport = _transport(tmp_path)
    server.play(Step((answer(200, b"<a/>", {"Set-Cookie": "node=2; Path=/"}),)))
    transport.post(server.url, b"<x/>", SOAP)
    assert transport.session.cookies.get("node") == "2"
    assert transport.prepare_post(server.url, b"<x/>", SOAP) is None  # requests' own path from now on
    transport.post(server.url, b"<y/>", SOAP)
    assert transport.keepalive.opened == 1
    assert server.requests == [b"<x/>", b"<y/>"]
    transport.keepalive.close()


# -- connections: reuse, and the server closing them -------------------------------------------------------------
def test_one_connection_carries_consecutive_calls(server: ScriptedServer, pool: KeepAlivePool) -> None:
    for n in range(5):
        assert post(pool, server, b"<n>%d</n>" % n).content == b"ok"
    assert (pool.opened, server.connections, len(server.requests)) == (1, 1, 5)


def test_a_connection_the_server_closed_at_rest_is_replaced_without_an_error(server: ScriptedServer,
                                                                             pool: KeepAlivePool) -> None:
    server.play(Step((answer(),), close=True))  # the server closes after answering, as at its idle time-out
    post(pool, server, b"<first/>")
    idle = pool._idle[Origin.of(server.url)][0]
    wait_readable(idle.sock)  # the server's close has arrived
    assert idle.dropped()
    assert post(pool, server, b"<second/>").content == b"ok"
    assert server.requests == [b"<first/>", b"<second/>"]  # each read once by the server
    assert pool.opened == 2


def test_bytes_arriving_on_an_idle_connection_are_never_the_next_calls_answer(server: ScriptedServer,
                                                                             pool: KeepAlivePool) -> None:
    go = threading.Event()
    duplicate = Step((answer(200, b"<A/>"),), later=(go, answer(200, b"<A/>")))  # a front end answering twice
    server.echo = True
    server.play(duplicate)
    assert post(pool, server, b"<A/>").content == b"<A/>"
    go.set()
    assert duplicate.written.wait(5)
    wait_readable(pool._idle[Origin.of(server.url)][0].sock)  # the copy has arrived
    assert post(pool, server, b"<B/>").content == b"<B/>"  # not A's copy
    assert post(pool, server, b"<C/>").content == b"<C/>"
    assert pool.opened == 2


def test_a_reused_connection_closed_before_any_answer_is_retried_once_on_a_new_one(server: ScriptedServer,
                                                                                  pool: KeepAlivePool) -> None:
    post(pool, server, b"<first/>")
    server.play(Step((), close=True))  # the request was read, no byte came back: the race with the idle close
    assert post(pool, server, b"<second/>").content == b"ok"
    assert server.requests == [b"<first/>", b"<second/>", b"<second/>"]
    assert pool.opened == 2


@pytest.mark.parametrize("noticed", [True, False], ids=["dropped at checkout", "found out by sending"])
def test_after_a_server_restart_no_call_fails_on_the_dead_pooled_connections(
        server: ScriptedServer, pool: KeepAlivePool, monkeypatch: pytest.MonkeyPatch, noticed: bool) -> None:
    origin = Origin.of(server.url)
    connections = [pool._connect(origin, 2.0) for _ in range(3)]
    for connection in connections:  # three idle connections, as after a busy minute
        pool._checkin(origin, connection)
    for connection in connections:  # each served once, so the server holds all three
        connection.reused = True
    assert [post(pool, server, b"<warm/>").content for _ in range(3)] == [b"ok"] * 3
    assert len(server._open) == 3
    server.drop_connections()
    for connection in pool._idle[origin]:
        wait_readable(connection.sock)  # every close has arrived
    if not noticed:  # the close comes after the check: the race `_Stale` covers
        monkeypatch.setattr(keepalive._Connection, "dropped", lambda self: False)
    for n in range(4):
        assert post(pool, server, b"<n>%d</n>" % n).content == b"ok"
    assert server.requests[3:] == [b"<n>%d</n>" % n for n in range(4)]
    assert pool.opened == 4  # the three dead ones, then one new one that carries the rest


def test_a_new_connection_closed_before_any_answer_is_an_error_not_a_retry(server: ScriptedServer,
                                                                           pool: KeepAlivePool) -> None:
    server.play(Step((), close=True))
    with pytest.raises(requests.ConnectionError, match="before the answer's headers"):
        post(pool, server)
    assert len(server.requests) == 1


def test_connection_close_is_honoured(server: ScriptedServer, pool: KeepAlivePool) -> None:
    server.play(Step((answer(200, b"ok", {"Connection": "close"}),)))
    post(pool, server)
    post(pool, server)
    assert pool.opened == 2


def test_a_body_until_the_server_closes_is_read_whole(server: ScriptedServer, pool: KeepAlivePool) -> None:
    server.play(Step((b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", BODY[:100], BODY[100:]), close=True))
    assert post(pool, server).content == BODY
    post(pool, server)
    assert pool.opened == 2


def test_bytes_after_an_answer_spoil_the_connection_not_the_answer(server: ScriptedServer,
                                                                   pool: KeepAlivePool) -> None:
    server.play(Step((answer() + b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbad",)))
    assert post(pool, server).content == b"ok"
    assert post(pool, server).content == b"ok"
    assert pool.opened == 2


# -- failures become requests' exceptions (transient for the client) ----------------------------------------------
@pytest.mark.parametrize(("step", "error", "words", "whole"), [
    (Step((answer(200, BODY)[:-50],), close=True), requests.exceptions.ChunkedEncodingError, "body was complete",
     False),
    (Step((answer(200, chunked(BODY))[:-9],), close=True), requests.exceptions.ChunkedEncodingError,
     "body was complete", False),
    (Step((b"HTTP/1.1 200 OK\r\nContent-Le",), close=True), requests.ConnectionError, "headers were complete",
     False),
    (Step((b"<html>not http</html>\r\n\r\n",), close=True), requests.ConnectionError, "not an HTTP/1.1 answer",
     False),
    (Step((b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",)),
     requests.ConnectionError, "switched protocols", False),
    (Step((answer(200, b"\x1f\x8bnot gzip", {"Content-Encoding": "gzip"}),)),
     requests.exceptions.ContentDecodingError, "cannot decode the gzip answer", True),
    (Step((answer(200, gzip.compress(BODY)[:-20], {"Content-Encoding": "gzip"}),)),
     requests.exceptions.ContentDecodingError, "cut off", True),
])
def test_a_broken_answer_is_an_error_of_requests_kind(server: ScriptedServer, pool: KeepAlivePool, step: Step,
                                                      error: type[Exception], words: str, whole: bool) -> None:
    server.play(step)
    with pytest.raises(error, match=words):
        post(pool, server)
    # A connection in doubt is never pooled; one whose answer was whole (only its content was bad) is.
    assert len(pool._idle.get(Origin.of(server.url), [])) == (1 if whole else 0)


@pytest.mark.parametrize(("wire", "status", "content"), [
    (answer(503, b"busy", {"Retry-After": "30"}) + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
     b"Content-Encoding: gzip\r\n\r\n", 503, b"busy"),
    (answer(200, b"<ok/>") + answer(500, b"later"), 200, b"<ok/>"),
], ids=["an error, then more", "a good answer, then an error"])
def test_what_follows_an_answer_in_the_same_read_never_changes_it(server: ScriptedServer, pool: KeepAlivePool,
                                                                  wire: bytes, status: int, content: bytes) -> None:
    server.play(Step((wire,)))
    response = post(pool, server)
    assert (response.status_code, response.content) == (status, content)
    assert "Content-Encoding" not in response.headers
    assert pool._idle.get(Origin.of(server.url), []) == []  # and the connection is not used again


def test_a_503s_retry_after_survives_bytes_that_follow(server: ScriptedServer, tmp_path: Path) -> None:
    server.play(Step((answer(503, b"busy", {"Retry-After": "30"}) + answer(200, b""),)))
    transport = _transport(tmp_path)
    with pytest.raises(HttpStatusError) as caught:
        transport.post(server.url, b"<x/>", SOAP)
    assert (caught.value.status, caught.value.retry_after) == (503, 30)
    transport.keepalive.close()


def test_a_trailer_is_not_a_header(server: ScriptedServer, pool: KeepAlivePool) -> None:
    server.play(Step((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n<ok/>\r\n0\r\n"
                      b"Content-Encoding: gzip\r\n\r\n",)))
    response = post(pool, server)
    assert response.content == b"<ok/>"
    assert "Content-Encoding" not in response.headers


@pytest.mark.parametrize(("wire", "words"), [
    (b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(101)) + b"Content-Length: 2\r\n\r\nok",
     "more than 100 headers"),
    (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 300_000 + b"\r\nContent-Length: 2\r\n\r\nok", "headers go on past"),
], ids=["too many headers", "a header without end"])
def test_an_endless_header_section_is_refused_as_http_client_refuses_it(server: ScriptedServer,
                                                                        pool: KeepAlivePool, wire: bytes,
                                                                        words: str) -> None:
    server.play(Step((wire,), close=True))
    with pytest.raises(requests.ConnectionError, match=words):
        post(pool, server)


def test_an_http10_answer_without_keep_alive_is_not_pooled(server: ScriptedServer, pool: KeepAlivePool) -> None:
    server.play(Step((answer(200, b"ok").replace(b"HTTP/1.1", b"HTTP/1.0"),)),
                Step((answer(200, b"ok", {"Connection": "keep-alive"}).replace(b"HTTP/1.1", b"HTTP/1.0"),)))
    assert post(pool, server).content == b"ok"
    assert pool._idle.get(Origin.of(server.url), []) == []
    assert post(pool, server).content == b"ok"
    assert len(pool._idle[Origin.of(server.url)]) == 1  # HTTP/1.0 with keep-alive: kept


def test_a_stale_retry_gets_only_the_time_left(server: ScriptedServer, pool: KeepAlivePool) -> None:
    post(pool, server, b"<first/>")
    # The server works 0.6 s on the next request, then drops the connection without a byte; the new connection
    # never answers. The call must end at its 1 s read time-out, not 0.6 s + another full second.
    server.play(Step(close=True, pause=0.6), Step(silent=True))
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        post(pool, server, b"<second/>", timeout=(1.0, 1.0))
    assert time.monotonic() - started < 1.4


def test_no_answer_within_the_read_timeout(server: ScriptedServer, pool: KeepAlivePool) -> None:
    server.play(Step(silent=True))
    with pytest.raises(requests.exceptions.ReadTimeout, match="read time-out"):
        post(pool, server, timeout=(2.0, 0.3))


def test_nobody_listening_is_a_connection_error(pool: KeepAlivePool) -> None:
    server = ScriptedServer()
    server.close()  # the port is free again: connecting is refused
    with pytest.raises(requests.ConnectionError, match="cannot connect"):
        post(pool, server)


def test_threads_never_read_each_others_answers() -> None:
    server = ScriptedServer(echo=True)  # answers each request with its own body
    pool = KeepAlivePool(maxsize=8, verify=True)
    mismatches: list[tuple[bytes, bytes]] = []

    def worker(n: int) -> None:
        for i in range(25):
            body = b"<call>%d-%d</call>" % (n, i)
            got = post(pool, server, body).content
            if got != body:
                mismatches.append((body, got))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert mismatches == []
    assert len(server.requests) == 200
    assert pool.opened <= 8  # at most one connection per thread at a time, reused afterwards
    pool.close()
    server.close()


# -- TLS ------------------------------------------------------------------------------------------------------------
def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[ScriptedServer, Path]]:
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    running = ScriptedServer(tls=context)
    yield running, cert
    running.close()


def test_tls_is_verified_against_the_given_bundle(tls_server: tuple[ScriptedServer, Path]) -> None:
    server, cert = tls_server
    trusting = KeepAlivePool(maxsize=2, verify=str(cert))
    assert post(trusting, server).content == b"ok"
    assert post(trusting, server).content == b"ok"
    assert trusting.opened == 1
    trusting.close()


def test_tls_with_an_unknown_certificate_is_refused(tls_server: tuple[ScriptedServer, Path]) -> None:
    server, _ = tls_server
    default = KeepAlivePool(maxsize=2, verify=True)  # certifi's bundle, as requests uses
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        post(default, server)
    unverified = KeepAlivePool(maxsize=2, verify=False)
    assert post(unverified, server).content == b"ok"


# -- what the transport sends this way, and what not ----------------------------------------------------------------
def _transport(tmp_path: Path) -> NmbrsTransport:
    session = pooled_session(4)
    session.trust_env = False  # as `pooled_session(n, base_url)` leaves it: the environment read once, not per call
    return NmbrsTransport(session, WsdlCache(str(tmp_path), 60), connect_timeout=2, read_timeout=2)


def test_the_request_on_the_wire_is_requests_request(server: ScriptedServer, tmp_path: Path) -> None:
    transport = _transport(tmp_path)
    transport.post(server.url, b"<x>\xc3\xbc</x>", SOAP)
    assert server.requests == [b"<x>\xc3\xbc</x>"]
    template = transport.prepare_post(server.url, b"<x>\xc3\xbc</x>", SOAP)
    assert template is not None
    origin = Origin.of(server.url)
    head = transport._heads[next(iter(transport._heads))][1]
    assert head.startswith(b"POST /soap/v3/DebtorService.asmx HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % origin.port)
    for name in ("User-Agent", "Content-Type", "SOAPAction", "Accept", "Connection"):
        assert f"{name}: {template.headers[name]}\r\n".encode() in head
    assert b"Accept-Encoding: gzip, deflate\r\n" in head
    assert transport.keepalive.opened == 1
    transport.keepalive.close()


def test_a_proxy_or_a_client_certificate_takes_requests_way(server: ScriptedServer, tmp_path: Path) -> None:
    transport = _transport(tmp_path)
    transport.session.cert = str(tmp_path / "client.pem")
    assert not transport._goes_direct(transport._template(server.url, b"<x/>", SOAP)[1])  # type: ignore[index]
    transport.session.cert = None
    transport.session.proxies["http"] = "http://proxy.internal:3128"
    assert not transport._goes_direct(transport._template(server.url, b"<x/>", SOAP)[1])  # type: ignore[index]
    transport.session.proxies.clear()
    transport.session.verify = False  # not the CA choice the pool was made with
    assert not transport._goes_direct(transport._template(server.url, b"<x/>", SOAP)[1])  # type: ignore[index]
    transport.session.verify = transport.keepalive.verify
    assert transport._goes_direct(transport._template(server.url, b"<x/>", SOAP)[1])  # type: ignore[index]


def test_an_error_page_echoing_the_token_is_scrubbed(server: ScriptedServer, tmp_path: Path) -> None:
    from l1nda_sync.nmbrs.redaction import guarding

    token = "5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"  # a made-up token
    server.play(Step((answer(502, f"<html>bad gateway for token {token}</html>".encode(),
                             {"Content-Type": "text/html"}),)))
    transport = _transport(tmp_path)
    with guarding(token), pytest.raises(HttpStatusError) as caught:
        transport.post(server.url, f"<Token>{token}</Token>".encode(), SOAP)
    assert caught.value.status == 502
    assert token not in str(caught.value)
    assert token[-4:] in str(caught.value)
    transport.keepalive.close()


# -- a pool's life: closed, and forked ------------------------------------------------------------------------------
def test_a_closed_pool_keeps_no_connection(server: ScriptedServer, pool: KeepAlivePool) -> None:
    post(pool, server)
    pool.close()
    assert pool._idle == {}
    assert post(pool, server).content == b"ok"  # a late call still works, on a connection of its own
    assert pool._idle.get(Origin.of(server.url), []) == []
    assert pool.opened == 2


def test_a_forked_child_never_uses_its_parents_connections(server: ScriptedServer, pool: KeepAlivePool) -> None:
    server.echo = True
    assert post(pool, server, b"<parent/>").content == b"<parent/>"
    child = os.fork()
    if child == 0:  # the child: its own connection, its own answer; exit code 0 only if so
        ok = pool._idle == {} and post(pool, server, b"<child/>").content == b"<child/>" and pool.opened == 2
        os._exit(0 if ok else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert post(pool, server, b"<parent again/>").content == b"<parent again/>"
    assert pool.opened == 1  # the parent's connection survived the child's exit
    assert server.connections == 2
