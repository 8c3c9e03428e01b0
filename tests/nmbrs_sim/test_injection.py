"""Fault injection: every kind, by count, by probability, per login / service / operation, from the admin API
and from the scenario file."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import zeep
from lxml import etree

from nmbrs_sim.testing import running_simulator
from tests.nmbrs_sim.conftest import ENV, MASTER_ALL, MASTER_HORECA, post, raw_fault


def _ok(sim, who=MASTER_ALL, service="DebtorService", operation="List_GetAll", **kwargs) -> requests.Response:
    return post(sim, service, operation, who, **kwargs)


@pytest.mark.parametrize(("kind", "status"), [("http_500", 500), ("http_502", 502), ("http_503", 503)])
def test_http_errors_without_a_soap_body(sim, kind: str, status: int) -> None:
    sim.admin.inject_fault(kind, count=1)
    response = _ok(sim)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("text/html")
    assert b"Envelope" not in response.content
    assert _ok(sim).status_code == 200  # count=1: only the next call


def test_http_500_reaches_zeep_as_a_transport_error(sim, soap) -> None:
    sim.admin.inject_fault("http_500", count=1)
    with pytest.raises(zeep.exceptions.TransportError) as caught:
        soap.call(MASTER_ALL, "DebtorService", "List_GetAll")
    assert caught.value.status_code == 500


def test_connection_reset(sim) -> None:
    sim.admin.inject_fault("reset", count=1)
    with pytest.raises(requests.ConnectionError):
        _ok(sim)
    assert _ok(sim).status_code == 200


def test_hang_until_the_client_gives_up(sim) -> None:
    sim.admin.inject_fault("hang", count=1)
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        _ok(sim, timeout=0.5)
    assert time.monotonic() - started < 5
    assert _ok(sim).status_code == 200
    assert sim.admin.call_count(operation="List_GetAll") == 2
    deadline = time.monotonic() + 5  # the server lets go of the hanging call once the client has gone
    while sim.admin.calls()[0]["faults"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.admin.calls()[0]["faults"] == 1


def test_a_hanging_call_does_not_delay_stopping_the_server() -> None:
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        with running_simulator({"environments": [{"sub_domain": "x"}]}) as tiny:
            tiny.admin.inject_fault("hang")
            waiting = pool.submit(_ok, tiny, timeout=30)
            deadline = time.monotonic() + 5
            while tiny.simulator.calls.count() == 0 and time.monotonic() < deadline:
                time.sleep(0.01)  # poll until the call is inside the server
            assert tiny.simulator.calls.count() == 1
            started = time.monotonic()
        assert time.monotonic() - started < 5  # leaving the block stopped the server despite the hanging call
        with pytest.raises(requests.ConnectionError):
            waiting.result(timeout=10)
    finally:
        pool.shutdown(wait=True)


def test_malformed_answer(sim) -> None:
    sim.admin.inject_fault("malformed", count=1)
    response = _ok(sim)
    assert response.status_code == 200
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(response.content)


def test_truncated_answer(sim) -> None:
    whole = _ok(sim).content
    sim.admin.inject_fault("truncated", count=1)
    response = _ok(sim)
    assert response.status_code == 200
    assert whole.startswith(response.content)
    assert len(response.content) < len(whole)
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(response.content)


@pytest.mark.parametrize(("kind", "code", "text"), [("fault_1006", 1006, "Generic Login Security Failure"),
                                                    ("fault_9999", 9999, "Unknown")])
def test_nmbrs_transient_faults(sim, soap, kind: str, code: int, text: str) -> None:
    sim.admin.inject_fault(kind, count=1)
    with pytest.raises(zeep.exceptions.Fault) as caught:
        soap.call(MASTER_ALL, "DebtorService", "List_GetAll")
    assert caught.value.message == f"Server was unable to process request. ---> {code}: {text}"
    assert len(soap.call(MASTER_ALL, "DebtorService", "List_GetAll")) == 9


def test_global_latency_with_jitter(sim) -> None:
    sim.admin.set_latency(150, jitter_ms=50)
    started = time.monotonic()
    assert _ok(sim).status_code == 200
    assert time.monotonic() - started >= 0.1
    sim.admin.set_latency(0)
    started = time.monotonic()
    _ok(sim)
    assert time.monotonic() - started < 0.1


def test_latency_rule_by_count(sim) -> None:
    sim.admin.inject_fault("latency", count=1, ms=300)
    started = time.monotonic()
    _ok(sim)
    first = time.monotonic() - started
    started = time.monotonic()
    _ok(sim)
    assert first >= 0.3
    assert time.monotonic() - started < 0.2


def test_latency_holds_no_thread_per_waiting_call(sim) -> None:
    """40 calls that each wait 0.5 s finish together in about 0.5 s: the waits overlap on one event loop."""
    sim.admin.set_latency(500)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(lambda _: _ok(sim).status_code, range(40)))
    elapsed = time.monotonic() - started
    assert statuses == [200] * 40
    assert elapsed < 6.0, elapsed  # one after another would take 20 s; the bound leaves room for a loaded machine


def test_an_answer_is_read_when_its_request_arrives_and_sent_when_the_latency_has_passed(sim) -> None:
    """A debtor added while a call waits out its latency is not in that call's answer, only in the next one's:
    the answer is made at arrival and held (so the simulator's own work hides inside the latency)."""
    sim.admin.set_latency(400)
    sim.admin.clear_calls()
    with ThreadPoolExecutor(max_workers=1) as pool:
        started = time.monotonic()
        waiting = pool.submit(_ok, sim)
        while sim.admin.call_count(operation="List_GetAll") == 0:
            assert not waiting.done()
        sim.admin.add_debtor(ENV, id=990001, number="990001", name="Arrived late BV")
        held = waiting.result()
    assert time.monotonic() - started >= 0.4
    sim.admin.set_latency(0)
    assert "990001" not in held.text
    assert "990001" in _ok(sim).text


def test_fair_use_slowdown(sim) -> None:
    sim.admin.inject_fault("fair_use", calls_per_second=2)
    durations = []
    for _ in range(3):
        started = time.monotonic()
        assert _ok(sim).status_code == 200
        durations.append(time.monotonic() - started)
    assert durations[0] < 0.4
    assert durations[1] < 0.4
    assert durations[2] >= 0.5  # the third call within one second waits half a second
    started = time.monotonic()
    assert _ok(sim, MASTER_HORECA).status_code == 200  # counted per login
    assert time.monotonic() - started < 0.4


def test_count_means_the_next_n_matching_calls(sim) -> None:
    sim.admin.inject_fault("http_503", count=3)
    assert [_ok(sim).status_code for _ in range(4)] == [503, 503, 503, 200]
    assert sim.admin.faults() == []


def test_no_count_no_probability_means_until_cleared(sim) -> None:
    fault_id = sim.admin.inject_fault("fault_9999")
    assert [raw_fault(_ok(sim)).nmbrs_code for _ in range(3)] == [9999] * 3
    [rule] = sim.admin.faults()
    assert (rule["id"], rule["fired"]) == (fault_id, 3)
    sim.admin.clear_faults()
    assert _ok(sim).status_code == 200


def test_probability(sim) -> None:
    sim.admin.inject_fault("http_500", probability=0.0)
    assert {_ok(sim).status_code for _ in range(10)} == {200}
    sim.admin.clear_faults()
    sim.admin.inject_fault("http_500", probability=0.5)
    statuses = [_ok(sim).status_code for _ in range(60)]
    assert 10 < statuses.count(500) < 50
    sim.admin.clear_faults()
    sim.admin.inject_fault("http_500", probability=1.0, count=2)
    assert [_ok(sim).status_code for _ in range(3)] == [500, 500, 200]


def test_targeting_by_login_service_and_operation(sim) -> None:
    sim.admin.inject_fault("http_502", username=MASTER_HORECA.username)
    sim.admin.inject_fault("http_503", service="CompanyService", operation="List_GetByDebtor")
    assert _ok(sim, MASTER_HORECA).status_code == 502
    assert _ok(sim, MASTER_ALL).status_code == 200
    assert _ok(sim, MASTER_ALL, "CompanyService", "List_GetAll").status_code == 200
    assert _ok(sim, MASTER_ALL, "CompanyService", "List_GetByDebtor",
               body_inner="<DebtorId>2001</DebtorId>").status_code == 503


def test_one_failure_per_call_and_the_later_rule_keeps_its_count(sim) -> None:
    sim.admin.inject_fault("http_500", count=1)
    sim.admin.inject_fault("http_502", count=1)
    assert [_ok(sim).status_code for _ in range(3)] == [500, 502, 200]


def test_remove_one_fault(sim) -> None:
    keep = sim.admin.inject_fault("http_500", username=MASTER_HORECA.username)
    drop = sim.admin.inject_fault("http_503")
    sim.admin.remove_fault(drop)
    assert [f["id"] for f in sim.admin.faults()] == [keep]
    assert _ok(sim).status_code == 200


def test_faults_and_latency_from_the_scenario() -> None:
    scenario = {
        "environments": [{"sub_domain": "demo-accountants", "logins": [
            {"username": MASTER_ALL.username, "level": "accountant", "token": MASTER_ALL.token}]}],
        "latency": {"ms": 120},
        "faults": [{"kind": "fault_1006", "count": 2, "operation": "List_GetAll"}],
    }
    with running_simulator(scenario) as scripted:
        started = time.monotonic()
        codes = [raw_fault(_ok(scripted)).nmbrs_code for _ in range(2)]
        assert codes == [1006, 1006]
        assert _ok(scripted).status_code == 200
        assert time.monotonic() - started >= 0.36
        scripted.admin.set_latency(0)
        scripted.admin.reset_world()  # back to the scenario: its faults and latency return
        assert raw_fault(_ok(scripted)).nmbrs_code == 1006


# -- answers nobody foresaw --------------------------------------------------------------------------------------
NS_C = "{https://api.nmbrs.nl/soap/v3/CompanyService}"
NS_D = "{https://api.nmbrs.nl/soap/v3/DebtorService}"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


def _body(response: requests.Response):
    root = etree.fromstring(response.content)
    return root.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")[0]


def _companies(sim, who=MASTER_ALL) -> requests.Response:
    return _ok(sim, who, "CompanyService", "List_GetAll")


def test_extra_element_adds_fields_the_wsdl_does_not_declare(sim) -> None:
    clean = _body(_companies(sim))
    sim.admin.inject_fault("extra_element", service="CompanyService", count=1)
    changed = _body(_companies(sim))
    [result] = changed
    companies = list(result)
    assert len(companies) == len(clean[0]) > 0
    for company in companies:
        names = [etree.QName(child).localname for child in company]
        assert names[3] == "Vestigingsadres"  # in the middle of the sequence, and nested
        assert names[-1] == "Vestigingsnummer"
        assert company.findtext(f"{NS_C}ID") is not None
    sim.admin.inject_fault("extra_element", operation="Debtor_Get", count=1)
    debtor = _body(_ok(sim, operation="Debtor_Get", body_inner="<DebtorId>2001</DebtorId>"))[0]
    assert debtor.findtext(f"{NS_D}KvkNr") == "12345678"
    assert debtor.findtext(f"{NS_D}Id") == "2001"
    assert _body(_companies(sim))[0][0].find(f"{NS_C}Vestigingsnummer") is None  # count=1: spent


def test_null_entry_puts_nil_entries_in_a_list_and_skips_other_operations(sim) -> None:
    sim.admin.inject_fault("null_entry", count=1)
    owner = _ok(sim, operation="Debtor_IsOwner")  # no list: the rule does not fire and keeps its count
    assert _body(owner)[0].text == "true"
    assert sim.admin.faults()[0]["count"] == 1
    result = _body(_ok(sim))[0]
    nils = [child for child in result if child.get(XSI_NIL) == "true"]
    assert len(nils) == 2
    assert all(etree.QName(child).localname == "Debtor" and len(child) == 0 for child in nils)
    assert len(result) == 9 + 2
    assert sim.admin.faults() == []


def test_missing_result_and_empty_list(sim) -> None:
    sim.admin.inject_fault("missing_result", count=1)
    response = _body(_ok(sim))
    assert etree.QName(response).localname == "List_GetAllResponse"
    assert len(response) == 0
    sim.admin.inject_fault("empty_list", count=1)
    response = _companies(sim)
    assert response.status_code == 200
    [result] = _body(response)
    assert (etree.QName(result).localname, len(result)) == ("List_GetAllResult", 0)


@pytest.mark.parametrize(("params", "expected"), [({}, "1001: Invalid Authentication"),
                                                  ({"code": 1004}, "1004: Disabled, no valid subscription")])
def test_code_no_wrapper(sim, params, expected) -> None:
    sim.admin.inject_fault("code_no_wrapper", count=1, **params)
    fault = raw_fault(_ok(sim))
    assert (fault.status, fault.code, fault.text) == (500, "soap:Server", expected)


def test_unknown_code(sim) -> None:
    sim.admin.inject_fault("unknown_code", count=2)
    assert raw_fault(_ok(sim)).nmbrs_code == 1234
    sim.admin.inject_fault("unknown_code", count=1, code=3210)  # the first rule still has one call left
    assert raw_fault(_ok(sim)).nmbrs_code == 1234
    assert raw_fault(_ok(sim)).nmbrs_code == 3210


def test_http_429_with_retry_after(sim) -> None:
    sim.admin.inject_fault("http_429", count=1, retry_after=7)
    response = _ok(sim)
    assert (response.status_code, response.headers["Retry-After"]) == (429, "7")
    assert b"Envelope" not in response.content
    assert _ok(sim).status_code == 200


def test_http_403_html_is_a_waf_page(sim) -> None:
    sim.admin.inject_fault("http_403_html", count=1)
    response = _ok(sim)
    assert response.status_code == 403
    assert response.headers["Content-Type"].startswith("text/html")
    assert b"firewall" in response.content
    assert b"Envelope" not in response.content


def _variants(token: str) -> list[str]:
    guid = "-".join((token[:8], token[8:12], token[12:16], token[16:20], token[20:]))
    return [token, token.upper(), "".join(f"&#x{ord(c):x};" for c in token),
            "".join(f"%{ord(c):02X}" for c in token), "{" + guid.upper() + "}", guid]


def test_echo_token_in_a_fault_an_answer_and_an_error_page(sim) -> None:
    sim.admin.inject_fault("echo_token", count=1)
    fault = raw_fault(_ok(sim))
    assert fault.nmbrs_code == 1001
    for variant in _variants(MASTER_ALL.token):
        assert variant in fault.text
    sim.admin.inject_fault("echo_token", count=1, status=200)
    response = _ok(sim)
    assert response.status_code == 200
    assert len(_body(response)[0]) == 9  # the real answer, plus an undeclared element with the echoes
    assert MASTER_ALL.token.upper().encode() in response.content
    sim.admin.inject_fault("echo_token", count=1, status=403)
    response = _ok(sim)
    assert response.status_code == 403
    for variant in _variants(MASTER_ALL.token):
        assert variant in response.text


UNFORESEEN = [("extra_element", {}), ("code_no_wrapper", {}), ("null_entry", {}), ("http_429", {"retry_after": 2}),
              ("missing_result", {}), ("empty_list", {}), ("http_403_html", {}), ("unknown_code", {}),
              ("echo_token", {"status": 502})]


@pytest.mark.parametrize(("kind", "params"), UNFORESEEN)
def test_each_new_kind_targets_login_service_operation_and_count(sim, kind, params) -> None:
    calls = {
        "target": lambda: _companies(sim, MASTER_HORECA),
        "other login": lambda: _companies(sim, MASTER_ALL),
        "other service": lambda: _ok(sim, MASTER_HORECA, "DebtorService", "List_GetAll"),
        "other operation": lambda: _ok(sim, MASTER_HORECA, "CompanyService", "List_GetByDebtor",
                                       body_inner="<DebtorId>2001</DebtorId>"),
    }
    plain = {name: call() for name, call in calls.items()}
    assert all(r.status_code == 200 for r in plain.values())

    def changed(name: str) -> bool:
        response = calls[name]()
        return (response.status_code, response.content) != (200, plain[name].content)

    sim.admin.inject_fault(kind, username=MASTER_HORECA.username, service="CompanyService", operation="List_GetAll",
                           count=2, **params)
    assert not changed("other login")
    assert not changed("other service")
    assert not changed("other operation")
    assert [changed("target") for _ in range(3)] == [True, True, False]
    assert sim.admin.faults() == []
    fault_id = sim.admin.inject_fault(kind, username=MASTER_HORECA.username, **params)  # no count: until cleared
    assert [changed("target") for _ in range(3)] == [True] * 3
    [rule] = sim.admin.faults()
    assert (rule["id"], rule["fired"]) == (fault_id, 3)
