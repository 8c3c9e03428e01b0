"""No token in any log record, exception message or repr, even with every logger at DEBUG."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from l1nda_sync.nmbrs import Credentials, NmbrsError

from .conftest import ENV, MASTER_HORECA

WRONG = "ffffeeeeddddccccbbbbaaaa99998888"


class Everything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def everything() -> Iterator[Everything]:
    """The root logger and zeep's/urllib3's own loggers at DEBUG, all captured."""
    handler = Everything()
    root = logging.getLogger()
    names = ("zeep", "zeep.transports", "urllib3", "urllib3.connectionpool", "l1nda_sync")
    saved = (root.level, {n: logging.getLogger(n).level for n in names})
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(saved[0])
    for name, level in saved[1].items():
        logging.getLogger(name).setLevel(level)


def test_debug_logging_through_failing_and_succeeding_probes_shows_no_token(sim, client, everything) -> None:
    import zeep.transports

    # zeep's own transport logger would dump envelopes; prove the guard works even for it
    zeep.transports.Transport().logger.debug("HTTP Post to %s:\n%s", "x",
                                             f"<Token>{MASTER_HORECA.token}</Token>")
    good = client.probe(MASTER_HORECA.creds())
    sim.admin.inject_fault("fault_9999", operation="Tags_Get", count=1)  # a retry logs too
    client.probe(MASTER_HORECA.creds(ENV), good)
    client.probe(MASTER_HORECA.creds(ENV))
    errors: list[NmbrsError] = []
    for creds in (Credentials(MASTER_HORECA.username, WRONG), Credentials(MASTER_HORECA.username, WRONG, ENV)):
        with pytest.raises(NmbrsError) as caught:
            client.probe(creds, good)
        errors.append(caught.value)
    sim.admin.inject_fault("malformed", operation="List_GetAll")
    with pytest.raises(NmbrsError) as caught:
        client.probe(MASTER_HORECA.creds(ENV), good)
    errors.append(caught.value)

    text = "\n".join(everything.lines)
    assert "AuthHeaderWithDomain" in text  # envelopes were logged (redacted), so the check means something
    assert "…b8a9" in text  # both tokens appear masked
    assert "…8888" in text
    for token in (MASTER_HORECA.token, WRONG):
        assert token not in text
        for error in errors:
            assert token not in str(error)
            assert token not in repr(error)
    assert MASTER_HORECA.token not in repr(client)
    assert MASTER_HORECA.token not in repr(MASTER_HORECA.creds(ENV))


# -- a server that echoes the token back -------------------------------------------------------------------------
def echoed_forms(token: str) -> list[str]:
    """Every form a server may echo a token in (written here, not taken from the simulator)."""
    guid = "-".join((token[:8], token[8:12], token[12:16], token[16:20], token[20:]))
    return [
        token, token.upper(), guid, guid.upper(), "{" + guid.upper() + "}",
        "".join(f"&#x{ord(c):x};" for c in token), "".join(f"&#{ord(c)};" for c in token),
        "".join(f"&amp;#x{ord(c):x};" for c in token),
        "".join(f"%{ord(c):02X}" for c in token), "".join(f"%{ord(c):02x}" for c in token),
    ]


def leaks(text: str, token: str) -> list[str]:
    """The forms of `token` (and any 8 characters in a row of it) found in `text`."""
    lowered = text.lower()
    found = [form for form in echoed_forms(token) if form.lower() in lowered]
    found += [token[i:i + 8] for i in range(len(token) - 7) if token[i:i + 8].lower() in lowered]
    return found


def test_leaks_finds_what_it_should() -> None:
    token = MASTER_HORECA.token
    for form in echoed_forms(token):
        assert leaks(f"x {form} y", token)
    assert leaks(f"cut: {token[:9]}", token)
    assert not leaks(f"masked: …{token[-4:]}", token)


@pytest.fixture
def http_client_debug():
    """http.client prints every request and answer to stdout while HTTPConnection.debuglevel > 0."""
    import http.client

    saved = http.client.HTTPConnection.debuglevel
    http.client.HTTPConnection.debuglevel = 1
    yield
    http.client.HTTPConnection.debuglevel = saved


ECHOES = [
    pytest.param({}, id="soap-fault-1001"),
    pytest.param({"code": 9999}, id="soap-fault-9999-retried"),
    pytest.param({"status": 200}, id="in-a-good-answer"),
    pytest.param({"status": 403}, id="waf-page"),
    pytest.param({"status": 502}, id="proxy-page"),
    pytest.param({"status": 404}, id="unknown-page"),
]


@pytest.mark.parametrize("params", ECHOES)
def test_an_echoed_token_is_found_nowhere(sim, client, everything, capsys, caplog, http_client_debug,
                                          params) -> None:
    import requests

    token = MASTER_HORECA.token
    caplog.set_level(logging.DEBUG)
    # The capture works: a plain requests session (not the client's) prints the request, token and all.
    requests.post(sim.base_url + "DebtorService.asmx", data=f"<Token>{token}</Token>".encode(),
                  headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=10)
    assert token in capsys.readouterr().out

    good = client.probe(MASTER_HORECA.creds())
    sim.admin.inject_fault("echo_token", username=MASTER_HORECA.username, **params)
    errors: list[NmbrsError] = []
    for creds, previous in ((MASTER_HORECA.creds(), None), (MASTER_HORECA.creds(ENV), good)):
        try:
            client.probe(creds, previous)
        except NmbrsError as error:
            errors.append(error)
    if params.get("status") == 200:
        assert errors == []
    else:
        assert len(errors) == 2

    captured = capsys.readouterr()
    log_text = "\n".join(everything.lines)
    stored = [f"{type(e).__name__}: {e}"[:500] for e in errors]  # what the engine stores as check detail
    texts = {"logs": log_text, "caplog": caplog.text, "stdout": captured.out, "stderr": captured.err,
             "errors": "\n".join(str(e) + repr(e) + str(e.text) for e in errors), "stored": "\n".join(stored)}
    for where, text in texts.items():
        assert leaks(text, token) == [], where
    # the echo did reach the logs and errors, masked: the check above means something
    assert "…b8a9" in log_text
    assert log_text.count("…b8a9") >= 6  # each echoed form masked
    if errors:
        assert all("…b8a9" in s for s in stored)
    assert "POST /_sim/faults" in captured.out  # the admin's session printed its debug output...
    assert "/soap/v3/" not in captured.out  # ...the client's connections printed none


def test_a_token_cut_by_the_log_limit_leaves_no_part_behind(sim, client, everything) -> None:
    """The DEBUG body is cut at 4000 characters: scrubbing happens before the cut."""
    from l1nda_sync.nmbrs.redaction import guarding
    from l1nda_sync.nmbrs.transport import LOGGED_BODY, body_text

    token = MASTER_HORECA.token
    body = ("x" * (LOGGED_BODY - 10) + token).encode()
    with guarding(token):
        shown = body_text(body, LOGGED_BODY)
    assert leaks(shown, token) == []
    assert shown.endswith("…b8a9")
