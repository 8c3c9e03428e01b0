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


# -- finding a secret in text a server sent back ------------------------------------------------------------------
# A server (or a proxy in front of it) may echo a token verbatim, in another case, HTML- or XML-escaped
# (`&#x33;`, `&amp;#51;`), URL-encoded (`%33`), or reformatted (a 32-hex token as a GUID: dashes, braces).
# `secret_pattern` matches all of those: each character of the secret in any of its encodings, in any case,
# with at most one separator (`-`, white space) between two characters.
_SEPARATOR = r"[-\s]?"
_NAMED_ENTITIES = {"&": ("amp",), "<": ("lt",), ">": ("gt",), '"': ("quot",), "'": ("apos", "#39")}


def _char_pattern(ch: str) -> str:
    code = ord(ch)
    forms = [re.escape(ch)]
    if code < 0x80:
        forms.append(f"%{code:02x}")  # URL-encoded (case-insensitive match also takes %2F)
    if ch == " ":
        forms.append(r"\+")
    # HTML/XML character references, possibly escaped once more (`&amp;#x33;`), with optional leading zeros
    forms.append(rf"&(?:amp;)?#(?:0*{code}|x0*{code:x});")
    forms.extend(rf"&(?:amp;)?{name};" for name in _NAMED_ENTITIES.get(ch, ()))
    return "(?:" + "|".join(forms) + ")"


def secret_pattern(secret: str) -> re.Pattern[str]:
    """A case-insensitive pattern for `secret` in any of the encodings a server may echo it in."""
    body = _SEPARATOR.join(_char_pattern(ch) for ch in secret)
    return re.compile(r"\{?" + body + r"\}?", re.IGNORECASE)


_PREFILTER_CHARS = 16  # a secret longer than twice this is first looked for by its last 16 characters
_LITERAL_NOISE = str.maketrans("", "", "-\t\n\r\x0b\x0c ")  # the separators a match may hold, and a secret's '-'


class Scrubber:
    """Replaces every form of one secret in text by its mask ('…cdef'). Build one per secret and reuse it.

    Cheap to build, because it is built for every Nmbrs call and almost never used (a server echoes a token
    rarely): nothing is compiled until a text could hold the secret.
    - ASCII text without `%`, `&` (or `+`, when the secret has a space) can hold it only literally: it holds it
      only if, lower-cased and without `-` and white space, it contains the secret so reduced.
    - Else a long secret (a REST access token is ~900 characters: a pattern that takes ~150 ms to compile) is
      first looked for by its last 16 characters in every form; only where they occur is the whole pattern used.
    Both are sound: every match of the whole pattern passes them (a property test compares the two).
    """

    __slots__ = ("_literal", "_masked", "_pattern", "_prefilter", "_secret", "_spaced")

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._masked = mask(secret)
        self._literal = secret.lower().translate(_LITERAL_NOISE) if secret.isascii() else None
        self._spaced = " " in secret
        self._pattern: re.Pattern[str] | None = None
        self._prefilter: re.Pattern[str] | None = None

    def __call__(self, text: str | None) -> str:
        if not text:
            return ""
        if not self._secret or not self._may_hold(text):
            return text
        if self._pattern is None:
            self._pattern = secret_pattern(self._secret)  # a race only compiles it twice
        return self._pattern.sub(self._masked, text)

    def _may_hold(self, text: str) -> bool:
        if (self._literal is not None and text.isascii() and "%" not in text and "&" not in text
                and not (self._spaced and "+" in text)):
            return self._literal in text.lower().translate(_LITERAL_NOISE)
        if len(self._secret) <= 2 * _PREFILTER_CHARS or self._pattern is not None:
            return True
        if self._prefilter is None:
            self._prefilter = secret_pattern(self._secret[-_PREFILTER_CHARS:])
        return self._prefilter.search(text) is not None

    def __repr__(self) -> str:
        return f"Scrubber({self._masked})"


def scrub(text: str | None, secret: str | None) -> str:
    """`text` with every form of `secret` masked (see `secret_pattern`)."""
    return Scrubber(secret or "")(text)
