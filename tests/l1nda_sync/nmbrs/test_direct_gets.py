"""`DirectGets` (the REST client's GETs) against a scripted server on a real socket: the request requests would
send, on one kept-alive connection; requests' own way wherever requests would add something (a proxy, cookies,
a redirect); and no secret in what a failure says."""

from __future__ import annotations

from collections.abc import Iterator
from enum import Enum

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from requests.models import PreparedRequest

from l1nda_sync.masking import Secret
from l1nda_sync.nmbrs.errors import TransientError, UnknownNmbrsError
from l1nda_sync.nmbrs.limits import CallGate
from l1nda_sync.nmbrs.rest.client import RestClient
from l1nda_sync.nmbrs.rest.config import RestApp
from l1nda_sync.nmbrs.rest.probe import DEBTORS
from l1nda_sync.nmbrs.retry import RetryPolicy
from l1nda_sync.nmbrs.transport import DirectGets, pooled_session
from l1nda_sync.settings import Settings

from .keepalive_server import ScriptedServer, Step, answer

TIMEOUT = (2.0, 2.0)
TOKEN = "eyJhbGciOi.access-token-f00d"
KEY = "subscription-key-beef"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "X-Subscription-Key": KEY, "Accept": "application/json"}
PARAMS = {"pageNumber": 2, "pageSize": 100, "name": "Bakkerij ü & zn/+"}


class Page(str, Enum):  # noqa: UP042 - str() of such a member is not its value: urlencode would differ
    NUMBER = "pageNumber"


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    running = ScriptedServer()
    yield running
    running.close()


def direct_session() -> requests.Session:
    session = pooled_session(4)
    session.trust_env = False  # as `pooled_session(n, base_url)` leaves it: the environment read once, not per call
    return session


@pytest.fixture
def gets() -> Iterator[DirectGets]:
    made = DirectGets(direct_session(), pool_size=4)
    yield made
    made.close()


def api(server: ScriptedServer, path: str = "/api/debtors") -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def parsed(head: bytes) -> tuple[str, dict[str, str]]:
    """(request line, headers by lower-case name)."""
    first, *lines = head.decode("latin-1").split("\r\n")
    pairs = [line.split(":", 1) for line in lines if line]
    return first, {name.strip().lower(): value.strip() for name, value in pairs}


def test_a_get_is_the_request_requests_sends(server: ScriptedServer, gets: DirectGets) -> None:
    plain = pooled_session(4)
    try:
        assert plain.get(api(server), params=PARAMS, headers=HEADERS, timeout=TIMEOUT).status_code == 200
    finally:
        plain.close()
    response = gets.get(api(server), PARAMS, HEADERS, TIMEOUT)
    assert (response.status_code, response.content) == (200, b"ok")
    assert gets.keepalive.opened == 1  # it went our way
    (theirs_line, theirs), (ours_line, ours) = (parsed(h) for h in server.heads)
    assert ours_line == theirs_line
    assert ours_line.startswith("GET /api/debtors?pageNumber=2&pageSize=100&name=Bakkerij+%C3%BC+%26+zn%2F%2B ")
    assert ours.pop("accept-encoding") == "gzip, deflate"  # what the pool decodes
    theirs.pop("accept-encoding")  # requests adds br / zstd when they are installed
    assert ours == theirs
    assert "content-length" not in ours


VALUES = st.one_of(st.none(), st.integers(-10**6, 10**6), st.text(max_size=12))
PATHS = st.one_of(st.sampled_from(["/api/debtors", "/api/debtors/3fa85f64-5717-4562-b3fc-2c963f66afa6/companies",
                                   "", "/", "/api/a b", "/api/%41", "/api/ü", "/api/x?y=1", "/api/x#top"]),
                  st.text(alphabet="abz019-._~/%?#&= ü", max_size=16).map(lambda t: "/" + t))


PORTS = st.one_of(st.none(), st.integers(1, 70000), st.sampled_from([0, 443, 80]))


