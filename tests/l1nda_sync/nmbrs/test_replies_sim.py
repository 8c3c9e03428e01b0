"""The ResultReader reads every answer as zeep does: the same plain data, or (through zeep) the same error.

Each answer is taken from the simulator over real HTTP, or made from one by a change a server could make; both
readers get the same response: `SoapService._reply` (the fast path) and zeep's `process_reply` +
`serialize_object`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import requests
from zeep.helpers import serialize_object

from l1nda_sync.nmbrs.client import AUTH_HEADER_ONLY, NmbrsClient
from l1nda_sync.nmbrs.envelopes import header_fields
from l1nda_sync.nmbrs.service import SoapService
from nmbrs_sim.injection import APPLIES_TO

from .conftest import ENV, MASTER_ALL, MASTER_HORECA

OPERATIONS = [("DebtorService", "Environment_Get", {}), ("DebtorService", "List_GetAll", {}),
              ("DebtorService", "Debtor_Get", {"DebtorId": 2001}), ("DebtorService", "Tags_Get", {"DebtorId": 2001}),
              ("DebtorService", "Debtor_IsOwner", {}), ("CompanyService", "List_GetAll", {}),
              ("CompanyService", "List_GetByDebtor", {"DebtorId": 2001})]
ANSWERING_FAULTS = [None, "extra_element", "null_entry", "empty_list", "missing_result", "code_no_wrapper",
                    "unknown_code", "fault_1006"]


def answer(client: NmbrsClient, service: str, operation: str, params: dict[str, int],
           login=MASTER_ALL) -> tuple[SoapService, requests.Response]:
    soap = client.soap_service(service)
    kind = "AuthHeader" if (service, operation) in AUTH_HEADER_ONLY else "AuthHeaderWithDomain"
    header = dict(zip(header_fields(kind), (login.username, login.token, ENV), strict=False))
    rendered = soap.envelopes.render(operation, kind, header, params)
    return soap, client.session.post(soap.address, data=rendered.body, headers=dict(rendered.headers), timeout=5)


def outcome(read: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "value", read()
    except Exception as exc:
        return type(exc).__name__, str(exc)


def both(soap: SoapService, operation: str, response: requests.Response) -> tuple[tuple[str, Any], tuple[str, Any]]:
    operation_obj = soap.binding.get(operation)
    ours = outcome(lambda: soap._reply(operation, operation_obj, response))
    theirs = outcome(lambda: serialize_object(soap.binding.process_reply(soap.client, operation_obj, response), dict))
    return ours, theirs


def with_content(response: requests.Response, content: bytes) -> requests.Response:
    changed = requests.Response()
    changed.status_code, changed.headers, changed._content = response.status_code, response.headers, content
    return changed


CASES = [(operation, fault) for operation in OPERATIONS for fault in ANSWERING_FAULTS
         if fault is None or operation[:2] in APPLIES_TO[fault]]


@pytest.mark.parametrize(("operation", "fault"), CASES, ids=[f"{op[1]}.{op[0]}-{fault}" for op, fault in CASES])
def test_the_same_result_as_zeep_for_every_operation_and_answer_kind(sim, client, operation, fault) -> None:
    service, name, params = operation
    if fault is not None:
        sim.admin.inject_fault(fault, service=service, operation=name)
    soap, response = answer(client, service, name, params)
    ours, theirs = both(soap, name, response)
    assert ours == theirs
    if fault in (None, "extra_element", "null_entry", "empty_list"):
        assert ours[0] == "value"
    if fault is None and name != "Debtor_IsOwner":
        assert ours[1]  # something was read


def test_the_fast_reader_reads_the_usual_answers(sim, client) -> None:
    client.probe(MASTER_HORECA.creds())
    soaps = [client.soap_service(name) for name in ("DebtorService", "CompanyService")]
    assert sum(s.fast_reads for s in soaps) >= 5
    assert sum(s.zeep_reads for s in soaps) == 0


# A real answer changed the way a server might: (pattern, replacement) on the answer's text.
CHANGES = {
    "required element missing in the middle": (r"<ID>\d+</ID>", ""),
    "required element missing at the end": (r"<LoonaangifteTijdvak>\w+</LoonaangifteTijdvak>(<KvkNr>[^<]*</KvkNr>)?",
                                            ""),
    "an int that is no int": (r"<ID>(\d+)</ID>", r"<ID>x\1</ID>"),
    "an empty int": (r"<ID>\d+</ID>", "<ID/>"),
    "an empty string": (r"<Name>[^<]*</Name>", "<Name/>"),
    "an xsi:type": (r"<Company>", '<Company xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                                  'xsi:type="Company">'),
    "an attribute": (r"<Company>", '<Company extra="1">'),
    "an attribute on a value": (r"<Name>", '<Name extra="1">'),
    "an xsi:type on a value": (r"<Name>", '<Name xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                                          'xmlns:s="http://www.w3.org/2001/XMLSchema" xsi:type="s:string">'),
    "a soap header": (r"<soap:Body>", "<soap:Header/><soap:Body>"),
    "a processing instruction": (r"<Company>", "<?pi x?><Company>"),
    "a comment": (r"<Company>", "<!-- c --><Company>"),
    "two results": (r"(<List_GetAllResult>.*</List_GetAllResult>)", r"\1\1"),
    "a second payload": (r"</soap:Body>", "<Other/></soap:Body>"),
    "an empty company": (r"<Company>.*?</Company>", "<Company/>"),
    "a nil result": (r"<List_GetAllResult>.*</List_GetAllResult>",
                     '<List_GetAllResult xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:nil="true"/>'),
    "an empty result": (r"<List_GetAllResult>.*</List_GetAllResult>", "<List_GetAllResult/>"),
    "text between elements": (r"<Company>", "<Company>stray "),
    "cut short": (r"</Company>.*", "</Company>"),
    # What the AnswerReader tidies (the fast path reads untidied answers first: these must not be read there)
    "two fields out of order": (r"<Company>(<(\w+)>[^<]*</\2>)(<(\w+)>[^<]*</\4>)", r"<Company>\3\1"),
    "the last field first": (r"<Company>(.*?)(<(\w+)>[^<]*</\3>)</Company>", r"<Company>\2\1</Company>"),
    "an unknown field first": (r"<Company>", "<Company><Unknown>1</Unknown>"),
    "an unknown field last": (r"</Company>", "<Unknown>1</Unknown></Company>"),
    "an unknown entry in the list": (r"<Company>", "<Unknown/><Company>"),
    "a null entry": (r"<Company>", '<Company xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:nil="true"/>'
                                   "<Company>"),
}
TIDIED = {"two fields out of order": "reordered", "the last field first": "reordered",
          "an unknown field first": "ignored_elements", "an unknown field last": "ignored_elements",
          "an unknown entry in the list": "ignored_elements", "a null entry": "skipped_nulls"}


@pytest.mark.parametrize("change", list(CHANGES))
def test_the_same_result_as_zeep_for_changed_answers(sim, client, change) -> None:
    soap, response = answer(client, "CompanyService", "List_GetAll", {})
    text = response.content.decode("utf-8")
    assert "soap:Body" in text
    assert "<Company>" in text
    pattern, replacement = CHANGES[change]
    changed_text = re.sub(pattern, replacement, text, count=1, flags=re.S)
    assert changed_text != text
    tidied_before = {name: getattr(client.answers, name) for name in set(TIDIED.values())}
    ours, theirs = both(soap, "List_GetAll", with_content(response, changed_text.encode("utf-8")))
    assert ours == theirs
    if change in TIDIED:  # read as a value, after tidying (twice: ours and zeep's)
        assert ours[0] == "value"
        assert getattr(client.answers, TIDIED[change]) == tidied_before[TIDIED[change]] + 2


def test_an_answer_that_needs_no_tidying_is_read_without_it(sim, client) -> None:
    soap, response = answer(client, "CompanyService", "List_GetAll", {})
    before = (client.answers.ignored_elements, client.answers.reordered, client.answers.skipped_nulls)
    reads = soap.fast_reads
    ours, theirs = both(soap, "List_GetAll", response)
    assert ours == theirs
    assert ours[0] == "value"
    assert soap.fast_reads == reads + 1
    assert (client.answers.ignored_elements, client.answers.reordered, client.answers.skipped_nulls) == before


def test_an_answer_cut_short_is_an_error_never_a_shorter_list(sim, client) -> None:
    soap, response = answer(client, "CompanyService", "List_GetAll", {})
    cut = with_content(response, response.content[: len(response.content) // 2])
    kind, _ = outcome(lambda: soap._reply("List_GetAll", soap.binding.get("List_GetAll"), cut))
    assert kind == "TransportError"


@pytest.mark.parametrize("content", [
    b'<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>',  # a DTD: zeep forbids it
    b"<x><y></x>",  # not well-formed
    b"",  # empty
])
def test_documents_zeep_refuses_are_refused_the_same_way(sim, client, content) -> None:
    soap, response = answer(client, "DebtorService", "List_GetAll", {})
    ours, theirs = both(soap, "List_GetAll", with_content(response, content))
    assert ours == theirs
    assert ours[0] != "value"
