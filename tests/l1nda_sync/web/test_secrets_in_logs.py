"""No secret in any log line: the invitation's value, the OAuth2 code and state, the new connection's refresh and
access tokens, the handed-over SOAP token; captured at DEBUG from every logger (uvicorn's access log included) and
from what was printed, through a whole consent and a whole hand-over, also when Nmbrs echoes the token back."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import pytest

from l1nda_sync.registry.crypto import TokenCipher
from tests.l1nda_sync.web.conftest import WebStack
from tests.l1nda_sync.web.helpers import (
    browser,
    cli,
    consent_at_nmbrs,
    csrf_of,
    error_code,
    register_soap_token,
    rows,
    start_consent,
)

DEGRAAF = "salaris@bakkerij-degraaf.example"
CONTACT = "jan@bakkerij-degraaf.example"


def _assert_absent(secrets: dict[str, str], *texts: str) -> None:
    for name, secret in secrets.items():
        assert len(secret) >= 16, name
        for text in texts:
            assert secret not in text, f"the {name} is in the logs"


def test_a_consent_and_a_hand_over_leave_no_secret_in_the_logs(
        web_stack: WebStack, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    token_id = register_soap_token(web_stack)
    rest_url = web_stack.invite("CUST-DEGRAAF", CONTACT, "rest")
    printed = [capsys.readouterr().err]  # `invite` prints the link on stdout by design: only its stderr counts
    client = browser()
    started = start_consent(client, rest_url)
    state = parse_qs(urlsplit(started.headers["location"]).query)["state"][0]
    callback = consent_at_nmbrs(client, started.headers["location"], DEGRAAF)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    assert client.get(callback).status_code == 200
    assert client.get(callback).status_code == 409  # a replay logs its path too

    cipher = TokenCipher.from_settings(web_stack.settings)
    (refresh, access), = rows(web_stack, "SELECT refresh_ciphertext, access_ciphertext FROM rest_connections")
    secrets = {"invitation value": rest_url.rsplit("/", 1)[1], "code": code, "state": state,
               "refresh token": cipher.decrypt(refresh).reveal(), "access token": cipher.decrypt(access).reveal()}

    new = web_stack.sim.admin.reset_token(DEGRAAF)
    printed.append(capsys.readouterr())
    token_url = web_stack.invite("CUST-DEGRAAF", CONTACT, "token", token_id=token_id)
    printed.append(capsys.readouterr().err)
    # Nmbrs echoes the token in its fault text: the refusal page and the logs still never hold it
    web_stack.sim.admin.inject_fault("echo_token", username=DEGRAAF)
    page = client.get(token_url)
    refused = client.post(token_url + "/token", data={"csrf": csrf_of(page.text), "username": DEGRAAF, "token": new})
    assert error_code(refused) in ("token_refused", "unavailable")
    assert new not in refused.text
    web_stack.sim.admin.clear_faults()
    page = client.get(token_url)
    assert client.post(token_url + "/token", data={"csrf": csrf_of(page.text), "username": DEGRAAF,
                                                   "token": new}).status_code == 200
    secrets |= {"token invitation value": token_url.rsplit("/", 1)[1], "SOAP token": new}
    assert cli("tokens", "list")[0] == 0

    access_lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert any("/invite/***" in line for line in access_lines)  # the requests were logged, masked
    assert any("/nmbrs/callback?***" in line for line in access_lines)
    # httpx/httpcore are the test's browser (it sees the callback address as any browser does); the rest is L1NDA
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
                       if not r.name.startswith(("httpx", "httpcore")))
    assert "uvicorn.access" in logged
    assert "urllib3" in logged
    rest = capsys.readouterr()
    outputs = [p if isinstance(p, str) else p.out + p.err for p in printed] + [rest.out, rest.err]
    _assert_absent(secrets, logged, *outputs)
