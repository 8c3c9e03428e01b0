"""Reading an answer's result straight into plain data: what `serialize_object(zeep's result, dict)` gives,
without zeep's per-element objects (zeep's reader plus `serialize_object` cost ~1 ms per 100 elements).

`ResultReader` walks the answer with the operation's zeep schema (the same WSDL types) and reads the shape
Nmbrs answers in: an `<OpResponse>` holding one `<OpResult>`, complex types that are one plain sequence of
elements, simple types read by zeep's own type (`pythonvalue`). Whatever else it meets (a SOAP header in the
answer, attributes, `xsi:type`, a required element missing, an element left over, text a simple type cannot
read, a schema construct beyond a plain sequence) raises `Unusual`, and the caller hands the same document
to zeep: odd answers keep zeep's exact behaviour, errors included. It runs after the AnswerReader has tidied
the answer (unknown elements dropped, order restored, null list entries dropped).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lxml import etree
from zeep.xsd import AnySimpleType, ComplexType, Element, Sequence

XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


class Unusual(Exception):
    """The answer has a shape this reader leaves to zeep."""


# A complex type's plan: ((attribute name, qname, element, repeats, optional, simple), ...) or None (not a plain
# sequence); `simple` is the simple type's `pythonvalue` (None for a complex type).
Field = tuple[str, str, Element, bool, bool, Callable[[str], Any] | None]


def _plan(xsd_type: ComplexType) -> tuple[Field, ...] | None:
    if xsd_type.attributes:
        return None
    element = getattr(xsd_type, "_element", None)
    if isinstance(element, Element):  # simpleContent: a value, not children
        return None
    nested = xsd_type.elements_nested
    if not nested:
        return ()
    if len(nested) != 1 or type(nested[0][1]) is not Sequence:
        return None
    sequence = nested[0][1]
    if sequence.min_occurs != 1 or sequence.max_occurs != 1:
        return None
    fields: list[Field] = []
    for name, child in sequence.elements:
        if type(child) is not Element or child.qname is None or getattr(child, "default", None) is not None:
            return None
        if child.max_occurs != 1 and child.max_occurs != "unbounded":
            return None  # zeep stops at a numeric maxOccurs and fails on the rest
        simple = child.type.pythonvalue if isinstance(child.type, AnySimpleType) else None
        fields.append((name, child.qname.text, child, child.accepts_multiple, child.is_optional, simple))
    return tuple(fields)


def _simple_value(node: etree._Element, read: Callable[[str], Any]) -> Any:
    """`ResultReader._value` of a simple type, given the type's `pythonvalue`."""
    if node.get(XSI_TYPE) is not None:
        raise Unusual("xsi:type")
    text = node.text
    if text is None:
        return None
    try:
        return read(text)
    except (TypeError, ValueError):
        raise Unusual("a value its type cannot read") from None


class ResultReader:
    """Reads one operation's `<OpResult>`; built once per operation, shared by every thread (read-only)."""

    def __init__(self, response_element: Element, soap_env: str) -> None:
        self.body_tag = f"{{{soap_env}}}Body"
        self.header_tag = f"{{{soap_env}}}Header"
        self.response_tag = response_element.qname.text
        response_plan = _plan(response_element.type) if isinstance(response_element.type, ComplexType) else None
        if not response_plan or len(response_plan) != 1 or response_plan[0][3]:
            raise ValueError("not an <OpResponse> with one <OpResult>")
        self.result_tag = response_plan[0][1]
        self.result = response_plan[0][2]
        self._plans: dict[int, tuple[ComplexType, tuple[Field, ...] | None]] = {}

    def read(self, envelope: etree._Element) -> Any:
        """The result as plain data (dicts, lists, values), or `Unusual`."""
        body = None
        for child in envelope:
            tag = child.tag
            if tag == self.body_tag and body is None:
                body = child
            elif tag == self.header_tag or not isinstance(tag, str):
                raise Unusual("a SOAP header or a processing instruction")
        if body is None or len(body) != 1 or body.attrib:
            raise Unusual("not one payload element")
        response = body[0]
        if response.tag != self.response_tag or response.attrib or len(response) != 1:
            raise Unusual("not one result element")
        result = response[0]
        if result.tag != self.result_tag:
            raise Unusual("not the result element")
        value = self._value(result, self.result)
        if isinstance(value, dict) and len(value) == 1:  # zeep hands an ArrayOfX back as its list of X
            return next(iter(value.values()))
        return value

    def _value(self, node: etree._Element, element: Element) -> Any:
        xsd_type = element.type
        if isinstance(xsd_type, AnySimpleType):
            return _simple_value(node, xsd_type.pythonvalue)
        if not isinstance(xsd_type, ComplexType):
            raise Unusual("neither simple nor complex")
        if node.attrib:  # xsi:type, xsi:nil (a null entry the AnswerReader kept), anything zeep would read
            raise Unusual("attributes")
        return self._complex(node, xsd_type)

    def _complex(self, node: etree._Element, xsd_type: ComplexType) -> dict[str, Any] | None:
        plan = self._plan_of(xsd_type)
        if plan is None:
            raise Unusual("not a plain sequence")
        if not plan:
            return None  # zeep: an empty complexType reads as None
        children = list(node)
        if not children:
            return None
        result: dict[str, Any] = {}
        at, count = 0, len(children)
        for name, qname, child_element, repeats, optional, simple in plan:
            if at >= count:  # zeep's sequence stops here; the rest take their defaults
                result[name] = [] if repeats else None
                continue
            if repeats:
                result[name], at = self._repeated(children, at, qname, child_element, optional)
                continue
            child = children[at]
            if child.tag != qname:
                if not optional:
                    raise Unusual("a required element is missing")
                result[name] = None
            elif simple is not None:  # most of an answer's elements: no type dispatch in `_value`
                result[name] = _simple_value(child, simple)
                at += 1
            else:
                result[name] = self._value(child, child_element)
                at += 1
        if at != count:
            raise Unusual("an element left over")
        return result

    def _repeated(self, children: list[etree._Element], at: int, qname: str, element: Element, optional: bool
                  ) -> tuple[list[Any], int]:
        values = []
        while at < len(children) and children[at].tag == qname:
            if children[at].get(XSI_NIL) is not None:  # a null entry: the AnswerReader drops it, zeep then reads
                raise Unusual("xsi:nil in a list")
            values.append(self._value(children[at], element))
            at += 1
        if not values and not optional:
            raise Unusual("a required element is missing")
        return values, at

    def _plan_of(self, xsd_type: ComplexType) -> tuple[Field, ...] | None:
        entry = self._plans.get(id(xsd_type))
        if entry is None:
            entry = self._plans[id(xsd_type)] = (xsd_type, _plan(xsd_type))  # holds the type: its id stays unique
        return entry[1]
