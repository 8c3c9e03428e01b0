"""The WSDLs the simulator serves, written for this project: one per service, document/literal,
SOAP 1.1 and 1.2 bindings, v3 target namespaces, `elementFormDefault="qualified"`, the auth header declared
per operation, and a `soap:address` that points back at whoever serves it (as ASMX does)."""

from __future__ import annotations

import functools
from xml.sax.saxutils import quoteattr

from nmbrs_sim.catalog import PERIODS, SERVICES, namespace

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
SOAP11_BINDING_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
SOAP12_BINDING_NS = "http://schemas.xmlsoap.org/wsdl/soap12/"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
_LOCATION = "\x00LOCATION\x00"


def _elem(name: str, type_: str, min_occurs: int = 0, extra: str = "") -> str:
    return f'<s:element minOccurs="{min_occurs}" maxOccurs="1" name="{name}" type="{type_}"{extra} />'


def _complex(name: str, *fields: str, any_attribute: bool = False) -> str:
    tail = "<s:anyAttribute />" if any_attribute else ""
    return f'<s:complexType name="{name}"><s:sequence>{"".join(fields)}</s:sequence>{tail}</s:complexType>'


def _array(item: str) -> str:
    return (f'<s:complexType name="ArrayOf{item}"><s:sequence>'
            f'<s:element minOccurs="0" maxOccurs="unbounded" name="{item}" nillable="true" type="tns:{item}" />'
            f"</s:sequence></s:complexType>")


_AUTH_TYPES = {
    "AuthHeader": _complex("AuthHeader", _elem("Username", "s:string"), _elem("Token", "s:string"),
                           any_attribute=True),
    "AuthHeaderWithDomain": _complex("AuthHeaderWithDomain", _elem("Username", "s:string"),
                                     _elem("Token", "s:string"), _elem("Domain", "s:string"), any_attribute=True),
}

_DATA_TYPES = {
    "DebtorService": "".join((
        _complex("Environment", _elem("Domain", "s:string"), _elem("SubDomain", "s:string")),
        _array("Debtor"),
        _complex("Debtor", _elem("Id", "s:int", 1), _elem("Number", "s:string"), _elem("Name", "s:string")),
        _array("DebtorTag"),
        _complex("DebtorTag", _elem("Number", "s:int", 1), _elem("HexColor", "s:string"), _elem("Tag", "s:string")),
    )),
    "CompanyService": "".join((
        _array("Company"),
        _complex("Company", _elem("ID", "s:int", 1), _elem("Number", "s:int", 1), _elem("Name", "s:string"),
                 _elem("PhoneNumber", "s:string"), _elem("FaxNumber", "s:string"), _elem("Email", "s:string"),
                 _elem("Website", "s:string"), _elem("LoonaangifteTijdvak", "tns:LoonaangifteTijdvak", 1),
                 _elem("KvkNr", "s:string")),
        '<s:simpleType name="LoonaangifteTijdvak"><s:restriction base="s:string">'
        + "".join(f'<s:enumeration value="{p}" />' for p in PERIODS)
        + "</s:restriction></s:simpleType>",
    )),
}

# (service, operation) -> (result type, minOccurs of the result element, documentation)
_RESULTS = {
    ("DebtorService", "Environment_Get"): ("tns:Environment", 0, "The environment (domain) of the login."),
    ("DebtorService", "List_GetAll"): ("tns:ArrayOfDebtor", 0, "All debtors the login can see."),
    ("DebtorService", "Debtor_Get"): ("tns:Debtor", 0, "One debtor by id."),
    ("DebtorService", "Tags_Get"): ("tns:ArrayOfDebtorTag", 0, "The tags of one debtor."),
    ("DebtorService", "Debtor_IsOwner"): ("s:boolean", 1, "Whether the login is the owner (master) login."),
    ("CompanyService", "List_GetAll"): ("tns:ArrayOfCompany", 0, "All companies the login can see."),
    ("CompanyService", "List_GetByDebtor"): ("tns:ArrayOfCompany", 0, "The companies of one debtor."),
}


