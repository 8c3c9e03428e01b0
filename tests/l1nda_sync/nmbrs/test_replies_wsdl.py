"""The fast path reads an answer before the AnswerReader tidies it: shapes the seven Nmbrs operations do not have
(a list of simple values with a null entry; a fault after an empty response), on a small WSDL of their own.
Each must read as zeep reads it with the plugin: the same value, or the same error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from zeep import Client
from zeep.helpers import serialize_object

from l1nda_sync.nmbrs.answers import AnswerReader
from l1nda_sync.nmbrs.service import SoapService

NS = "http://api.nmbrs.nl/soap/v3/ListsOfValues"
WSDL = f"""<?xml version="1.0"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
  xmlns:s="http://www.w3.org/2001/XMLSchema" xmlns:tns="{NS}" targetNamespace="{NS}">
 <wsdl:types><s:schema elementFormDefault="qualified" targetNamespace="{NS}">
  <s:element name="Ids_Get"><s:complexType/></s:element>
  <s:element name="Ids_GetResponse"><s:complexType><s:sequence>
    <s:element minOccurs="0" maxOccurs="1" name="Ids_GetResult" type="tns:ArrayOfInt"/>
  </s:sequence></s:complexType></s:element>
  <s:complexType name="ArrayOfInt"><s:sequence>
    <s:element minOccurs="0" maxOccurs="unbounded" name="int" nillable="true" type="s:int"/>
  </s:sequence></s:complexType>
 </s:schema></wsdl:types>
 <wsdl:message name="In"><wsdl:part name="parameters" element="tns:Ids_Get"/></wsdl:message>
 <wsdl:message name="Out"><wsdl:part name="parameters" element="tns:Ids_GetResponse"/></wsdl:message>
 <wsdl:portType name="P"><wsdl:operation name="Ids_Get"><wsdl:input message="tns:In"/>
   <wsdl:output message="tns:Out"/></wsdl:operation></wsdl:portType>
 <wsdl:binding name="B" type="tns:P"><soap:binding transport="http://schemas.xmlsoap.org/soap/http"/>
  <wsdl:operation name="Ids_Get"><soap:operation soapAction="{NS}/Ids_Get" style="document"/>
   <wsdl:input><soap:body use="literal"/></wsdl:input><wsdl:output><soap:body use="literal"/></wsdl:output>
  </wsdl:operation></wsdl:binding>
 <wsdl:service name="S"><wsdl:port name="Port" binding="tns:B"><soap:address location="http://x.invalid/s"/>
 </wsdl:port></wsdl:service>
</wsdl:definitions>"""

ANSWER = (f'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" '
          f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soap:Body><Ids_GetResponse xmlns="{NS}">'
          f'<Ids_GetResult><int>1</int><int xsi:nil="true"/><int>3</int></Ids_GetResult>'
          f"</Ids_GetResponse></soap:Body></soap:Envelope>").encode()


FAULT_AFTER_EMPTY_RESPONSE = (
    f'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
    f'<Ids_GetResponse xmlns="{NS}"/>'
    f"<soap:Fault><faultcode>soap:Server</faultcode><faultstring>1001: invalid token</faultstring></soap:Fault>"
    f"</soap:Body></soap:Envelope>").encode()
CLEAN = ANSWER.replace(b'<int xsi:nil="true"/>', b"<int>2</int>")


@pytest.fixture
def soap(tmp_path: Path) -> SoapService:
    path = tmp_path / "lists.wsdl"
    path.write_text(WSDL)
    return SoapService(Client(str(path), plugins=[AnswerReader()]).service)


def response_of(content: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code, response._content = 200, content
    response.headers["Content-Type"] = "text/xml; charset=utf-8"
    return response


def outcome(read: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "value", read()
    except Exception as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize(("content", "expected"), [
    (ANSWER, ("value", [1, 3])),  # the null entry dropped by tidying, never read as None
    (CLEAN, ("value", [1, 2, 3])),
    (FAULT_AFTER_EMPTY_RESPONSE, ("MalformedAnswer", None)),  # tidying refuses it before any fault is read
], ids=["a null entry", "no null entry", "a fault after an empty response"])
def test_read_as_zeep_reads_it(soap: SoapService, content: bytes, expected: tuple[str, Any]) -> None:
    operation = soap.binding.get("Ids_Get")
    zeeps = outcome(lambda: serialize_object(soap.binding.process_reply(soap.client, operation,
                                                                        response_of(content)), dict))
    ours = outcome(lambda: soap._reply("Ids_Get", operation, response_of(content)))
    assert ours == zeeps
    assert ours[0] == expected[0]
    if expected[1] is not None:
        assert ours[1] == expected[1]
