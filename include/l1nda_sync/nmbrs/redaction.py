"""Keep tokens out of logs: zeep's transport dumps whole SOAP envelopes (with the AuthHeader) at DEBUG.

Two layers: our own transport never hands zeep's logger an envelope (it logs a redacted one itself), and
`install_log_redaction()` puts a filter on the loggers that could carry one (zeep, urllib3, requests) that
masks the content of any `<Token>` element before a handler sees the record.
"""

from __future__ import annotations

import logging
import re

from l1nda_sync.masking import mask

_TOKEN_ELEMENT = re.compile(r"(<(?:[\w.-]+:)?Token\b[^>]*>)([^<]*)(</(?:[\w.-]+:)?Token\s*>)")
GUARDED_LOGGERS = ("zeep", "zeep.transports", "zeep.wsdl.bindings.soap", "urllib3", "urllib3.connectionpool",
                   "requests")


def redact(text: str) -> str:
    """Mask the value of every `<Token>` element ('<Token>…cdef</Token>')."""
    if "Token" not in text:
        return text
    return _TOKEN_ELEMENT.sub(lambda m: f"{m.group(1)}{mask(m.group(2))}{m.group(3)}", text)


class RedactingFilter(logging.Filter):
    """Rewrites a record whose formatted message holds a `<Token>` element; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logging module's business, not ours
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTER = RedactingFilter()


def install_log_redaction() -> None:
    """Idempotent: add the filter to each guarded logger once."""
    for name in GUARDED_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
