"""Decode a JSON scenario one environment at a time, so a large world is never held twice (as a parsed tree and
as the `World` built from it): the builder consumes each environment and drops it before decoding the next.

`lazy_document(text)` gives the same top level as `json.loads(text)`, except that the `environments` list is a
`LazyList` that decodes its elements when iterated (once). Anything unusual (a repeated top-level key, a top level that
is not an object, a syntax error) falls back to `json.loads`, so errors and results stay those of `json.loads`.
"""

from __future__ import annotations

import codecs
import json
import zlib
from collections.abc import Iterator
from typing import Any

_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\n\r"
LAZY_KEY = "environments"
_CHUNK = 1 << 18  # compressed bytes inflated at a time


class _Unusual(Exception):
    """The text is not the plain shape this module streams; decode it whole instead."""


class LazyList:
    """A JSON array whose elements are decoded as it is iterated (once): sliced from the document's text, or, when
    the document came compressed, decompressed again piece by piece so that the whole text is not kept at all."""

    def __init__(self, spans: list[tuple[int, int]], text: str = "", compressed: bytes | None = None) -> None:
        self._spans = spans  # each element's [start, end) in the document's text
        self._text = text
        self._compressed = compressed
        self._consumed = False

    def __len__(self) -> int:
        return len(self._spans)

    def __iter__(self) -> Iterator[Any]:
        if self._consumed:
            raise RuntimeError("a LazyList can be iterated only once")
        self._consumed = True
        if self._compressed is None:
            for start, end in self._spans:
                yield _DECODER.raw_decode(self._text[start:end])[0]
        else:
            yield from _decompressed_elements(self._compressed, self._spans)
        self._text, self._compressed, self._spans = "", None, []


def _decompressed_pieces(compressed: bytes) -> Iterator[str]:
    inflate = zlib.decompressobj()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(compressed)
    for at in range(0, len(view), _CHUNK):
        yield utf8.decode(inflate.decompress(view[at:at + _CHUNK]))
    yield utf8.decode(inflate.flush(), final=True)


def _decompressed_elements(compressed: bytes, spans: list[tuple[int, int]]) -> Iterator[Any]:
    """The elements at `spans` of the text `compressed` holds, keeping only about a chunk of text at a time."""
    pieces = _decompressed_pieces(compressed)
    buffer, buffer_start = "", 0  # text from offset buffer_start on
    for start, end in spans:
        while buffer_start + len(buffer) < end:
            buffer += next(pieces)
        element = buffer[start - buffer_start:end - buffer_start]
        buffer, buffer_start = buffer[end - buffer_start:], end
        yield _DECODER.raw_decode(element)[0]


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in _WHITESPACE:
        at += 1
    return at


def _expect(text: str, at: int, char: str) -> int:
    if at >= len(text) or text[at] != char:
        raise _Unusual
    return _skip(text, at + 1)


def _array_spans(text: str, at: int) -> tuple[list[tuple[int, int]], int]:
    """Where each element of the array opening at `at` is (each decoded once, to find its end and check it)."""
    at = _expect(text, at, "[")
    elements: list[tuple[int, int]] = []
    if at < len(text) and text[at] == "]":
        return elements, at + 1
    while True:
        try:
            _, end = _DECODER.raw_decode(text, at)
        except json.JSONDecodeError:
            raise _Unusual from None
        elements.append((at, end))
        at = _skip(text, end)
        if at < len(text) and text[at] == "]":
            return elements, at + 1
        at = _expect(text, at, ",")


def _lazy_top(text: str, compressed: bytes | None) -> dict[str, Any]:
    at = _expect(text, _skip(text, 0), "{")
    top: dict[str, Any] = {}
    while at < len(text) and text[at] != "}":
        try:
            key, at = _DECODER.raw_decode(text, at)
            at = _expect(text, _skip(text, at), ":")
            if key == LAZY_KEY and at < len(text) and text[at] == "[":
                spans, at = _array_spans(text, at)
                value: Any = LazyList(spans, "" if compressed is not None else text, compressed)
            else:
                value, at = _DECODER.raw_decode(text, at)
        except json.JSONDecodeError:
            raise _Unusual from None
        if not isinstance(key, str) or key in top:
            raise _Unusual
        top[key] = value
        at = _skip(text, at)
        if at < len(text) and text[at] == "}":
            break
        at = _expect(text, at, ",")
        if at < len(text) and text[at] == "}":
            raise _Unusual  # a trailing comma: let json.loads word the error
    at = _expect(text, at, "}")
    if at != len(text):
        raise _Unusual
    return top


def lazy_document(text: str, compressed: bytes | None = None) -> Any:
    """`json.loads(text)`, with the top-level `environments` array (if any) decoded lazily. `compressed`: the zlib
    compression of `text` encoded as UTF-8; the elements are then read from it, so the caller may drop `text`."""
    try:
        return _lazy_top(text, compressed)
    except _Unusual:
        return json.loads(text)
