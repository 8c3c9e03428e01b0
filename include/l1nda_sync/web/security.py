"""The customer page's defences: signed CSRF tokens, a rate limit, security headers, and log masking.

- CSRF: every form carries a token signed with the web secret (itsdangerous), bound to the form, the invitation
  and a random value in the cookie CSRF_COOKIE (path /invite/, HttpOnly, SameSite=Strict, Secure when
  L1NDA_WEB_BASE_URL is https), valid CSRF_MAX_AGE. A post without both, or with a mismatch, is refused before
  anything else happens.
- Rate limit: in process (a sliding window per key), per invitation and per client address. One process serves
  the page (`l1nda-sync web`, one uvicorn worker); with several, each counts its own, so the limit is per
  process: the invitation's single use and the 256-bit link value are the real defence, the limit only stops
  hammering. Behind a proxy run `l1nda-sync web --proxy-headers --forwarded-allow-ips PROXY` so the client
  address is the customer's (X-Forwarded-For believed from the proxy only, never from the client).
- Logs: uvicorn's access log prints each request's path; `MaskSecrets` replaces an invitation's value in a
  path and every query string (a callback's code and state) before any handler sees the record.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

CSRF_COOKIE = "l1nda_csrf"
CSRF_FIELD = "csrf"
CSRF_MAX_AGE = 3600  # seconds a form stays valid


class CsrfError(Exception):
    """The form's CSRF token is missing, forged, expired or belongs to another form or browser."""


class Csrf:
    """Signed, per-form tokens bound to a browser's cookie value."""

    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="l1nda-web-csrf")

    @staticmethod
    def new_cookie() -> str:
        return secrets.token_urlsafe(24)

    def token(self, form: str, invitation_id: int, cookie: str) -> str:
        return self._serializer.dumps({"f": form, "i": invitation_id, "c": cookie})

    def check(self, token: str | None, form: str, invitation_id: int, cookie: str | None) -> None:
        if not token or not cookie:
            raise CsrfError("missing")
        try:
            data: Any = self._serializer.loads(token, max_age=CSRF_MAX_AGE)
        except SignatureExpired:
            raise CsrfError("expired") from None
        except BadSignature:
            raise CsrfError("forged") from None
        if not isinstance(data, dict) or data.get("f") != form or data.get("i") != invitation_id or \
                not secrets.compare_digest(str(data.get("c")), cookie):
            raise CsrfError("mismatch")


class RateLimiter:
    """At most `limit` hits per key within `window` seconds (a sliding window, in this process)."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, *keys: str) -> bool:
        """Count one hit against every key; False (and nothing counted) when any key is over its limit."""
        now = self._clock()
        with self._lock:
            queues = [self._hits.setdefault(k, deque()) for k in keys]
            for queue in queues:
                while queue and queue[0] <= now - self.window:
                    queue.popleft()
            if any(len(q) >= self.limit for q in queues):
                return False
            for queue in queues:
                queue.append(now)
            if len(self._hits) > 100_000:  # forget idle keys so the table cannot grow without bound
                for key in [k for k, q in self._hits.items() if not q]:
                    del self._hits[key]
            return True


def security_headers(form_targets: str) -> dict[str, str]:
    """Headers on every answer: no script at all, forms only to ourselves and Nmbrs' identity server (a form's
    redirect counts), no framing, no Referer (the invitation's link is in the address bar), no caching."""
    return {
        "Content-Security-Policy": "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
                                   f"frame-ancestors 'none'; form-action 'self' {form_targets}".rstrip(),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


_INVITE = re.compile(r"(/invite/)[^/?#\s\"]+")
_QUERY = re.compile(r"\?[^\s\"]*")


def mask_path(text: str) -> str:
    """'/invite/AbC...?code=x' -> '/invite/***?***': no invitation value, code or state in a log line."""
    return _QUERY.sub("?***", _INVITE.sub(r"\1***", text))


class MaskSecrets(logging.Filter):
    """A log filter for uvicorn's loggers: masks invitation values and query strings in the message and its
    arguments (uvicorn's access log passes the path as an argument)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = mask_path(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(mask_path(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: mask_path(a) if isinstance(a, str) else a for k, a in record.args.items()}
        return True


LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn", "fastapi", "starlette")
_FILTER = MaskSecrets()


def install_log_masking() -> None:
    """Attach the mask to uvicorn's and Starlette's loggers (once)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
