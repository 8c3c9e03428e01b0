"""One SOAP service's calls without zeep's per-call work, with zeep's semantics: `SoapService.call`.

The envelope comes from a template (`envelopes`), goes through the same transport (`NmbrsTransport.post`:
deadline, HTTP errors, redacted logging), and a 200 answer is parsed as zeep parses it (`zeep.loader.parse_xml`'s
parser and checks, strict), tidied by the AnswerReader plugin as zeep would, then read by the `ResultReader`
(`replies`); an answer that needs no tidying is read without it.
A fault (zeep's `process_error` raises the same `Fault`), any status other than 200, a multipart
answer, and every shape the ResultReader calls `Unusual` go through zeep's own code on the same bytes or document.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from zeep import plugins
from zeep.exceptions import DTDForbidden, EntitiesForbidden, TransportError, XMLSyntaxError
from zeep.helpers import serialize_object
from zeep.loader import ImportResolver
from zeep.proxy import ServiceProxy
from zeep.utils import get_media_type

from l1nda_sync.nmbrs.answer_digest import AnswerMemo, answer_digest
from l1nda_sync.nmbrs.answers import AnswerReader
from l1nda_sync.nmbrs.envelopes import Envelopes
from l1nda_sync.nmbrs.replies import ResultReader, Unusual

_UNUSUAL = object()  # what `_read_fast` returns for an answer the ResultReader leaves to zeep


@dataclass(frozen=True, slots=True)
class PreparedCall:
    """One operation's request, ready to send: what `SoapService.reply` needs to read its answer."""

    operation: str
    operation_obj: Any
    body: bytes = field(repr=False)  # the envelope carries the token: never shown
    headers: Mapping[str, str] = field(default_factory=dict)


