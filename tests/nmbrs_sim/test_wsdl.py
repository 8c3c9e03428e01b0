"""The served WSDLs: zeep loads them without warnings; names, casing, order, types and optionality follow
shared/NMBRS_API.md; the address points back at the simulator as seen in the Host header."""

from __future__ import annotations

import warnings

import pytest
import requests
import zeep
from lxml import etree

from nmbrs_sim.catalog import SERVICES, namespace, soap_action

XS = "{http://www.w3.org/2001/XMLSchema}"
WSDL = "{http://schemas.xmlsoap.org/wsdl/}"
SOAP11 = "{http://schemas.xmlsoap.org/wsdl/soap/}"
SOAP12 = "{http://schemas.xmlsoap.org/wsdl/soap12/}"


def _wsdl(sim, service: str, query: str = "WSDL", **headers: str) -> etree._Element:
    response = requests.get(f"{sim.base_url}{service}.asmx?{query}", headers=headers, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/xml")
    return etree.fromstring(response.content)


def _sequence(root: etree._Element, type_name: str) -> list[tuple[str, str, str]]:
    complex_type = root.find(f".//{XS}complexType[@name='{type_name}']")
    assert complex_type is not None, type_name
    return [(e.get("name"), e.get("type"), e.get("minOccurs")) for e in complex_type.iter(f"{XS}element")]


@pytest.mark.parametrize("service", ["DebtorService", "CompanyService"])
def test_zeep_loads_both_ports_without_warnings(sim, service: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for port in ("Soap", "Soap12"):
            client = zeep.Client(sim.wsdl_url(service), service_name=service, port_name=f"{service}{port}")
            assert set(SERVICES[service]) <= set(dir(client.service))
            binding = client.service._binding
            assert binding._operations.keys() >= SERVICES[service].keys()
            address = client.service._binding_options["address"]
            assert address == f"{sim.base_url}{service}.asmx"


@pytest.mark.parametrize("query", ["WSDL", "wsdl"])
def test_wsdl_shape(sim, query: str) -> None:
    root = _wsdl(sim, "DebtorService", query)
    ns = namespace("DebtorService")
    assert root.get("targetNamespace") == ns == "https://api.nmbrs.nl/soap/v3/DebtorService"
    schema = root.find(f"{WSDL}types/{XS}schema")
    assert schema.get("elementFormDefault") == "qualified"
    assert schema.get("targetNamespace") == ns
    bindings = {b.get("name"): b for b in root.findall(f"{WSDL}binding")}
    assert set(bindings) == {"DebtorServiceSoap", "DebtorServiceSoap12"}
    assert bindings["DebtorServiceSoap"].find(f"{SOAP11}binding") is not None
    assert bindings["DebtorServiceSoap12"].find(f"{SOAP12}binding") is not None
    for prefix, binding in ((SOAP11, bindings["DebtorServiceSoap"]), (SOAP12, bindings["DebtorServiceSoap12"])):
        for op in binding.findall(f"{WSDL}operation"):
            name = op.get("name")
            assert op.find(f"{prefix}operation").get("soapAction") == soap_action("DebtorService", name)
            assert op.find(f"{prefix}operation").get("style") == "document"
            assert op.find(f"{WSDL}input/{prefix}body").get("use") == "literal"
            header = op.find(f"{WSDL}input/{prefix}header")
            expected = "AuthHeader" if name == "Environment_Get" else "AuthHeaderWithDomain"
            assert header.get("part") == expected, name


def test_types_follow_the_facts_sheet(sim) -> None:
    debtor = _wsdl(sim, "DebtorService")
    assert _sequence(debtor, "Debtor") == [("Id", "s:int", "1"), ("Number", "s:string", "0"),
                                           ("Name", "s:string", "0")]
    assert _sequence(debtor, "DebtorTag") == [("Number", "s:int", "1"), ("HexColor", "s:string", "0"),
                                              ("Tag", "s:string", "0")]
    assert [n for n, _, _ in _sequence(debtor, "Environment")][:2] == ["Domain", "SubDomain"]
    assert _sequence(debtor, "AuthHeader") == [("Username", "s:string", "0"), ("Token", "s:string", "0")]
    assert [n for n, _, _ in _sequence(debtor, "AuthHeaderWithDomain")] == ["Username", "Token", "Domain"]
    assert debtor.find(f".//{XS}complexType[@name='AuthHeader']/{XS}anyAttribute") is not None
    assert _sequence(debtor, "ArrayOfDebtor")[0][:2] == ("Debtor", "tns:Debtor")
    company = _wsdl(sim, "CompanyService")
    assert _sequence(company, "Company") == [
        ("ID", "s:int", "1"), ("Number", "s:int", "1"), ("Name", "s:string", "0"),
        ("PhoneNumber", "s:string", "0"), ("FaxNumber", "s:string", "0"), ("Email", "s:string", "0"),
        ("Website", "s:string", "0"), ("LoonaangifteTijdvak", "tns:LoonaangifteTijdvak", "1"),
        ("KvkNr", "s:string", "0")]
    periods = [e.get("value") for e in company.iter(f"{XS}enumeration")]
    assert periods == ["None", "Month", "Week4", "Month6", "Year"]
    request = company.find(f"{WSDL}types/{XS}schema/{XS}element[@name='List_GetByDebtor']")
    assert [(e.get("name"), e.get("type")) for e in request.iter(f"{XS}element")][1:] == [("DebtorId", "s:int")]


def test_address_follows_the_host_header(sim) -> None:
    root = _wsdl(sim, "CompanyService", Host="nmbrs.test:8443")
    addresses = [a.get("location") for a in root.iter(f"{SOAP11}address", f"{SOAP12}address")]
    assert addresses == ["http://nmbrs.test:8443/soap/v3/CompanyService.asmx"] * 2


def test_service_paths_are_case_insensitive_like_asmx(sim) -> None:
    response = requests.get(f"{sim.base_url}debtorservice.asmx?wsdl", timeout=10)
    assert response.status_code == 200
    assert b"DebtorServiceSoap12" in response.content


def test_help_pages(sim) -> None:
    page = requests.get(f"{sim.base_url}DebtorService.asmx", timeout=10)
    assert page.status_code == 200
    assert "Tags_Get" in page.text
    op = requests.get(f"{sim.base_url}DebtorService.asmx?op=Debtor_Get", timeout=10)
    assert soap_action("DebtorService", "Debtor_Get") in op.text
    assert requests.get(f"{sim.base_url}DebtorService.asmx?op=Nope", timeout=10).status_code == 400
