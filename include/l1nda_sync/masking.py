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


class Scrubber:
    """Replaces every form of one secret in text by its mask ('…cdef'). Build one per secret and reuse it.

    A long secret (a REST access token is ~900 characters) makes a pattern that takes ~150 ms to compile, while a
    server echoes it almost never. So the text is first searched for the secret's last characters (in every
    form, a pattern that compiles in ~3 ms); only where they occur is the whole pattern compiled and applied.
    Sound: any match of the whole pattern contains a match of the pattern of any contiguous part of the secret.
    """

    __slots__ = ("_masked", "_pattern", "_prefilter", "_secret")

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._masked = mask(secret)
        self._pattern: re.Pattern[str] | None = None
        self._prefilter: re.Pattern[str] | None = None
        if len(secret) > 2 * _PREFILTER_CHARS:
            self._prefilter = secret_pattern(secret[-_PREFILTER_CHARS:])
        elif secret:
            self._pattern = secret_pattern(secret)

    def __call__(self, text: str | None) -> str:
        if not text:
            return ""
        if not self._secret:
            return text
        if self._pattern is None:
            if self._prefilter is None or self._prefilter.search(text) is None:
                return text
            self._pattern = secret_pattern(self._secret)  # a race only compiles it twice
        return self._pattern.sub(self._masked, text)

    def __repr__(self) -> str:
        return f"Scrubber({self._masked})"


def scrub(text: str | None, secret: str | None) -> str:
    """`text` with every form of `secret` masked (see `secret_pattern`)."""
    return Scrubber(secret or "")(text)
