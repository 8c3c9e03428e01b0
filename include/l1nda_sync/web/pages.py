"""Rendering the customer page: Jinja2 templates per language (`templates/en`, `templates/nl`), autoescaped."""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2
from starlette.responses import HTMLResponse

LANGUAGES = ("en", "nl")

# What each OAuth2 scope lets L1NDA do, in plain words.
SCOPE_TEXTS = {
    "en": {
        "offline_access": "stay connected when nobody is signed in, so the link keeps working",
        "company.info.read": "read the names and numbers of your debtors and companies",
        "debtor.info.read": "read your debtors' details and tags",
        "user.info.read": "read who gives the consent (your name and e-mail address in Nmbrs)",
    },
    "nl": {
        "offline_access": "verbonden blijven als niemand is ingelogd, zodat de koppeling blijft werken",
        "company.info.read": "de namen en nummers van uw debiteuren en bedrijven lezen",
        "debtor.info.read": "de gegevens en tags van uw debiteuren lezen",
        "user.info.read": "lezen wie de toestemming geeft (uw naam en e-mailadres in Nmbrs)",
    },
}

# HTTP status of each error page.
ERROR_STATUS = {
    "unknown": 404, "expired": 410, "used": 409, "denied": 400, "invalid_scope": 400, "code_reused": 409,
    "bad_state": 400, "rate_limited": 429, "token_refused": 422, "csrf": 403, "no_subscription": 400,
    "unavailable": 503, "failed": 400, "wrong_purpose": 404,
}


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("l1nda_sync.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def language(value: str | None) -> str:
    return value if value in LANGUAGES else "en"


def render(name: str, lang: str, context: dict[str, Any], *, status: int = 200) -> HTMLResponse:
    lang = language(lang)
    html = environment().get_template(f"{lang}/{name}.html").render({**context, "lang": lang})
    return HTMLResponse(html, status_code=status)


def error(code: str, lang: str, detail: str | None = None, *, status: int | None = None) -> HTMLResponse:
    """The error page for `code` (its text from the template, a short detail that never holds a secret)."""
    status = status or ERROR_STATUS.get(code, 400)
    return render("error", lang, {"code": code, "detail": detail}, status=status)


def scope_texts(scopes: tuple[str, ...], lang: str) -> list[str]:
    texts = SCOPE_TEXTS[language(lang)]
    return [texts.get(s, s) for s in scopes]
