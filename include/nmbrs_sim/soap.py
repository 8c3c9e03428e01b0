"""SOAP 1.1 / 1.2 envelopes: read a request (version, operation, auth header, parameters) and write answers
and faults in the shape .NET ASMX produces."""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from nmbrs_sim.catalog import ACTIONS, SERVICES, Operation, namespace
from nmbrs_sim.errors import NO_ACTION_TEXT, READ_PREFIX, ClientFault

SOAP11 = "1.1"
SOAP12 = "1.2"
ENVELOPE_NS = {SOAP11: "http://schemas.xmlsoap.org/soap/envelope/", SOAP12: "http://www.w3.org/2003/05/soap-envelope"}
CONTENT_TYPES = {SOAP11: "text/xml; charset=utf-8", SOAP12: "application/soap+xml; charset=utf-8"}
MEDIA_TYPES = {"text/xml": SOAP11, "application/soap+xml": SOAP12}

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_comments=True,
                          load_dtd=False)


class VersionMismatch(ClientFault):
    """The envelope namespace does not match the content type's SOAP version."""


@dataclass(frozen=True, slots=True)
class SoapRequest:
    """A SOAP call as read: version, operation, the auth header's fields and the Int32 parameters."""

    version: str
    operation: Operation
    username: str | None
    token: str | None
    domain: str | None
    params: dict[str, int]


def escape(text: str) -> str:
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


def version_for(content_type: str) -> str | None:
    """'text/xml; charset=utf-8' -> '1.1', 'application/soap+xml; ...' -> '1.2', anything else -> None."""
    media = content_type.split(";", 1)[0].strip().lower()
    return MEDIA_TYPES.get(media)


def action_from_content_type(content_type: str) -> str | None:
    """SOAP 1.2 carries the action as a parameter of the content type: `application/soap+xml; action="..."`."""
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "action":
            return value.strip().strip('"')
    return None


def parse_request(service: str, version: str, action: str | None, body: bytes) -> SoapRequest:
    """Read one request to `service`; ClientFault for anything ASMX would refuse to read."""
    if action is not None:
        action = action.strip().strip('"')
    op = ACTIONS.get(action) if action else None
    if op is not None and op.service != service:
        op = None
    if op is None and (version == SOAP11 or action):
        raise ClientFault(NO_ACTION_TEXT)  # SOAP 1.2 may leave the action out; then the body element routes
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        line, column = getattr(exc, "position", None) or (0, 0)
        raise ClientFault(f"{READ_PREFIX}There is an error in XML document ({line}, {column}).") from None
    env_ns = ENVELOPE_NS[version]
    if root.tag != f"{{{env_ns}}}Envelope":
        if isinstance(root.tag, str) and root.tag.endswith("}Envelope"):
            found = root.tag[1:].split("}", 1)[0]
            raise VersionMismatch(f"Possible SOAP version mismatch: Envelope namespace {found} was unexpected. "
                                  f"Expecting {env_ns}.")
        raise ClientFault(f"{READ_PREFIX}There is an error in XML document (1, 1). ---> "
                          f"The root element is not a SOAP {version} Envelope.")
    body_el = root.find(f"{{{env_ns}}}Body")
    if body_el is None:
        raise ClientFault(f"{READ_PREFIX}The SOAP message has no Body element.")
    payload = next((child for child in body_el if isinstance(child.tag, str)), None)
    ns = namespace(service)
    if op is None:  # SOAP 1.2 without an action parameter: route on the body element, as ASMX does
        if payload is not None and payload.tag.startswith(f"{{{ns}}}"):
            op = SERVICES[service].get(payload.tag[len(ns) + 2:])
        if op is None:
            raise ClientFault(NO_ACTION_TEXT)
    if payload is None or payload.tag != f"{{{ns}}}{op.name}":
        found = etree.QName(payload).localname if payload is not None else "nothing"
        raise ClientFault(f"{READ_PREFIX}There is an error in XML document. ---> "
                          f"<{found}> was not expected; the body must hold <{op.name} xmlns='{ns}'>.")
    username, token, domain = _auth_header(root.find(f"{{{env_ns}}}Header"), ns, op)
    return SoapRequest(version, op, username, token, domain, _int_params(payload, ns, op))


def _auth_header(header_el: etree._Element | None, ns: str, op: Operation
                 ) -> tuple[str | None, str | None, str | None]:
    """Username, token and domain from the one header the WSDL declares for the operation (as ASMX reads it)."""
    auth = header_el.find(f"{{{ns}}}{op.header}") if header_el is not None else None
    if auth is None:
        return None, None, None
    domain = auth.findtext(f"{{{ns}}}Domain") if op.header == "AuthHeaderWithDomain" else None
    return auth.findtext(f"{{{ns}}}Username"), auth.findtext(f"{{{ns}}}Token"), domain


def _int_params(payload: etree._Element, ns: str, op: Operation) -> dict[str, int]:
    """The operation's Int32 parameters; a missing one is 0, as .NET deserializes it."""
    params: dict[str, int] = {}
    for name in op.int_params:
        text = payload.findtext(f"{{{ns}}}{name}")
        if text is None:
            params[name] = 0  # .NET leaves a missing int at its default
            continue
        try:
            params[name] = int(text.strip())
        except ValueError:
            raise ClientFault(f"{READ_PREFIX}There is an error in XML document. ---> "
                              f"Input string was not in a correct format ({name}).") from None
        if not -(2**31) <= params[name] < 2**31:
            raise ClientFault(f"{READ_PREFIX}There is an error in XML document. ---> "
                              f"Value was either too large or too small for an Int32 ({name}).")
    return params


_HEAD = {
    SOAP11: ('<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"'
             ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
             "<soap:Body>"),
    SOAP12: ('<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"'
             ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
             "<soap:Body>"),
}
_TAIL = "</soap:Body></soap:Envelope>"


def envelope(version: str, body_xml: str) -> bytes:
    return (_HEAD[version] + body_xml + _TAIL).encode("utf-8")


def fault(version: str, faultstring: str, *, client: bool = False, version_mismatch: bool = False) -> bytes:
    """An ASMX-style fault: soap:Server (1.2: soap:Receiver) or soap:Client (1.2: soap:Sender), empty detail."""
    text = escape(faultstring)
    if version == SOAP11:
        code = "soap:VersionMismatch" if version_mismatch else "soap:Client" if client else "soap:Server"
        return envelope(version, f"<soap:Fault><faultcode>{code}</faultcode><faultstring>{text}</faultstring>"
                                 "<detail /></soap:Fault>")
    code = "soap:VersionMismatch" if version_mismatch else "soap:Sender" if client else "soap:Receiver"
    return envelope(version, f"<soap:Fault><soap:Code><soap:Value>{code}</soap:Value></soap:Code>"
                             f'<soap:Reason><soap:Text xml:lang="en">{text}</soap:Text></soap:Reason>'
                             "<soap:Detail /></soap:Fault>")
