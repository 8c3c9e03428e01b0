"""Reading answers that are safe to read, even when Nmbrs adds to them: a zeep ingress plugin.

zeep parses a response strictly against the (cached, up to a day old) WSDL: an element the WSDL does not know
(Nmbrs has added fields before, e.g. `KvkNr` to `Company`) fails the whole call. `Settings(strict=False)` is no
way out: it also switches lxml's *recover* mode on, which reads a truncated answer as a shorter list (a lost
company that is not lost). So the XML stays strictly parsed (malformed or cut answers fail, transient), and
this plugin tidies the parsed answer against the schema before zeep reads it:

- an element the schema does not know is dropped (logged once per type and name at INFO);
- known elements out of sequence order are put back in order;
- a null list entry (`<Company xsi:nil="true"/>`) is dropped;
- an `<OpResponse>` without its `<OpResult>` element is a `MalformedAnswer` (transient), never an empty list
  (an empty `<OpResult/>` stays a genuine empty list).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from lxml import etree
from zeep import Plugin
from zeep.xsd import Element, Type

from l1nda_sync.nmbrs.errors import MalformedAnswer

log = logging.getLogger(__name__)

XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
_BODIES = ("{http://schemas.xmlsoap.org/soap/envelope/}Body", "{http://www.w3.org/2003/05/soap-envelope}Body")
# {child qname: (position in the sequence, xsd element)} of a complex type; None for a type that takes any
# element (xsd:any) or is not complex: such a node is left as it is.
Children = Mapping[str, tuple[int, Element]] | None


class AnswerReader(Plugin):
    """Shared by every thread of one NmbrsClient; keeps only per-type lookups and counters."""

    def __init__(self) -> None:
        self._children: dict[int, tuple[Type, Children]] = {}
        self._entries_cache: dict[int, tuple[Type, Mapping[str, tuple[int, Element, bool, bool]] | None]] = {}
        self._lock = threading.Lock()
        self._reported: set[tuple[str, str]] = set()
        self.ignored_elements = 0
        self.skipped_nulls = 0
        self.reordered = 0

    def ingress(self, envelope: etree._Element, http_headers: Mapping[str, str],
                operation: object) -> tuple[etree._Element, Mapping[str, str]]:
        payload = _payload(envelope)
        expected: Element | None = getattr(getattr(operation, "output", None), "body", None)
        if payload is None or expected is None or payload.tag != getattr(expected.qname, "text", None):
            return envelope, http_headers  # a fault, or not this operation's answer: zeep's own checks apply
        declared = self._known(expected.type)
        if declared is not None:
            result = next((qname for qname, (index, _) in declared.items() if index == 0), None)
            if result is not None and payload.find(result) is None:
                raise MalformedAnswer(f"the answer has no <{etree.QName(result).localname}> element "
                                      f"(an empty list would be an empty one)",
                                      operation=getattr(operation, "name", None))
        self._tidy(payload, expected.type)
        return envelope, http_headers

    # -- the schema, per type -----------------------------------------------------------------------------
    def _known(self, xsd_type: Type) -> Children:
        """{child qname: (position, xsd element)} of a complex type, or None (see `Children`)."""
        entry = self._children.get(id(xsd_type))
        if entry is not None:
            return entry[1]
        declared = getattr(xsd_type, "elements", None)  # only a complex type has a sequence of child elements
        elements: list[tuple[str, Element]] | None = None if declared is None else list(declared)
        known: Children = None
        if elements is not None and all(getattr(el, "qname", None) is not None for _, el in elements):
            known = {el.qname.text: (i, el) for i, (_, el) in enumerate(elements)}
        with self._lock:
            self._children[id(xsd_type)] = (xsd_type, known)  # holds the type, so its id is never reused
        return known

    def _entries(self, xsd_type: Type) -> Mapping[str, tuple[int, Element, bool, bool]] | None:
        """`_known(xsd_type)` with, per child, whether it repeats and whether its type is complex (tidied too)."""
        entry = self._entries_cache.get(id(xsd_type))
        if entry is not None:
            return entry[1]
        known = self._known(xsd_type)
        entries = None if known is None else {
            qname: (index, element, _repeats(element), self._known(element.type) is not None)
            for qname, (index, element) in known.items()}
        with self._lock:
            self._entries_cache[id(xsd_type)] = (xsd_type, entries)  # holds the type, so its id is never reused
        return entries

    def _tidy(self, node: etree._Element, xsd_type: Type) -> None:
        entries = self._entries(xsd_type)
        if entries is None:
            return
        kept: list[tuple[int, etree._Element]] = []
        in_order, last = True, -1
        for child in list(node):
            if not isinstance(child.tag, str):
                continue
            entry = entries.get(child.tag)
            if entry is None:
                node.remove(child)
                self._count("ignored_elements")
                self._report(xsd_type, child.tag)
                continue
            index, element, repeats, complex_type = entry
            if repeats and child.get(XSI_NIL) in ("true", "1"):
                node.remove(child)
                self._count("skipped_nulls")
                continue
            kept.append((index, child))
            in_order, last = in_order and index >= last, index
            if complex_type and len(child):  # a leaf has nothing to drop, order or skip
                self._tidy(child, element.type)
        if not in_order:
            for _, child in kept:
                node.remove(child)
            for _, child in sorted(kept, key=lambda pair: pair[0]):
                node.append(child)
            self._count("reordered")

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def _report(self, xsd_type: Type, tag: str) -> None:
        key = (str(getattr(xsd_type, "name", None) or xsd_type), tag)
        with self._lock:
            if key in self._reported:
                return
            self._reported.add(key)
        log.info("Nmbrs answered <%s> in %s, which the WSDL in use does not declare; ignored",
                 etree.QName(tag).localname, key[0])


def _payload(envelope: etree._Element) -> etree._Element | None:
    for name in _BODIES:
        body = envelope.find(name)
        if body is not None:
            return next((child for child in body if _is_element(child)), None)
    return None


def _is_element(node: etree._Element) -> bool:
    """False for comments and processing instructions (their `tag` is a function, whatever the stubs say)."""
    return isinstance(node.tag, str)


def _repeats(element: Element) -> bool:
    max_occurs = getattr(element, "max_occurs", 1)
    return max_occurs == "unbounded" or (isinstance(max_occurs, int) and max_occurs > 1)
