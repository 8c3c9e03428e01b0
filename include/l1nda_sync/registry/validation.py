"""Checking what an operator types before anything is written. Each check raises InvalidInput naming the
field (as the CLI spells it) and the fix, and returns the normalised value. Messages never echo a token."""

from __future__ import annotations

import re
from collections.abc import Iterable

from l1nda_sync.masking import Secret
from l1nda_sync.registry.errors import InvalidInput

LEVELS = ("accountant", "debtor")
LANGUAGES = ("en", "nl")
TOKEN_STATES = (
    "new", "active", "invalid", "revoked", "rights_missing", "no_subscription", "unreachable", "disabled", "removed",
    "retired",
)
LINK_STATES = ("pending", "active", "suspended", "cancelled")
TOKEN_MIN_LENGTH = 8
TOKEN_MAX_LENGTH = 256
MAX_CONTACTS = 20
INT4_MAX = 2**31 - 1

# Deliberately plain: one @, no spaces, a dotted domain with a 2+ letter top level. Nmbrs logins and contact
# mailboxes are ordinary addresses; anything stranger is more likely a typo than a real address.
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
                    r"[A-Za-z]{2,63}$")
_SUBDOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_TOKEN = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces


LABEL_MAX = 100
NOTES_MAX = 2000
REASON_MAX = 500
CUSTOMER_REF_MAX = 64
# A customer reference is one word: L1NDA's own id for the customer, compared exactly. Canonical form: upper
# case, so 'cust-anker' and 'CUST-ANKER' are one customer, never two.
_CUSTOMER_REF = re.compile(r"^[A-Z0-9](?:[A-Z0-9._-]*[A-Z0-9])?$")


def _printable(text: str) -> bool:
    return all(ch.isprintable() for ch in text)


def _control_hint(text: str) -> str:
    """Why `text` is not plain text, without echoing what is in it (it may be an escape sequence)."""
    if "\x1b" in text or "\x9b" in text:
        return "contains a terminal escape code (ESC); use plain text"
    if "\n" in text or "\r" in text:
        return "contains a line break; use one line of plain text"
    return "contains control characters (tabs, escape codes or other invisible characters); use plain text"


def text(value: str | None, field: str, *, max_length: int, required: bool, example: str = "",
         multiline: bool = False) -> str | None:
    """Free text people type (labels, notes, reasons): trimmed, printable only, at most `max_length` characters.

    Control characters are refused rather than cleaned, so what is stored is what was meant; `multiline` lets
    notes keep line breaks (CR LF becomes LF).
    """
    value = (value or "").strip()
    if multiline:
        value = value.replace("\r\n", "\n")
    if not value:
        if required:
            raise InvalidInput(field, f"is empty; {example or 'give a short text'}")
        return None
    if len(value) > max_length:
        raise InvalidInput(field, f"is {len(value)} characters long; keep it at {max_length} or fewer")
    plain = value.replace("\n", "") if multiline else value
    if not _printable(plain):
        raise InvalidInput(field, _control_hint(plain))
    return value


def label(value: str, field: str = "--label") -> str:
    checked = text(value, field, max_length=LABEL_MAX, required=True,
                   example="give a short name people recognise, e.g. 'Acme payroll (master)'")
    assert checked is not None
    return checked


def level(value: str, field: str = "--level") -> str:
    if value not in LEVELS:
        raise InvalidInput(field, f"{value!r} is not a level; use 'accountant' (master login) or 'debtor'")
    return value


def email(value: str, field: str) -> str:
    value = (value or "").strip()
    if not value:
        raise InvalidInput(field, "is empty; give an e-mail address, e.g. name@example.com")
    if not _printable(value):
        raise InvalidInput(field, _control_hint(value).replace("use plain text", "give one e-mail address, e.g. "
                                                                                 "name@example.com"))
    if len(value) > 254 or not _EMAIL.fullmatch(value) or ".." in value:
        raise InvalidInput(field, f"{value!r} is not an e-mail address; give one like name@example.com")
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def username(value: str, field: str = "--username") -> str:
    """The Nmbrs login e-mail the token belongs to."""
    return email(value, field)


def contacts(values: Iterable[str] | None, field: str = "--contact") -> tuple[str, ...]:
    """At least one contact address, without duplicates (case-insensitive), order kept."""
    cleaned: list[str] = []
    seen: set[str] = set()
    for raw in values or ():
        for part in str(raw).split(","):
            if not part.strip():
                continue
            address = email(part, field)
            if address.casefold() not in seen:
                seen.add(address.casefold())
                cleaned.append(address)
    if not cleaned:
        raise InvalidInput(field, "no contact given; add --contact EMAIL for the customer who can make a new token")
    if len(cleaned) > MAX_CONTACTS:
        raise InvalidInput(field, f"{len(cleaned)} contacts given; keep it at {MAX_CONTACTS} or fewer")
    return tuple(cleaned)


def language(value: str | None, field: str = "--language") -> str:
    value = (value or "en").strip().lower()
    if value not in LANGUAGES:
        raise InvalidInput(field, f"{value!r} is not supported; use 'en' or 'nl'")
    return value


