from __future__ import annotations

import logging

import pytest

from l1nda_sync.masking import Secret, mask

TOKEN = "3f2a9c0e5b7d41e8a6c2f9b0d1e4a7c3"


def test_mask_shows_last_four_only() -> None:
    assert mask(TOKEN) == "…a7c3"
    assert mask("short") == "…****"
    assert mask("") == "(none)"


def test_secret_hides_itself_everywhere_but_reveal(caplog: pytest.LogCaptureFixture) -> None:
    s = Secret(TOKEN)
    assert s.reveal() == TOKEN
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("t").debug("token %s %r %s", s, s, f"{s}")
    assert TOKEN not in caplog.text
    assert "…a7c3" in caplog.text
    assert TOKEN not in repr(s) + str(s) + f"{s}" + str([s]) + str({"t": s})
