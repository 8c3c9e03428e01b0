"""Every operation over real HTTP with zeep: typed results, SOAP 1.1 and 1.2, empty lists as an empty result."""

from __future__ import annotations

import pytest
from lxml import etree

from tests.nmbrs_sim.conftest import BUSINESS, CLIENT_VANDIJK, MASTER_ALL, MASTER_HORECA, post


@pytest.mark.parametrize("soap12", [False, True], ids=["soap11", "soap12"])
def test_every_operation_returns_typed_results(soap, soap12: bool) -> None:
    env = soap.call(MASTER_ALL, "DebtorService", "Environment_Get", soap12=soap12)
    assert (env.Domain, env.SubDomain) == ("demo-accountants.nmbrs.nl", "demo-accountants")

    debtors = soap.call(MASTER_ALL, "DebtorService", "List_GetAll", soap12=soap12)
    assert [d.Id for d in debtors] == list(range(2001, 2010))
    assert all(isinstance(d.Id, int) for d in debtors)
    assert (debtors[0].Number, debtors[0].Name) == ("D001", "Brasserie Het Anker")

    one = soap.call(MASTER_ALL, "DebtorService", "Debtor_Get", soap12=soap12, DebtorId=2002)
    assert (one.Id, one.Number, one.Name) == (2002, "D002", "Café De Zwaan")

    tags = soap.call(MASTER_ALL, "DebtorService", "Tags_Get", soap12=soap12, DebtorId=2004)
    assert [(t.Number, t.Tag, t.HexColor) for t in tags] == [(2, "Retail", "#17BEBB"), (1, "Horeca", "#E4572E")]

    assert soap.call(MASTER_ALL, "DebtorService", "Debtor_IsOwner", soap12=soap12) is True

    companies = soap.call(MASTER_ALL, "CompanyService", "List_GetAll", soap12=soap12)
    ids = [c.ID for c in companies]
    assert 50101 in ids
    assert 50901 in ids
    assert 50503 not in ids  # ended
    first = companies[0]
    assert (first.ID, first.Number, first.Name, first.LoonaangifteTijdvak, first.KvkNr) == (
        50101, 101, "Brasserie Het Anker B.V.", "Month", "60000101")
    assert isinstance(first.Number, int)

    by_debtor = soap.call(MASTER_ALL, "CompanyService", "List_GetByDebtor", soap12=soap12, DebtorId=2007)
    assert [(c.ID, c.LoonaangifteTijdvak) for c in by_debtor] == [(50701, "Week4"), (50702, "Month")]


def test_empty_lists_are_an_empty_result_element(sim, soap) -> None:
    sim.admin.update_login(CLIENT_VANDIJK.username, company_filter=[])
    assert soap.call(CLIENT_VANDIJK, "CompanyService", "List_GetAll") is None
    assert soap.call(CLIENT_VANDIJK, "DebtorService", "List_GetAll") is None
    assert soap.call(MASTER_ALL, "DebtorService", "Tags_Get", DebtorId=2009) is None  # an untagged debtor
    raw = post(sim, "CompanyService", "List_GetAll", CLIENT_VANDIJK)
    result = etree.fromstring(raw.content).find(
        ".//{https://api.nmbrs.nl/soap/v3/CompanyService}List_GetAllResult")
    assert result is not None
    assert len(result) == 0
    assert not (result.text or "").strip()


def test_answer_shape_matches_the_sample(sim) -> None:
    response = post(sim, "CompanyService", "List_GetByDebtor", MASTER_ALL, body_inner="<DebtorId>2002</DebtorId>")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    body = response.content.decode()
    assert ('<List_GetByDebtorResponse xmlns="https://api.nmbrs.nl/soap/v3/CompanyService"><List_GetByDebtorResult>'
            "<Company><ID>50201</ID><Number>201</Number><Name>Café De Zwaan V.O.F.</Name>"
            "<LoonaangifteTijdvak>Month</LoonaangifteTijdvak></Company>"
            "</List_GetByDebtorResult></List_GetByDebtorResponse>") in body  # null optional fields left out
    assert body.startswith('<?xml version="1.0" encoding="utf-8"?><soap:Envelope')


def test_soap12_answers_in_soap12(sim) -> None:
    response = post(sim, "DebtorService", "Debtor_IsOwner", MASTER_ALL, version="1.2")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/soap+xml; charset=utf-8"
    root = etree.fromstring(response.content)
    assert root.tag == "{http://www.w3.org/2003/05/soap-envelope}Envelope"
    assert root.findtext(".//{https://api.nmbrs.nl/soap/v3/DebtorService}Debtor_IsOwnerResult") == "true"


def test_client_and_business_logins(soap) -> None:
    assert [d.Id for d in soap.call(CLIENT_VANDIJK, "DebtorService", "List_GetAll")] == [2003]
    assert [c.ID for c in soap.call(CLIENT_VANDIJK, "CompanyService", "List_GetAll")] == [50301]
    assert [c.ID for c in soap.call(CLIENT_VANDIJK, "CompanyService", "List_GetByDebtor", DebtorId=2003)] == [50301]
    assert soap.call(CLIENT_VANDIJK, "DebtorService", "Debtor_IsOwner") is False
    assert soap.call(CLIENT_VANDIJK, "DebtorService", "Debtor_Get", DebtorId=2003).Name == "Modehuis Van Dijk"
    env = soap.call(BUSINESS, "DebtorService", "Environment_Get")
    assert env.SubDomain == "bakkerij-degraaf"
    assert [c.ID for c in soap.call(BUSINESS, "CompanyService", "List_GetAll")] == [60101, 60102]


def test_master_filtered_on_a_tag(soap) -> None:
    assert [d.Id for d in soap.call(MASTER_HORECA, "DebtorService", "List_GetAll")] == [2001, 2002, 2004]
    companies = soap.call(MASTER_HORECA, "CompanyService", "List_GetAll")
    assert [c.ID for c in companies] == [50101, 50102, 50201, 50401]
