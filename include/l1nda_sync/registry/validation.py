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


def _printable(text: str) -> bool:
    return all(ch.isprintable() for ch in text)


def label(value: str, field: str = "--label") -> str:
    value = (value or "").strip()
    if not value:
        raise InvalidInput(field, "is empty; give a short name people recognise, e.g. 'Acme payroll (master)'")
    if len(value) > 100:
        raise InvalidInput(field, f"is {len(value)} characters long; keep it at 100 or fewer")
    if not _printable(value):
        raise InvalidInput(field, "contains control characters; use plain text")
    return value


def level(value: str, field: str = "--level") -> str:
    if value not in LEVELS:
        raise InvalidInput(field, f"{value!r} is not a level; use 'accountant' (master login) or 'debtor'")
    return value


def email(value: str, field: str) -> str:
    value = (value or "").strip()
    if not value:
        raise InvalidInput(field, "is empty; give an e-mail address, e.g. name@example.com")
    if len(value) > 254 or not _EMAIL.match(value) or ".." in value:
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
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > 2000:
        raise InvalidInput(field, f"is {len(value)} characters long; keep it at 2000 or fewer")
    return value


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


def positive_id(value: object, field: str) -> int:
    """A row or Nmbrs id: a whole number from 1 up to 2147483647."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise InvalidInput(field, f"{value!r} is not a whole number; give an id such as 42") from None
    if not 1 <= number <= INT4_MAX:
        raise InvalidInput(field, f"{number} is out of range; give an id from 1 to {INT4_MAX}")
    return number


def customer_ref(value: str, field: str = "--customer") -> str:
    value = (value or "").strip()
    if not value:
        raise InvalidInput(field, "is empty; give L1NDA's customer reference, e.g. 'CUST-1042'")
    if len(value) > 200 or not _printable(value):
        raise InvalidInput(field, "must be at most 200 printable characters")
    return value


def choice(value: str | None, allowed: tuple[str, ...], field: str) -> str | None:
    if value is None:
        return None
    if value not in allowed:
        raise InvalidInput(field, f"{value!r} is not one of: {', '.join(allowed)}")
    return value
