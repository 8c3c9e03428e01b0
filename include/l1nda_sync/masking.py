"""Showing secrets safely: a token is only ever shown as its last 4 characters, a URL without its password."""

from __future__ import annotations

import re

VISIBLE = 4


def mask(secret: str | None) -> str:
    """'0123456789abcdef' -> '…cdef'; short or empty secrets show nothing at all."""
    if not secret:
        return "(none)"
    if len(secret) <= VISIBLE * 2:
        return "…" + "*" * VISIBLE
    return "…" + secret[-VISIBLE:]


def redact_url(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db (also password=... in DSN strings)."""
    url = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", url, flags=re.IGNORECASE)


class Secret(str):
    """A str whose repr and str-formatting in logs never show the value (use .reveal() where Nmbrs needs it)."""

    __slots__ = ()

    def reveal(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"Secret({mask(self.reveal())})"

    def __str__(self) -> str:
        return mask(self.reveal())

    def __format__(self, spec: str) -> str:
        return format(mask(self.reveal()), spec)
