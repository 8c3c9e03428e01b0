"""Envelopes from templates are byte for byte zeep's own, for every operation; a filled-in value cannot add XML."""

from __future__ import annotations

import pytest
from lxml import etree

from l1nda_sync.nmbrs.client import AUTH_HEADER_ONLY, NmbrsClient
from l1nda_sync.nmbrs.envelopes import escape_text, header_fields, render_with_zeep

from .conftest import ENV, MASTER_ALL

OPERATIONS = [("DebtorService", "Environment_Get", {}), ("DebtorService", "List_GetAll", {}),
              ("DebtorService", "Debtor_Get", {"DebtorId": 2001}), ("DebtorService", "Tags_Get", {"DebtorId": 7}),
              ("DebtorService", "Debtor_IsOwner", {}), ("CompanyService", "List_GetAll", {}),
              ("CompanyService", "List_GetByDebtor", {"DebtorId": 2147483647})]
VALUES = [
    ("master@example.nl", "0123456789abcdef0123456789abcdef", "demo-office"),
    ("a<b>&c\"d'e@x.nl", "<&\"'>]]>\r\n\t", "dom&ain<\"'>"),
    ("ünïcödé@例え.jp", "𝄞token\u2028", ""),
    ("1987654301", "L1NDAslot0x7q", "L1NDAslot1x7q"),  # the stand-ins themselves as values
]
INJECTION = "x</Token><Domain>other-office</Domain><Token>y"


def header_of(operation: tuple[str, str, dict[str, int]], values: tuple[str, str, str]) -> tuple[str, dict[str, str]]:
    kind = "AuthHeader" if operation[:2] in AUTH_HEADER_ONLY else "AuthHeaderWithDomain"
    return kind, dict(zip(header_fields(kind), values, strict=False))


@pytest.mark.parametrize("values", VALUES)
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op[0]}.{op[1]}")
def test_the_template_renders_what_zeep_renders(client: NmbrsClient, operation, values) -> None:
    service, name, params = operation
    kind, header = header_of(operation, values)
    soap = client.soap_service(service)
    ours = soap.envelopes.render(name, kind, header, params)
    theirs = render_with_zeep(soap.proxy, name, kind, header, params)
    assert ours.body == theirs.body
    assert dict(ours.headers) == dict(theirs.headers)
    assert (name, kind, tuple(sorted(params))) in soap.envelopes._templates  # the template was used
    assert soap.envelopes._templates[(name, kind, tuple(sorted(params)))] is not None


@pytest.mark.parametrize("field", ["Username", "Token", "Domain"])
def test_a_value_cannot_inject_xml(client: NmbrsClient, field: str) -> None:
    header = {"Username": "u@x.nl", "Token": "t" * 32, "Domain": "office", field: INJECTION}
    rendered = client.soap_service("DebtorService").envelopes.render("List_GetAll", "AuthHeaderWithDomain", header, {})
    root = etree.fromstring(rendered.body)
    auth = root.find(".//{*}AuthHeaderWithDomain")
    assert auth is not None
    assert [etree.QName(child).localname for child in auth] == ["Username", "Token", "Domain"]
    assert {etree.QName(child).localname: child.text for child in auth} == header
    assert escape_text(INJECTION).encode() in rendered.body


def test_a_value_xml_cannot_carry_is_left_to_zeep_and_fails_as_before(client: NmbrsClient) -> None:
    header = {"Username": "u@x.nl", "Token": "bad\x01token", "Domain": "office"}
    with pytest.raises(ValueError, match="XML compatible"):
        client.soap_service("DebtorService").envelopes.render("List_GetAll", "AuthHeaderWithDomain", header, {})


def test_a_parameter_that_is_not_a_plain_int_is_rendered_by_zeep(client: NmbrsClient) -> None:
    soap = client.soap_service("CompanyService")
    header = {"Username": "u@x.nl", "Token": "t" * 32, "Domain": "office"}
    ours = soap.envelopes.render("List_GetByDebtor", "AuthHeaderWithDomain", header, {"DebtorId": True})
    assert ours == render_with_zeep(soap.proxy, "List_GetByDebtor", "AuthHeaderWithDomain", header, {"DebtorId": True})
    assert not soap.envelopes._templates  # no template was built for it


def test_calls_through_templates_reach_the_simulator(sim, client: NmbrsClient) -> None:
    companies = client.companies_by_debtor(MASTER_ALL.creds(ENV), 2001)
    assert companies
    assert all(c.debtor_id == 2001 for c in companies)
    assert sim.admin.call_count(service="CompanyService", operation="List_GetByDebtor") == 1
