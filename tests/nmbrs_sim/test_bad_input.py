"""Faults in the exact .NET ASMX form, and bad requests: always a SOAP fault or a 4xx, never a crash or hang."""

from __future__ import annotations

import socket

import pytest
import requests
import zeep

from nmbrs_sim.catalog import soap_action
from nmbrs_sim.errors import NO_ACTION_TEXT
from nmbrs_sim.testing import running_simulator
from tests.nmbrs_sim.conftest import MASTER_ALL, envelope, post, raw_fault


def test_soap11_fault_form(sim) -> None:
    response = post(sim, "DebtorService", "Debtor_Get", MASTER_ALL, body_inner="<DebtorId>424242</DebtorId>")
    assert response.status_code == 500
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    fault = raw_fault(response)
    assert fault.code == "soap:Server"
    assert fault.text == "Server was unable to process request. ---> 1003: Unauthorized Access"
    assert fault.detail is not None
    assert len(fault.detail) == 0
    assert not (fault.detail.text or "").strip()


def test_soap12_fault_form(sim) -> None:
    bad = MASTER_ALL.__class__(MASTER_ALL.username, "0" * 32)
    response = post(sim, "CompanyService", "List_GetAll", bad, version="1.2")
    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/soap+xml; charset=utf-8"
    fault = raw_fault(response)
    assert fault.code == "soap:Receiver"
    assert fault.text == "Server was unable to process request. ---> 1001: Invalid Authentication"
    assert fault.detail is not None
    assert len(fault.detail) == 0


def test_zeep_sees_the_fault_like_a_live_client(soap) -> None:
    with pytest.raises(zeep.exceptions.Fault) as caught:
        soap.call(MASTER_ALL.__class__(MASTER_ALL.username, "x"), "DebtorService", "List_GetAll")
    assert caught.value.code == "soap:Server"
    assert caught.value.message == "Server was unable to process request. ---> 1001: Invalid Authentication"


@pytest.mark.parametrize("action", [None, "", "https://api.nmbrs.nl/soap/v3/DebtorService/Nope",
                                    soap_action("CompanyService", "List_GetAll")])
def test_missing_or_unknown_soap_action_is_a_client_fault(sim, action: str | None) -> None:
    response = post(sim, "DebtorService", "List_GetAll", MASTER_ALL, action=action)
    assert response.status_code == 500
    fault = raw_fault(response)
    assert (fault.code, fault.text) == ("soap:Client", NO_ACTION_TEXT)


def test_soap12_routes_on_the_body_without_an_action(sim) -> None:
    response = post(sim, "DebtorService", "Debtor_IsOwner", MASTER_ALL, version="1.2", action=None)
    assert response.status_code == 200
    assert b"<Debtor_IsOwnerResult>true</Debtor_IsOwnerResult>" in response.content
    wrong = post(sim, "DebtorService", "Debtor_IsOwner", MASTER_ALL, version="1.2",
                 action=soap_action("DebtorService", "Nope"))
    assert raw_fault(wrong).text == NO_ACTION_TEXT
    unknown = post(sim, "DebtorService", "Nope", MASTER_ALL, version="1.2", action=None)
    fault = raw_fault(unknown)
    assert (unknown.status_code, fault.code, fault.text) == (500, "soap:Sender", NO_ACTION_TEXT)


@pytest.mark.parametrize("body", [b"", b"not xml at all", b"<soap:Envelope", b"<a><b></a>",
                                  b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
                                  b"<Envelope/>", b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"/>'])
def test_malformed_envelopes_get_a_client_fault(sim, body: bytes) -> None:
    response = post(sim, "DebtorService", "List_GetAll", MASTER_ALL, body=body)
    fault = raw_fault(response)
    assert response.status_code == 500
    assert fault.code == "soap:Client"
    assert "root:" not in response.text  # no external entity was read


def test_soap_version_mismatch(sim) -> None:
    body = envelope("DebtorService", "List_GetAll", MASTER_ALL, version="1.2")
    fault = raw_fault(post(sim, "DebtorService", "List_GetAll", MASTER_ALL, body=body))
    assert fault.code == "soap:VersionMismatch"
    assert "Possible SOAP version mismatch" in fault.text


def test_body_that_does_not_match_the_action(sim) -> None:
    body = envelope("DebtorService", "Debtor_IsOwner", MASTER_ALL)
    fault = raw_fault(post(sim, "DebtorService", "List_GetAll", MASTER_ALL, body=body))
    assert fault.code == "soap:Client"
    assert "Debtor_IsOwner" in fault.text


@pytest.mark.parametrize("value", ["abc", "1.5", "99999999999"])
def test_a_debtor_id_that_is_not_an_int32(sim, value: str) -> None:
    response = post(sim, "DebtorService", "Debtor_Get", MASTER_ALL, body_inner=f"<DebtorId>{value}</DebtorId>")
    fault = raw_fault(response)
    assert fault.code == "soap:Client"
    assert "DebtorId" in fault.text


def test_a_missing_debtor_id_is_zero_as_in_dotnet(sim) -> None:
    assert raw_fault(post(sim, "DebtorService", "Debtor_Get", MASTER_ALL)).nmbrs_code == 1003


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", ""])
def test_wrong_content_type_is_415(sim, content_type: str) -> None:
    response = requests.post(f"{sim.base_url}DebtorService.asmx", data=envelope("DebtorService", "List_GetAll",
                                                                                  MASTER_ALL),
                             headers={"Content-Type": content_type,
                                      "SOAPAction": soap_action("DebtorService", "List_GetAll")}, timeout=10)
    assert response.status_code == 415
    assert "text/xml" in response.text


def test_oversized_body_is_413() -> None:
    scenario = {"settings": {"max_body_bytes": 4096}, "environments": [{"sub_domain": "small"}]}
    with running_simulator(scenario) as small:
        padding = "<!--" + "x" * 10_000 + "-->"
        body = envelope("DebtorService", "List_GetAll", MASTER_ALL, body_inner=padding)
        response = post(small, "DebtorService", "List_GetAll", MASTER_ALL, body=body)
        assert response.status_code == 413
        assert small.admin.health()["status"] == "ok"


def test_unknown_paths_and_methods(sim) -> None:
    assert requests.get(f"{sim.root_url}/soap/v3/EmployeeService.asmx?WSDL", timeout=10).status_code == 404
    assert requests.get(f"{sim.root_url}/", timeout=10).status_code == 404
    assert requests.put(f"{sim.base_url}DebtorService.asmx", data=b"x", timeout=10).status_code == 405
    admin = requests.get(f"{sim.root_url}/_sim/nope", timeout=10)
    assert admin.status_code == 404
    assert "error" in admin.json()


def test_a_client_that_sends_half_a_request_and_leaves_does_not_hurt(sim) -> None:
    with socket.create_connection((sim.host, sim.port), timeout=5) as sock:
        sock.sendall(b"POST /soap/v3/DebtorService.asmx HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                     b"Content-Length: 1000\r\n\r\n<soap:Env")
    with socket.create_connection((sim.host, sim.port), timeout=5) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        assert sock.recv(100).split(b"\r\n")[0].endswith(b" 400 Bad Request")
    assert sim.admin.health()["status"] == "ok"
