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


def _guid(token: str) -> str:
    return "-".join((token[:8], token[8:12], token[12:16], token[16:20], token[20:]))


@pytest.mark.parametrize(
    "form",
    [
        TOKEN, TOKEN.upper(), _guid(TOKEN), "{" + _guid(TOKEN).upper() + "}",
        "".join(f"&#x{ord(c):x};" for c in TOKEN), "".join(f"&#{ord(c)};" for c in TOKEN),
        "".join(f"&amp;#x{ord(c):X};" for c in TOKEN), "".join(f"%{ord(c):02X}" for c in TOKEN),
        "".join(f"%{ord(c):02x}" for c in TOKEN), " ".join(TOKEN[i:i + 4] for i in range(0, 32, 4)),
    ],
)
def test_scrub_masks_every_echoed_form(form: str) -> None:
    from l1nda_sync.masking import scrub

    assert scrub(f"before {form} after", TOKEN) == "before …a7c3 after"


def test_scrub_handles_special_characters_and_leaves_other_text_alone() -> None:
    import html
    from urllib.parse import quote

    from l1nda_sync.masking import Scrubber, scrub

    secret = "p&ss<w>rd\"'+/=0123"
    for form in (secret, html.escape(secret), quote(secret, safe=""), secret.upper()):
        assert scrub(f"[{form}]", secret) == "[…0123]", form
    other = "3f2a9c0e5b7d41e8a6c2f9b0d1e4a7c4"  # differs in the last character
    assert scrub(f"{other} and {TOKEN[:20]}", TOKEN) == f"{other} and {TOKEN[:20]}"
    assert scrub("", TOKEN) == ""
    assert scrub("text", "") == "text"
    assert TOKEN not in repr(Scrubber(TOKEN))