@settings(max_examples=300)
@given(scheme=st.sampled_from(["https", "http"]), port=PORTS, leading_zero=st.booleans(), path=PATHS,
       params=st.dictionaries(st.text(min_size=1, max_size=8), VALUES, max_size=4))
def test_the_url_path_and_query_are_requests_own(scheme: str, port: int | None, leading_zero: bool, path: str,
                                                 params: dict[str, object]) -> None:
    written = "" if port is None else f":{'0' if leading_zero else ''}{port}"
    url = f"{scheme}://Api.Nmbrs.example{written}{path}"
    made = DirectGets(requests.Session(), pool_size=1)._target(url, params)
    if made is None:  # requests' own prepare_url makes it (a path it would requote, a query of the URL's own)
        return
    prepared = PreparedRequest()
    prepared.prepare_url(url, params)
    origin, full, sent = made
    assert sent == prepared.path_url
    assert full == prepared.url
    default = 443 if scheme == "https" else 80
    assert (origin.host, origin.port) == ("api.nmbrs.example", port or default)
    assert origin.host_header == ("api.nmbrs.example" if port in (None, default) else f"api.nmbrs.example:{port}")


def test_the_simulators_urls_with_a_port_are_made_without_requests() -> None:
    made = DirectGets(requests.Session(), pool_size=1)._target("http://127.0.0.1:8085/api/debtors", {"pageSize": 100})
    assert made is not None
    assert made[1:] == ("http://127.0.0.1:8085/api/debtors?pageSize=100", "/api/debtors?pageSize=100")


def test_the_rest_apis_own_urls_are_made_without_requests() -> None:
    gets = DirectGets(requests.Session(), pool_size=1)
    for path in ("/api/debtors", "/api/debtors/3fa85f64-5717-4562-b3fc-2c963f66afa6/companies"):
        assert gets._target(f"https://api.nmbrsapp.com{path}", {"pageNumber": 2, "pageSize": 100}) is not None


@pytest.mark.parametrize(("url", "params"), [
    ("https://api.nmbrs.example/api/./debtors", {}),  # requests removes dot segments
    ("https://api.nmbrs.example/api/x/../debtors", {}),
    ("https://api.nmbrs.example/api/debtors", {"a": [1, None, 2]}),  # requests drops the None in a list
    ("https://api.nmbrs.example/api/debtors", {"a": b"\xff"}),
    ("https://\u4f8b\u3048.example/api/debtors", {}),  # an IDNA host: requests sends its xn-- form
    ("https://api.nmbrs.example/api/debtors?pageSize=5", {"pageNumber": 1}),
    ("https://api.nmbrs.example:0443/api/debtors", {}),  # requests writes the port without its leading zero
    ("https://api.nmbrs.example:65536/api/debtors", {}),  # requests refuses the port
    ("https://api.nmbrs.example:/api/debtors", {}),  # an empty port
    ("https://api.nmbrs.example/api/debtors\n", {"a": 1}),  # urlsplit drops what requests quotes
    ("https://api.nmbrs.example\t/api/debtors", {}),
    ("https://h%41st/api/debtors", {}),  # requests refuses the host
    ("https://api.nmbrs.example/api/debtors", {Page.NUMBER: 1}),  # urlencode would write "Page.NUMBER"
])
def test_a_url_requests_would_rewrite_is_made_by_requests(server: ScriptedServer, url: str,
                                                          params: dict[str, object]) -> None:
    assert DirectGets(direct_session(), pool_size=1)._target(url, params) is None


def test_a_list_with_none_is_sent_as_requests_sends_it(server: ScriptedServer, gets: DirectGets) -> None:
    gets.get(api(server), {"a": [1, None, 2]}, HEADERS, TIMEOUT)
    assert parsed(server.heads[0])[0].startswith("GET /api/debtors?a=1&a=2 ")
    assert gets.keepalive.opened == 1  # our way, with requests' own query


