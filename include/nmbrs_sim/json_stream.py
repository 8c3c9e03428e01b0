"""Decode a JSON scenario one environment at a time, so a large world is never held twice (as a parsed tree and
as the `World` built from it): the builder consumes each environment and drops it before decoding the next.

`lazy_document(text)` gives the same top level as `json.loads(text)`, except that the `environments` list is a
`LazyList` that decodes its elements when iterated. Anything unusual (a repeated top-level key, a top level that
is not an object, a syntax error) falls back to `json.loads`, so errors and results stay those of `json.loads`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\n\r"
LAZY_KEY = "environments"


class _Unusual(Exception):
    """The text is not the plain shape this module streams; decode it whole instead."""


class LazyList:
    """A JSON array in `text` whose elements start at `starts`, decoded afresh on each iteration."""

    def __init__(self, text: str, starts: list[int]) -> None:
        self._text = text
        self._starts = starts

    def __len__(self) -> int:
        return len(self._starts)

    def __iter__(self) -> Iterator[Any]:
        for start in self._starts:
            yield _DECODER.raw_decode(self._text, start)[0]

    def release(self) -> None:
        """Forget the text (the builder is done with it)."""
        self._text = ""
        self._starts = []


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in _WHITESPACE:
        at += 1
    return at


def _expect(text: str, at: int, char: str) -> int:
    if at >= len(text) or text[at] != char:
        raise _Unusual
    return _skip(text, at + 1)


def _array_starts(text: str, at: int) -> tuple[list[int], int]:
    """The start of each element of the array opening at `at` (each decoded once, to find its end)."""
    at = _expect(text, at, "[")
    starts: list[int] = []
    if at < len(text) and text[at] == "]":
        return starts, at + 1
    while True:
        starts.append(at)
        try:
            _, at = _DECODER.raw_decode(text, at)
        except json.JSONDecodeError:
            raise _Unusual from None
        at = _skip(text, at)
        if at < len(text) and text[at] == "]":
            return starts, at + 1
        at = _expect(text, at, ",")


def _lazy_top(text: str) -> dict[str, Any]:
    at = _expect(text, _skip(text, 0), "{")
    top: dict[str, Any] = {}
    while at < len(text) and text[at] != "}":
        try:
            key, at = _DECODER.raw_decode(text, at)
            at = _expect(text, _skip(text, at), ":")
            if key == LAZY_KEY and at < len(text) and text[at] == "[":
                starts, at = _array_starts(text, at)
                value: Any = LazyList(text, starts)
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


def lazy_document(text: str) -> Any:
    """`json.loads(text)`, with the top-level `environments` array (if any) decoded lazily."""
    try:
        return _lazy_top(text)
    except _Unusual:
        return json.loads(text)
