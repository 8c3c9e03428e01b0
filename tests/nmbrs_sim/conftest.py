"""Shared fixtures: the demo scenario served over real HTTP, zeep clients on its WSDLs, raw SOAP helpers."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import zeep
from zeep.transports import Transport

import nmbrs_sim
from nmbrs_sim.catalog import namespace, soap_action
from nmbrs_sim.testing import RunningSim, running_simulator

DEMO = Path(nmbrs_sim.__file__).parent / "scenarios" / "demo.yaml"
EXAMPLE = Path(nmbrs_sim.__file__).parent / "scenarios" / "example.yaml"
ENV = "demo-accountants"
BUSINESS_ENV = "bakkerij-degraaf"


@dataclass(frozen=True)
class Who:
    username: str
    token: str
    domain: str | None = ENV


MASTER_ALL = Who("master-all@demo-accountants.example", "3f1c0e7a9b2d4c6e8f0a1b2c3d4e5f60")
MASTER_HORECA = Who("master-horeca@demo-accountants.example", "9a8b7c6d5e4f30211203f4e5d6c7b8a9")
CLIENT_VANDIJK = Who("payroll@modehuis-vandijk.example", "0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a")
CLIENT_DELINDE = Who("hr@thuiszorg-delinde.example", "a1b2c3d4e5f60718293a4b5c6d7e8f90")
BUSINESS = Who("salaris@bakkerij-degraaf.example", "5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b", BUSINESS_ENV)


class Soap:
    """zeep clients on the served WSDLs (SOAP 1.1 and 1.2 ports), with the right auth header per operation."""

    def __init__(self, sim: RunningSim, session: requests.Session) -> None:
        self.sim = sim
        transport = Transport(session=session, timeout=10, operation_timeout=10)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            self.clients = {
                (svc, port): zeep.Client(sim.wsdl_url(svc), transport=transport, service_name=svc,
                                         port_name=f"{svc}{port}")
                for svc in ("DebtorService", "CompanyService") for port in ("Soap", "Soap12")
            }

    def call(self, who: Who, service: str, operation: str, *, soap12: bool = False, **params: Any) -> Any:
        client = self.clients[(service, "Soap12" if soap12 else "Soap")]
        if service == "DebtorService" and operation == "Environment_Get":
            header = {"AuthHeader": {"Username": who.username, "Token": who.token}}
        else:
            header = {"AuthHeaderWithDomain": {"Username": who.username, "Token": who.token, "Domain": who.domain}}
        return getattr(client.service, operation)(_soapheaders=header, **params)

    def fault_code(self, who: Who, service: str, operation: str, **params: Any) -> int:
        """The Nmbrs error number of a call that must fail, read the way public clients do."""
        with pytest.raises(zeep.exceptions.Fault) as caught:
            self.call(who, service, operation, **params)
        return nmbrs_code(caught.value.message)


def nmbrs_code(faultstring: str) -> int:
    import re

    match = re.search(r"--->\s*(\d{4}):", faultstring)
    assert match, f"not an Nmbrs fault string: {faultstring!r}"
    return int(match.group(1))


def envelope(service: str, operation: str, who: Who | None, *, version: str = "1.1", header: str | None = None,
             body_inner: str = "") -> bytes:
    ns = namespace(service)
    env_ns = "http://schemas.xmlsoap.org/soap/envelope/" if version == "1.1" else "http://www.w3.org/2003/05/soap-envelope"
    head = ""
    if who is not None:
        name = header or ("AuthHeader" if operation == "Environment_Get" else "AuthHeaderWithDomain")
        domain = f"<Domain>{who.domain}</Domain>" if name == "AuthHeaderWithDomain" and who.domain is not None else ""
        head = (f'<soap:Header><{name} xmlns="{ns}"><Username>{who.username}</Username><Token>{who.token}</Token>'
                f"{domain}</{name}></soap:Header>")
    return (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{env_ns}">{head}'
            f'<soap:Body><{operation} xmlns="{ns}">{body_inner}</{operation}></soap:Body></soap:Envelope>').encode()


def post(sim: RunningSim, service: str, operation: str, who: Who | None, *, version: str = "1.1",
         action: str | None = "default", body: bytes | None = None, content_type: str | None = None,
         timeout: float = 10, **kwargs: Any) -> requests.Response:
    """A hand-made SOAP request (for what zeep would never send)."""
    if action == "default":
        action = soap_action(service, operation)
    headers = {}
    if version == "1.1":
        headers["Content-Type"] = content_type or "text/xml; charset=utf-8"
        if action is not None:
            headers["SOAPAction"] = f'"{action}"'
    else:
        ct = content_type or "application/soap+xml; charset=utf-8"
        headers["Content-Type"] = f'{ct}; action="{action}"' if action else ct
    data = body if body is not None else envelope(service, operation, who, version=version, **kwargs)
    return requests.post(f"{sim.base_url}{service}.asmx", data=data, headers=headers, timeout=timeout)


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSim]:
    with running_simulator(DEMO) as running:
        yield running


@pytest.fixture(scope="module")
def soap(sim: RunningSim) -> Iterator[Soap]:
    session = requests.Session()
    yield Soap(sim, session)
    session.close()


@pytest.fixture(autouse=True)
def _no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The server never crashes: no handler error is logged by aiohttp, asyncio or the simulator."""
    yield
    errors = [r for r in caplog.get_records("call")
              if r.levelno >= logging.ERROR and r.name.startswith(("aiohttp", "asyncio", "nmbrs_sim"))]
    assert not errors, [r.getMessage() for r in errors]


@pytest.fixture(autouse=True)
def _fresh_world(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts from the demo world, with no faults, no latency and an empty call log."""
    yield
    if "sim" in request.fixturenames:
        running: RunningSim = request.getfixturevalue("sim")
        running.admin.reset_world()
        running.admin.clear_faults()
        running.admin.set_latency(0)
        running.admin.clear_calls()


@dataclass(frozen=True)
class RawFault:
    status: int
    code: str
    text: str
    detail: Any

    @property
    def nmbrs_code(self) -> int:
        return nmbrs_code(self.text)


def raw_fault(response: requests.Response) -> RawFault:
    """Read a SOAP 1.1 or 1.2 fault from a hand-made request's answer."""
    from lxml import etree

    root = etree.fromstring(response.content)
    s11, s12 = "{http://schemas.xmlsoap.org/soap/envelope/}", "{http://www.w3.org/2003/05/soap-envelope}"
    fault = root.find(f"{s11}Body/{s11}Fault")
    if fault is not None:
        return RawFault(response.status_code, fault.findtext("faultcode"), fault.findtext("faultstring"),
                        fault.find("detail"))
    fault = root.find(f"{s12}Body/{s12}Fault")
    assert fault is not None, response.text
    return RawFault(response.status_code, fault.findtext(f"{s12}Code/{s12}Value"),
                    fault.findtext(f"{s12}Reason/{s12}Text"), fault.find(f"{s12}Detail"))