def test_a_session_that_reads_the_environment_per_call_goes_requests_way(server: ScriptedServer,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")  # the scripted server plays the proxy
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    gets = DirectGets(pooled_session(4), pool_size=4)  # no base URL: trust_env stays on, as in requests
    try:
        assert gets.get("http://nmbrs.example/api/debtors", {}, HEADERS, TIMEOUT).content == b"ok"
    finally:
        gets.close()
    assert gets.keepalive.opened == 0
    assert parsed(server.heads[0])[0].startswith("GET http://nmbrs.example/api/debtors ")


def test_a_header_that_is_not_latin_1_names_itself_and_no_secret(server: ScriptedServer, gets: DirectGets) -> None:
    secret = "tok\u20acen-5ecret"  # the euro sign is not latin-1
    with pytest.raises(requests.exceptions.InvalidHeader) as caught:
        gets.get(api(server), {}, {**HEADERS, "Authorization": f"Bearer {secret}"}, TIMEOUT)
    said = repr(caught.value) + str(caught.value) + repr(caught.value.__context__)
    assert "Authorization" in said
    assert secret not in said
    assert KEY not in said
    assert server.heads == []


def test_every_get_goes_on_the_one_kept_alive_connection(server: ScriptedServer, gets: DirectGets) -> None:
    for page in range(1, 6):
        assert gets.get(api(server), {"pageNumber": page}, HEADERS, TIMEOUT).status_code == 200
    assert (gets.keepalive.opened, server.connections, len(server.heads)) == (1, 1, 5)


def test_a_connection_the_server_closed_at_rest_is_replaced_without_an_error(server: ScriptedServer,
                                                                           gets: DirectGets) -> None:
    assert gets.get(api(server), {}, HEADERS, TIMEOUT).status_code == 200
    server.drop_connections()  # a restarted gateway
    assert gets.get(api(server), {}, HEADERS, TIMEOUT).status_code == 200
    assert len(server.heads) == 2  # each GET reached the server once
    assert gets.keepalive.opened == 2


def test_a_proxy_sends_gets_requests_way(server: ScriptedServer) -> None:
    session = direct_session()
    session.proxies = {"http": f"http://127.0.0.1:{server.port}"}  # the scripted server plays the proxy
    gets = DirectGets(session, pool_size=4)
    try:
        assert gets.get("http://nmbrs.example/api/debtors", {"pageNumber": 1}, HEADERS, TIMEOUT).content == b"ok"
    finally:
        gets.close()
    assert gets.keepalive.opened == 0
    line, _ = parsed(server.heads[0])
    assert line.startswith("GET http://nmbrs.example/api/debtors?pageNumber=1 ")  # the proxy's absolute form


def test_a_cookie_goes_to_the_session_and_later_gets_go_requests_way(server: ScriptedServer,
                                                                    gets: DirectGets) -> None:
    server.play(Step((answer(200, b"[]", {"Set-Cookie": "ARRAffinity=node2; Path=/"}),)))
    assert gets.get(api(server), {}, HEADERS, TIMEOUT).content == b"[]"
    assert gets.session.cookies.get("ARRAffinity") == "node2"
    assert gets.get(api(server), {}, HEADERS, TIMEOUT).status_code == 200
    assert gets.keepalive.opened == 1  # the second went requests' way, which sends the cookie
    assert parsed(server.heads[1])[1]["cookie"] == "ARRAffinity=node2"


def test_a_redirect_is_followed_by_requests_from_then_on(server: ScriptedServer, gets: DirectGets) -> None:
    moved = Step((answer(302, b"", {"Location": "/api/v2/debtors"}, reason="Found"),))
    server.play(moved, Step(moved.fragments), Step((answer(200, b"[1]"),)))
    response = gets.get(api(server), {"pageNumber": 1}, HEADERS, TIMEOUT)
    assert (response.status_code, response.content) == (200, b"[1]")
    lines = [parsed(h)[0].split(" ")[1] for h in server.heads]
    assert lines == ["/api/debtors?pageNumber=1", "/api/debtors?pageNumber=1", "/api/v2/debtors"]
    assert gets.redirected
    gets.get(api(server), {}, HEADERS, TIMEOUT)
    assert gets.keepalive.opened == 1


def test_a_header_value_that_would_split_the_request_is_refused_before_anything_is_sent(
        server: ScriptedServer, gets: DirectGets) -> None:
    with pytest.raises(requests.exceptions.InvalidHeader):
        gets.get(api(server), {}, {**HEADERS, "Authorization": "Bearer x\r\nX-Evil: 1"}, TIMEOUT)
    assert server.heads == []
    assert gets.keepalive.opened == 0


@pytest.mark.parametrize("step", [Step(close=True), Step((b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\npart",),
                                                         close=True)], ids=["no answer", "cut answer"])
def test_a_failed_get_names_no_secret(server: ScriptedServer, gets: DirectGets, step: Step) -> None:
    server.play(step)
    with pytest.raises(requests.RequestException) as caught:
        gets.get(api(server), {}, HEADERS, TIMEOUT)
    said = repr(caught.value) + str(caught.value) + repr(caught.value.__context__) + repr(caught.value.__cause__)
    assert TOKEN not in said
    assert KEY not in said
    assert TOKEN.encode() in server.heads[0]  # it was sent, so its absence above means something


def rest_client(server: ScriptedServer) -> RestClient:
    app = RestApp(api_base=f"http://127.0.0.1:{server.port}", identity_base=f"http://127.0.0.1:{server.port}",
                  client_id="l1nda", client_secret=Secret("client-secret-cafe"), subscription_key=Secret(KEY))
    return RestClient(app, Settings(nmbrs_read_timeout=2.0, nmbrs_connect_timeout=2.0),
                      retry=RetryPolicy(attempts=1), gate=CallGate(1000, 4))


@pytest.mark.parametrize("token", ["TOKSECRET\r", "TOK\u20acSECRET", "TOKSECRET\n\tX-Evil: 1"])
@pytest.mark.parametrize("way", ["direct", "requests"])
def test_a_secret_that_cannot_be_written_as_a_header_is_never_quoted(server: ScriptedServer, token: str,
                                                                     way: str) -> None:
    """requests quotes a bad header value in its error, and a UnicodeEncodeError carries the whole head: the REST
    client withholds that text (it would land in the check's detail), whichever way the GET goes."""
    client = rest_client(server)
    if way == "requests":
        client.session.cookies.set("ARRAffinity", "node2")  # a cookie in the jar: requests' way
    try:
        with pytest.raises(UnknownNmbrsError) as caught:
            client.get(DEBTORS, "/api/debtors", {"pageNumber": 1}, Secret(token))
    finally:
        client.close()
    error: BaseException | None = caught.value
    said = ""
    while error is not None:  # the message, and every exception it carries
        said += repr(error) + str(error) + repr(error.args)
        error = error.__context__ or error.__cause__
    assert "TOKSECRET" not in said
    assert "TOK\u20acSECRET" not in said
    assert "could not be written" in str(caught.value)
    assert server.heads == []


def test_an_answer_that_cannot_be_decoded_is_transient_for_the_rest_client(server: ScriptedServer) -> None:
    """As for SOAP: a body that cannot be decoded is the answer of the moment (the next check asks again), never an
    unexpected error that escapes the client; its message names no secret."""
    client = rest_client(server)
    server.play(Step((answer(200, b"\x1f\x8bnot gzip", {"Content-Encoding": "gzip"}),)))
    try:
        with pytest.raises(TransientError) as caught:
            client.get(DEBTORS, "/api/debtors", {"pageNumber": 1}, Secret(TOKEN))
    finally:
        client.close()
    assert "ContentDecodingError" in str(caught.value)
    assert TOKEN not in repr(caught.value) + str(caught.value)
    assert client.http.keepalive.opened == 1  # it went the keep-alive way
