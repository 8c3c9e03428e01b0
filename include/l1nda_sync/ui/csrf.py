"""CSRF for the page's forms: a token signed with Airflow's `[api] secret_key`, bound to the form, its target and
the logged-in user, valid for an hour. Airflow's `_token` cookie rides along on any cross-site POST, so every
POST handler checks one before doing anything.
"""

from __future__ import annotations

import secrets
from functools import cache
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

MAX_AGE = 3600
FIELD = "csrf"


class CsrfError(Exception):
    """Missing, forged, expired, or made for another form, target or user."""


@cache
def _process_secret() -> str:
    return secrets.token_urlsafe(32)


def _secret() -> str:
    from airflow.configuration import conf

    # Airflow's API server signs with [api] secret_key; without one (a trial), a per-process key still protects
    # the forms, only a form from before a restart then needs reloading.
    return conf.get("api", "secret_key", fallback="") or _process_secret()


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_secret(), salt=salt)


def token(form: str, target: str, user: str) -> str:
    return _serializer("l1nda-ui-csrf").dumps({"f": form, "t": target, "u": user})


def check(value: str | None, form: str, target: str, user: str) -> None:
    if not value:
        raise CsrfError("the form has no CSRF token; reload the page and try again")
    try:
        data: Any = _serializer("l1nda-ui-csrf").loads(value, max_age=MAX_AGE)
    except SignatureExpired:
        raise CsrfError("the form is older than an hour; reload the page and try again") from None
    except BadSignature:
        raise CsrfError("the form's CSRF token is not ours; reload the page and try again") from None
    if not isinstance(data, dict) or data.get("f") != form or data.get("t") != target or data.get("u") != user:
        raise CsrfError("the form's CSRF token belongs to another form or user; reload the page and try again")


def sign_flash(data: dict[str, Any]) -> str:
    """A message for the page after a POST, signed so a link cannot put words of its own on the page."""
    return _serializer("l1nda-ui-flash").dumps(data)


def read_flash(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        data: Any = _serializer("l1nda-ui-flash").loads(value, max_age=600)
    except BadSignature:
        return None
    return data if isinstance(data, dict) else None
