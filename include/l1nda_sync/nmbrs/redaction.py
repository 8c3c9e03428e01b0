"""Keep tokens out of logs: zeep's transport dumps whole SOAP envelopes (with the AuthHeader) at DEBUG, and a
server may echo a token back in a fault or an error page.

Three layers:
- our own transport never hands zeep's logger an envelope (it logs a redacted one itself), and our connections
  never print `http.client` debug output (see `transport.QuietConnection`);
- every text the client logs or raises that came from the server is scrubbed of the token of the call, in
  every form a server may echo it in (`l1nda_sync.masking.Scrubber`);
- `install_log_redaction()` puts a filter on the loggers that could carry one (zeep, urllib3, requests and
  ours, with every child logger that exists) that masks the content of any `<Token>` element and every form of
  the tokens of the calls in flight (`guarding(token)` registers them) before a handler sees the record.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from l1nda_sync.masking import Scrubber, mask

_TOKEN_ELEMENT = re.compile(r"(<(?:[\w.-]+:)?Token\b[^>]*>)([^<]*)(</(?:[\w.-]+:)?Token\s*>)")
GUARDED_LOGGERS = ("zeep", "zeep.transports", "zeep.wsdl.bindings.soap", "urllib3", "urllib3.connectionpool",
                   "requests", "l1nda_sync.nmbrs", "l1nda_sync.nmbrs.client", "l1nda_sync.nmbrs.transport")
GUARDED_PREFIXES = ("zeep.", "urllib3.", "requests.", "l1nda_sync.nmbrs.")


def redact(text: str) -> str:
    """Mask the value of every `<Token>` element ('<Token>…cdef</Token>'); a masked value stays as it is."""
    if "Token" not in text:
        return text
    return _TOKEN_ELEMENT.sub(_mask_element, text)


def _mask_element(match: re.Match[str]) -> str:
    value = match.group(2)
    return match.group(0) if value.startswith("…") else f"{match.group(1)}{mask(value)}{match.group(3)}"


# -- the tokens of the calls in flight ---------------------------------------------------------------------------
_active: dict[str, tuple[Scrubber, int]] = {}
_active_lock = threading.Lock()


@contextmanager
def guarding(secret: str) -> Iterator[Scrubber]:
    """While the block runs, every guarded log record is scrubbed of `secret`; yields its Scrubber."""
    with _active_lock:
        scrubber, users = _active.get(secret) or (Scrubber(secret), 0)
        _active[secret] = (scrubber, users + 1)
    try:
        yield scrubber
    finally:
        with _active_lock:
            scrubber, users = _active[secret]
            if users <= 1:
                del _active[secret]
            else:
                _active[secret] = (scrubber, users - 1)


def scrub_active(text: str) -> str:
    """`text` with `<Token>` elements and every form of each token in flight masked."""
    text = redact(text)
    if _active:
        with _active_lock:
            scrubbers = [scrubber for scrubber, _ in _active.values()]
        for scrubber in scrubbers:
            text = scrubber(text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record whose message (or formatted exception) holds a token; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logging module's business, not ours
            return True
        cleaned = scrub_active(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub_active(record.exc_text)
        return True


_FILTER = RedactingFilter()


def install_log_redaction() -> None:
    """Idempotent: add the filter once to each guarded logger and to every existing child of one."""
    names = set(GUARDED_LOGGERS)
    names.update(name for name in list(logging.root.manager.loggerDict) if name.startswith(GUARDED_PREFIXES))
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
