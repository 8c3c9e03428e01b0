"""Turning a problem and its context into a mail: Jinja2 templates, plain text and HTML, English and Dutch.

Templates live in `templates/<language>/`: `<kind>.txt` and `<kind>.html` (one per kind, with a branch per
event and audience), a shared layout and partials, and `subject.txt`. HTML templates are autoescaped, so a
debtor or company named `<b>` arrives as text; plain-text templates are not escaped (there is nothing to
escape). Undefined variables fail loudly (StrictUndefined): a broken template never sends a half mail.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

LANGUAGES = ("en", "nl")
# Customers and support work in the Netherlands: times in mails are Amsterdam time, with the zone named.
DISPLAY_ZONE = ZoneInfo("Europe/Amsterdam")
_MONTHS = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"),
    "nl": ("januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september", "oktober",
           "november", "december"),
}


@dataclass(frozen=True, slots=True)
class Rendered:
    """One mail, rendered: subject, plain text and HTML."""

    subject: str
    text: str
    html: str


def when(value: datetime | None, lang: str) -> str:
    """'3 May 2026 14:05 CEST' (en) / '3 mei 2026 14:05 CEST' (nl)."""
    if value is None:
        return "-"
    local = value.astimezone(DISPLAY_ZONE)
    return f"{local.day} {_MONTHS[lang][local.month - 1]} {local.year} {local:%H:%M} {local.tzname()}"


def operation(value: str | None) -> str:
    """'CompanyService.List_GetByDebtor' -> 'CompanyService \u203a List_GetByDebtor' (as Nmbrs' template shows)."""
    if not value:
        return "?"
    return " \u203a ".join(part for part in value.split(".") if part)


_REASONS = {
    "en": {"tag_or_filter": "tag or filter changed", "company_ended": "company ended",
           "filter_or_company_ended": "filter changed or company ended", "not_reached": "no longer reached",
           "revoked": "token revoked", "rights_missing": "a right is missing",
           "no_subscription": "no valid subscription", "token_disabled": "token taken out of service",
           "active": "active", "suspended": "suspended", "pending": "pending",
           "unreachable": "Nmbrs unreachable", "access_lost": "access lost", "provider_incident": "provider incident",
           "rejected": "token does not work", "invalid": "Invalid Authentication (1001)",
           "unavailable": "time-outs, server errors or error pages", "unknown": "answers L1NDA cannot read",
           "reach_drop": "companies suddenly missing", "failures": "failures",
           "consent_revoked": "consent withdrawn or expired", "moved_to_rest": "moved to a REST connection",
           "soap_ended": "Nmbrs ended its SOAP API", "retired": "retired (SOAP ended)"},
    "nl": {"tag_or_filter": "tag of filter gewijzigd", "company_ended": "bedrijf beëindigd",
           "filter_or_company_ended": "filter gewijzigd of bedrijf beëindigd", "not_reached": "niet meer bereikt",
           "revoked": "token ingetrokken", "rights_missing": "er ontbreekt een recht",
           "no_subscription": "geen geldig abonnement", "token_disabled": "token buiten gebruik",
           "active": "actief", "suspended": "opgeschort", "pending": "in afwachting",
           "unreachable": "Nmbrs onbereikbaar", "access_lost": "toegang verloren",
           "provider_incident": "storing bij Nmbrs", "rejected": "token werkt niet",
           "invalid": "Invalid Authentication (1001)", "unavailable": "time-outs, serverfouten of foutpagina's",
           "unknown": "antwoorden die L1NDA niet kan lezen", "reach_drop": "bedrijven plotseling verdwenen",
           "failures": "fouten", "consent_revoked": "toestemming ingetrokken of verlopen",
           "moved_to_rest": "naar een REST-koppeling verplaatst",
           "soap_ended": "Nmbrs is gestopt met de SOAP-API", "retired": "buiten gebruik (SOAP gestopt)"},
}


def hours(seconds: float) -> str:
    return f"{seconds / 3600:g}"


@jinja2.pass_context
def _when(context: jinja2.runtime.Context, value: datetime | str | None) -> str:
    """A time in the mail's language; a problem's detail holds times as ISO text (stored as JSON)."""
    return when(datetime.fromisoformat(value) if isinstance(value, str) else value, context["lang"])


@jinja2.pass_context
def _say(context: jinja2.runtime.Context, value: str | None) -> str:
    """A problem kind, link state or suspension reason in the mail's language."""
    return _REASONS[context["lang"]].get(value or "", (value or "").replace("_", " "))


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("l1nda_sync.alerts", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["when"] = _when
    env.filters["operation"] = operation
    env.filters["hours"] = hours
    env.filters["say"] = _say
    return env


def one_line(value: str, limit: int = 200) -> str:
    """A header-safe subject: no line breaks or control characters, whitespace collapsed, length capped."""
    flat = re.sub(r"[\x00-\x1f\x7f\s]+", " ", value).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def tidy_text(value: str) -> str:
    """At most one blank line in a row, no trailing spaces, one final newline."""
    lines = [line.rstrip() for line in value.splitlines()]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
    return text + "\n"


def render(kind: str, event: str, audience: str, lang: str, context: Mapping[str, Any]) -> Rendered:
    """Subject, plain text and HTML of one mail."""
    if lang not in LANGUAGES:
        raise ValueError(f"language {lang!r} has no templates; use one of {', '.join(LANGUAGES)}")
    env = environment()
    # `invitation` (the customer's own link, customer mails only) and `invited` (its id, for operations) are
    # optional: without the customer page configured the mails ask for a reply as before.
    values = {"invitation": None, "invited": None, **context, "kind": kind, "event": event, "audience": audience,
              "lang": lang}
    subject = env.get_template(f"{lang}/subject.txt").render(values)
    text = env.get_template(f"{lang}/{kind}.txt").render(values)
    html = env.get_template(f"{lang}/{kind}.html").render(values)
    return Rendered(one_line(subject), tidy_text(text), html)