def subdomain(value: str | None, field: str) -> str | None:
    """An Nmbrs environment's sub-domain ('apitesting' for apitesting.nmbrs.nl), or None."""
    if value is None:
        return None
    value = value.strip().lower()
    if not value:
        raise InvalidInput(field, "is empty; leave the option out, or give the sub-domain, e.g. 'apitesting'")
    if "." in value or "/" in value:
        raise InvalidInput(
            field, f"{value!r} is a host or URL; give only the sub-domain, e.g. 'apitesting' for apitesting.nmbrs.nl"
        )
    if not _SUBDOMAIN.match(value):
        raise InvalidInput(
            field, f"{value!r} is not a sub-domain; use letters, digits and hyphens (at most 63), e.g. 'apitesting'"
        )
    return value


def notes(value: str | None, field: str = "--notes") -> str | None:
    """Free text for operators: trimmed, printable (line breaks allowed), at most 2000 characters; None if blank."""
    return text(value, field, max_length=NOTES_MAX, required=False, multiline=True)


def reason(value: str | None, field: str = "--reason") -> str | None:
    """Why an operator acted, for the audit trail: one line of plain text, at most 500 characters; None if blank."""
    return text(value, field, max_length=REASON_MAX, required=False)


def token(value: str | None, field: str = "token") -> Secret:
    """A pasted API token: surrounding whitespace dropped; printable, no spaces, of sane length."""
    value = (value or "").strip()
    if not value:
        raise InvalidInput(field, "is empty; paste the API token from Nmbrs (stdin or the prompt), then Enter")
    if len(value) < TOKEN_MIN_LENGTH or len(value) > TOKEN_MAX_LENGTH:
        raise InvalidInput(
            field,
            f"is {len(value)} characters long; an Nmbrs API token has {TOKEN_MIN_LENGTH} to {TOKEN_MAX_LENGTH} "
            "(usually 32): copy it again, whole",
        )
    if not _TOKEN.match(value):
        raise InvalidInput(
            field, "contains spaces, line breaks or non-ASCII characters; copy only the token itself, on one line"
        )
    return Secret(value)


def whole_number(value: object, field: str, *, low: int, high: int, example: str = "42") -> int:
    """A whole number written in ASCII digits ('²' or '٣' are not numbers here) from `low` to `high`."""
    raw = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"[+-]?[0-9]+", raw):
        shown = raw if len(raw) <= 30 and _printable(raw) else "the value"
        raise InvalidInput(field, f"{shown!r} is not a whole number; give one such as {example}")
    if len(raw.lstrip("+-")) > 30:
        raise InvalidInput(field, f"{raw[:12]}… is out of range; give a number from {low} to {high}")
    number = int(raw)
    if not low <= number <= high:
        raise InvalidInput(field, f"{number} is out of range; give a number from {low} to {high}")
    return number


def positive_id(value: object, field: str) -> int:
    """A row or Nmbrs id: a whole number from 1 up to 2147483647."""
    try:
        return whole_number(value, field, low=1, high=INT4_MAX)
    except InvalidInput as exc:
        raise InvalidInput(field, exc.message.replace("give one such as 42", "give an id such as 42")
                           .replace("give a number from", "give an id from")) from None


def customer_ref(value: str, field: str = "--customer") -> str:
    """L1NDA's customer reference in its canonical form: trimmed and upper case ('cust-anker' -> 'CUST-ANKER').

    One word of letters, digits, '-', '_' and '.'; a reference with spaces inside is refused (with the
    hyphenated spelling as the suggestion) rather than stored as a second customer.
    """
    value = (value or "").strip()
    if not value:
        raise InvalidInput(field, "is empty; give L1NDA's customer reference, e.g. 'CUST-1042'")
    if not _printable(value):
        raise InvalidInput(field, _control_hint(value))
    if len(value) > CUSTOMER_REF_MAX:
        raise InvalidInput(field, f"is {len(value)} characters long; a customer reference has at most "
                                  f"{CUSTOMER_REF_MAX}")
    canonical = value.upper()
    if any(ch.isspace() for ch in canonical):
        suggestion = "-".join(canonical.split())
        hint = f" (did you mean {suggestion!r}?)" if _CUSTOMER_REF.match(suggestion) else ""
        raise InvalidInput(field, f"{value!r} contains spaces; a customer reference is one word of letters, digits, "
                                  f"'-', '_' and '.', e.g. 'CUST-1042'{hint}")
    if not _CUSTOMER_REF.match(canonical):
        raise InvalidInput(field, f"{value!r} is not a customer reference; use letters, digits, '-', '_' and '.', "
                                  "starting and ending with a letter or digit, e.g. 'CUST-1042'")
    return canonical


def choice(value: str | None, allowed: tuple[str, ...], field: str) -> str | None:
    if value is None:
        return None
    if value not in allowed:
        raise InvalidInput(field, f"{value!r} is not one of: {', '.join(allowed)}")
    return value
