"""HTML and JSON out: Jinja2 templates (autoescaped, no script), times with their zone, JSON twins."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime
from enum import Enum
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup, escape
from starlette.responses import HTMLResponse, Response

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
UTC_ZONE = ZoneInfo("UTC")

# Words for the reason codes links carry.
LINK_REASONS = {
    "requested": "requested, no sync run has looked at it yet",
    "revoked": "the credential serving it was revoked or refused by Nmbrs",
    "tag_or_filter": "the token no longer reaches the company: a debtor's tag or the login's filter changed",
    "company_ended": "the company ended in Nmbrs",
    "filter_or_company_ended": "the login no longer reaches the company: its filter changed or the company ended",
    "rights_missing": "an API right is switched off for the credential",
    "no_subscription": "the customer has no Nmbrs API subscription",
    "moved_to_rest": "moved to the customer's REST connection",
    "soap_ended": "Nmbrs' SOAP API ended and no REST connection reaches the company",
    "cancelled": "no longer wanted",
}


def when(value: datetime | None) -> Markup:
    """'2026-05-04 14:03 CEST (12:03 UTC)' in a <time> element; '-' for none."""
    if value is None:
        return Markup('<span class="none">-</span>')
    local = value.astimezone(AMSTERDAM)
    utc = value.astimezone(UTC_ZONE)
    same_day = local.date() == utc.date()
    utc_text = utc.strftime("%H:%M UTC" if same_day else "%Y-%m-%d %H:%M UTC")
    return Markup('<time datetime="{}">{} <abbr title="Europe/Amsterdam">{}</abbr></time> <span class="utc">({})</span>'
                  ).format(utc.isoformat(timespec="seconds"), local.strftime("%Y-%m-%d %H:%M"), local.tzname(),
                           utc_text)


def reason_text(code: str | None) -> str:
    if not code:
        return ""
    return LINK_REASONS.get(code, code)


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("l1nda_sync.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["reason"] = reason_text
    return env


def html(name: str, context: dict[str, Any], *, status: int = 200) -> HTMLResponse:
    return HTMLResponse(environment().get_template(name).render(context), status_code=status)


def plain(value: Any) -> Any:
    """Dataclasses, datetimes (ISO 8601 with offset, UTC) and tuples as JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.astimezone(UTC_ZONE).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    return value


def json_response(data: Any, *, status: int = 200) -> Response:
    return Response(json.dumps(plain(data), ensure_ascii=False), status_code=status, media_type="application/json")


def text_escape(value: str) -> str:
    return str(escape(value))