class SoapService:
    """A zeep ServiceProxy's operations, called the fast way; shared by every thread."""

    def __init__(self, proxy: ServiceProxy, schema: bytes = b"") -> None:
        self.proxy = proxy
        self.schema = schema  # the fingerprint of the WSDL the proxy was built from (`answer_digest`)
        self.client = proxy._client
        self.binding = proxy._binding
        self.address: str = proxy._binding_options["address"]
        self.envelopes = Envelopes(proxy)
        self._readers: dict[str, ResultReader | None] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        # The ResultReader may read an answer before the AnswerReader tidies it when that is the only plugin: every
        # change tidying makes (an unknown element dropped, a null entry dropped, the order restored, a missing
        # result refused) leaves the untidied answer with an element the ResultReader cannot place, or an attribute,
        # so it raises Unusual there and the answer is tidied and read as before.
        self._only_tidying = [type(plugin) for plugin in self.client.plugins] == [AnswerReader]
        self.fast_reads = 0  # answers read by the ResultReader (the rest by zeep); for tests and the bench
        self.zeep_reads = 0

    def call(self, operation: str, header_kind: str, header_values: Mapping[str, str],
             params: Mapping[str, Any]) -> Any:
        """Plain data (dicts, lists, values) as `serialize_object(<zeep call>, dict)` gives; zeep's errors."""
        request = self.prepare(operation, header_kind, header_values, params)
        return self.reply(request, self.send(request))

    # The three steps of `call`, for a caller that holds a call slot only while the request is at Nmbrs (`send`):
    # building the envelope and reading the answer need no slot.
    def prepare(self, operation: str, header_kind: str, header_values: Mapping[str, str],
                params: Mapping[str, Any]) -> PreparedCall:
        """The operation and its envelope; ValueError for an operation the WSDL does not have."""
        operation_obj = self.binding.get(operation)
        if operation_obj is None:
            raise ValueError(f"Operation {operation!r} not found")
        rendered = self.envelopes.render(operation, header_kind, header_values, params)
        return PreparedCall(operation, operation_obj, rendered.body, rendered.headers)

    def send(self, request: PreparedCall) -> Any:
        """POST the envelope; the answer, read in full (the transport's errors for HTTP failures)."""
        return self.client.transport.post(self.address, request.body, request.headers)

    def reply(self, request: PreparedCall, response: Any, memo: AnswerMemo | None = None) -> Any:
        """The answer as plain data (see `call`); a fault raises zeep's Fault.

        With a `memo`, a 200 answer gets its digest in it; one whose digest is `memo.known` is not read (None, and
        `memo.same`): see `answer_digest`."""
        if memo is None:
            return self._reply(request.operation, request.operation_obj, response)
        memo.start()  # the call's answer is the last attempt's: nothing from an earlier one survives
        if not self._plain(response):  # zeep's own reading (an error, or multipart): no digest
            return self._reply(request.operation, request.operation_obj, response)
        digest = answer_digest(response.content, self.schema)
        if digest == memo.known:
            memo.digest, memo.same = digest, True
            return None
        read = self._read_plain(request.operation, request.operation_obj, response)
        memo.digest = digest  # only once it was read without error
        return read

    @staticmethod
    def _plain(response: Any) -> bool:
        """A 200 answer with a body, not multipart: the only kind read here rather than by zeep's own code."""
        return bool(response.status_code == 200 and response.content
                    and get_media_type(response.headers.get("Content-Type", "text/xml")) != "multipart/related")

    def _reply(self, operation: str, operation_obj: Any, response: Any) -> Any:
        if not self._plain(response):
            return self._zeep(self.binding.process_reply(self.client, operation_obj, response))
        return self._read_plain(operation, operation_obj, response)

    def _read_plain(self, operation: str, operation_obj: Any, response: Any) -> Any:
        """A `_plain` answer: parsed as zeep parses it, then read by the ResultReader (zeep's code when unusual)."""
        content = response.content
        try:
            doc = self._parse(content)
        except XMLSyntaxError as exc:  # zeep's own wording (the same exception zeep's process_reply raises)
            raise TransportError(f"Server returned response ({response.status_code}) with invalid XML: {exc}.\n"
                                 f"Content: {content!r}", status_code=response.status_code, content=content) from None
        reader = self._reader(operation, operation_obj)
        if reader is not None and self._only_tidying:  # untidied (see __init__); Unusual -> tidied, then as before
            read = self._read_fast(reader, doc)  # one body element, this operation's answer: never a fault
            if read is not _UNUSUAL:
                return read
        doc, _ = plugins.apply_ingress(self.client, doc, response.headers, operation_obj)
        if doc.find("soap-env:Body/soap-env:Fault", namespaces=self.binding.nsmap) is not None:
            return self.binding.process_error(doc, operation_obj)
        if reader is not None:
            read = self._read_fast(reader, doc)
            if read is not _UNUSUAL:
                return read
        return self._zeep(operation_obj.process_reply(doc))

    def _read_fast(self, reader: ResultReader, doc: etree._Element) -> Any:
        try:
            result = reader.read(doc)
        except Unusual:
            return _UNUSUAL
        self.fast_reads += 1
        return result

    def _parse(self, content: bytes) -> etree._Element:
        """`zeep.loader.parse_xml(content, transport, settings=...)` with one parser per thread instead of one per
        call (building it is a tenth of a small answer's CPU): the same options, resolver and DTD checks."""
        settings = self.client.settings
        parser = getattr(self._local, "parser", None)
        if parser is None:
            parser = etree.XMLParser(remove_comments=True, resolve_entities=False, recover=not settings.strict,
                                     huge_tree=settings.xml_huge_tree)
            parser.resolvers.add(ImportResolver(self.binding.transport, settings))
            self._local.parser = parser
        try:
            root = etree.fromstring(content, parser=parser)
        except etree.XMLSyntaxError as exc:
            raise XMLSyntaxError(f"Invalid XML content received ({exc.msg})", content=content) from None
        docinfo: Any = root.getroottree().docinfo  # the stubs miss doctype, system_url, iterentities
        if docinfo.doctype and settings.forbid_dtd:
            raise DTDForbidden(docinfo.doctype, docinfo.system_url, docinfo.public_id)
        if settings.forbid_entities:
            for dtd in (docinfo.internalDTD, docinfo.externalDTD):
                for entity in dtd.iterentities() if dtd is not None else ():
                    raise EntitiesForbidden(entity.name, entity.content)
        return root

    def _zeep(self, result: Any) -> Any:
        self.zeep_reads += 1
        return serialize_object(result, dict)

    def _reader(self, operation: str, operation_obj: Any) -> ResultReader | None:
        if operation in self._readers:
            return self._readers[operation]
        reader: ResultReader | None = None
        try:
            output = operation_obj.output
            header_type = getattr(getattr(output, "header", None), "type", None)
            # zeep returns the whole envelope when the answer declares headers; a wrapped body has several parts
            if not getattr(header_type, "_element", None) and output._is_body_wrapped is False:
                reader = ResultReader(output.body, self.binding.nsmap["soap-env"])
        except (AttributeError, IndexError, TypeError, ValueError):
            reader = None
        with self._lock:
            self._readers[operation] = reader
        return reader

