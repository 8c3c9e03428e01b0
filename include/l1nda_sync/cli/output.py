"""Showing results: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, TypeVar

T = TypeVar("T")


def to_jsonable(value: object) -> Any:
    """Dataclasses, datetimes, tuples and sets as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value) if f.repr}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return value


def dumps(value: object) -> str:
    return json.dumps(to_jsonable(value), indent=2, ensure_ascii=False)


def cell(value: object) -> str:
    """One value as a table shows it: '-' for nothing, minutes for times, commas for lists."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(cell(v) for v in value) or "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items()) or "-"
    return visible(" ".join(str(value).split()))  # one line per row, whatever the text holds


def visible(text: str) -> str:
    """Text safe for a terminal: control and format characters (an ESC starting an escape sequence, say, in a
    company name Nmbrs returned) are shown as \\xNN / \\uNNNN instead of being sent to the terminal raw."""
    if all(ch.isprintable() for ch in text):
        return text
    return "".join(ch if ch.isprintable() else (f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
                   for ch in text)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, empty: str = "(none)") -> str:
    shown = [[cell(v) for v in row] for row in rows]
    if not shown:
        return empty
    widths = [max(len(h), *(len(r[i]) for r in shown)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in shown]
    return "\n".join(lines)


def fields(pairs: Sequence[tuple[str, object]]) -> str:
    """A key: value block."""
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{k.ljust(width)}  {cell(v)}" for k, v in pairs)


def capped(rows: Sequence[T], limit: int) -> tuple[Sequence[T], str]:
    """The first `limit` rows and a note on what was left out."""
    if len(rows) <= limit:
        return rows, ""
    return rows[:limit], f"… and {len(rows) - limit} more (use --json for all)"


def count(n: int, singular: str, plural: str | None = None) -> str:
    """'1 company', '4 companies'."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"