def _operation_elements(service: str) -> str:
    parts = []
    for op in SERVICES[service].values():
        params = "".join(_elem(p, "s:int", 1) for p in op.int_params)
        request = f"<s:sequence>{params}</s:sequence>" if params else ""
        parts.append(f'<s:element name="{op.name}"><s:complexType>{request}</s:complexType></s:element>')
        result_type, min_occurs, _ = _RESULTS[(service, op.name)]
        parts.append(f'<s:element name="{op.name}Response"><s:complexType><s:sequence>'
                     f"{_elem(op.name + 'Result', result_type, min_occurs)}</s:sequence></s:complexType></s:element>")
    return "".join(parts)


def _binding(service: str, suffix: str, prefix: str, transport_ns: str) -> str:
    ops = []
    for op in SERVICES[service].values():
        ops.append(
            f'<wsdl:operation name="{op.name}">'
            f'<{prefix}:operation soapAction="{op.soap_action}" style="document" />'
            f'<wsdl:input><{prefix}:body use="literal" />'
            f'<{prefix}:header message="tns:{op.name}{op.header}" part="{op.header}" use="literal" /></wsdl:input>'
            f'<wsdl:output><{prefix}:body use="literal" /></wsdl:output></wsdl:operation>')
    return (f'<wsdl:binding name="{service}{suffix}" type="tns:{service}Soap">'
            f'<{prefix}:binding transport="{transport_ns}" />{"".join(ops)}</wsdl:binding>')


@functools.cache
def _template(service: str) -> str:
    ns = namespace(service)
    ops = SERVICES[service].values()
    headers = sorted({op.header for op in ops})
    schema = (f'<s:schema elementFormDefault="qualified" targetNamespace="{ns}">'
              + _operation_elements(service)
              + "".join(f'<s:element name="{h}" type="tns:{h}" />{_AUTH_TYPES[h]}' for h in headers)
              + _DATA_TYPES[service] + "</s:schema>")
    messages = "".join(
        f'<wsdl:message name="{op.name}SoapIn"><wsdl:part name="parameters" element="tns:{op.name}" /></wsdl:message>'
        f'<wsdl:message name="{op.name}SoapOut"><wsdl:part name="parameters" element="tns:{op.name}Response" />'
        f"</wsdl:message>"
        f'<wsdl:message name="{op.name}{op.header}"><wsdl:part name="{op.header}" element="tns:{op.header}" />'
        f"</wsdl:message>"
        for op in ops)
    port_type = (f'<wsdl:portType name="{service}Soap">'
                 + "".join(f'<wsdl:operation name="{op.name}"><wsdl:documentation xmlns:wsdl="{WSDL_NS}">'
                           f"{_RESULTS[(service, op.name)][2]}</wsdl:documentation>"
                           f'<wsdl:input message="tns:{op.name}SoapIn" />'
                           f'<wsdl:output message="tns:{op.name}SoapOut" /></wsdl:operation>' for op in ops)
                 + "</wsdl:portType>")
    transport = "http://schemas.xmlsoap.org/soap/http"
    service_el = (f'<wsdl:service name="{service}">'
                  f'<wsdl:port name="{service}Soap" binding="tns:{service}Soap">'
                  f"<soap:address location={_LOCATION} /></wsdl:port>"
                  f'<wsdl:port name="{service}Soap12" binding="tns:{service}Soap12">'
                  f"<soap12:address location={_LOCATION} /></wsdl:port></wsdl:service>")
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            f'<wsdl:definitions xmlns:soap="{SOAP11_BINDING_NS}" xmlns:soap12="{SOAP12_BINDING_NS}" '
            f'xmlns:s="{XSD_NS}" xmlns:tns="{ns}" xmlns:wsdl="{WSDL_NS}" targetNamespace="{ns}">'
            f"<wsdl:types>{schema}</wsdl:types>{messages}{port_type}"
            + _binding(service, "Soap", "soap", transport)
            + _binding(service, "Soap12", "soap12", transport)
            + service_el + "</wsdl:definitions>")


@functools.lru_cache(maxsize=256)
def render_wsdl(service: str, location: str) -> bytes:
    """The WSDL of `service` with both ports' address set to `location` (the service's .asmx URL)."""
    return _template(service).replace(_LOCATION, quoteattr(location)).encode("utf-8")
