"""Token elements are masked in any record of the guarded loggers."""

from __future__ import annotations

import logging

import pytest

from l1nda_sync.nmbrs.redaction import GUARDED_LOGGERS, RedactingFilter, install_log_redaction, redact

TOKEN = "3f1c0e7a9b2d4c6e8f0a1b2c3d4e5f60"


@pytest.mark.parametrize(
    "envelope",
    [
        f"<Token>{TOKEN}</Token>",
        f'<ns0:Token xmlns:ns0="https://api.nmbrs.nl/soap/v3/DebtorService">{TOKEN}</ns0:Token>',
        f"<soap:Header><AuthHeaderWithDomain><Username>a@b</Username><Token>{TOKEN}</Token>"
        f"<Domain>acme</Domain></AuthHeaderWithDomain></soap:Header><x><Token>{TOKEN}</Token></x>",
        f"<Token\n>{TOKEN}</Token >",
    ],
)
def test_redact_masks_every_token_element(envelope: str) -> None:
    cleaned = redact(envelope)
    assert TOKEN not in cleaned
    assert "…5f60" in cleaned


def test_redact_leaves_other_text_alone() -> None:
    text = "<Username>a@b.example</Username><Domain>acme</Domain>"
    assert redact(text) is text


def test_the_filter_rewrites_formatted_records() -> None:
    record = logging.LogRecord("zeep.transports", logging.DEBUG, __file__, 1, "HTTP Post to %s:\n%s",
                               ("http://x", f"<Token>{TOKEN}</Token>"), None)
    assert RedactingFilter().filter(record) is True
    assert TOKEN not in record.getMessage()
    assert "http://x" in record.getMessage()


def test_install_is_idempotent() -> None:
    install_log_redaction()
    install_log_redaction()
    for name in GUARDED_LOGGERS:
        assert sum(isinstance(f, RedactingFilter) for f in logging.getLogger(name).filters) == 1


def test_zeep_transport_logger_output_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    caplog.set_level(logging.DEBUG)
    logging.getLogger("zeep.transports").debug("HTTP Post to %s:\n%s", "http://x", f"<Token>{TOKEN}</Token>")
    assert "HTTP Post to http://x" in caplog.text
    assert TOKEN not in caplog.text
