from __future__ import annotations

import logging
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


# A REST access token is a ~900-character JWT; its Scrubber looks for the token's tail before it builds the
# whole pattern (see Scrubber), so these prove that shortcut loses no echoed form and stays cheap.
ACCESS_TOKEN = "eyJhbGciOiJSUzI1NiJ9." + "aB3-_x9Q" * 110 + ".Zr7-Kq_2"


def _encode(ch: str, how: int) -> str:
    return (ch, ch.swapcase(), f"%{ord(ch):02X}", f"&#x{ord(ch):x};", f"&amp;#{ord(ch)};", ch + "-")[how]


@pytest.mark.parametrize("how", range(6))
def test_a_long_token_is_masked_in_every_echoed_form(how: int) -> None:
    from l1nda_sync.masking import Scrubber

    form = "".join(_encode(c, how) for c in ACCESS_TOKEN).rstrip("-")
    scrub_it = Scrubber(ACCESS_TOKEN)
    assert scrub_it(f"error: {form} & more") == "error: …Kq_2 & more"
    assert scrub_it("a body without it, & with %41 and &#65;") == "a body without it, & with %41 and &#65;"


def test_a_long_token_scrubber_compiles_the_whole_pattern_only_when_its_tail_is_echoed() -> None:
    from l1nda_sync.masking import Scrubber

    scrub_it = Scrubber(ACCESS_TOKEN)
    scrub_it('{"data": [' + '{"id": "0b9e", "name": "Jansen & Zn"},' * 200 + "]}")
    assert scrub_it._pattern is None  # the tail was not there: no ~150 ms compile
    scrub_it(ACCESS_TOKEN[:-1])  # the tail minus one character is still not the secret
    assert scrub_it._pattern is None
    assert scrub_it(f"x{ACCESS_TOKEN}x") == "x…Kq_2x"


@given(
    secret=st.text(alphabet=string.ascii_letters + string.digits + "-_.~&%+<>\"' ", min_size=33, max_size=80),
    hows=st.lists(st.integers(0, 5), min_size=80, max_size=80),
    before=st.text(max_size=20),
    after=st.text(max_size=20),
)
def test_the_tail_shortcut_masks_exactly_what_the_whole_pattern_masks(
    secret: str, hows: list[int], before: str, after: str,
) -> None:
    from l1nda_sync.masking import Scrubber, secret_pattern

    form = "".join(_encode(c, how) for c, how in zip(secret, hows, strict=False)).rstrip("-")
    text = before + form + after
    assert Scrubber(secret)(text) == secret_pattern(secret).sub(mask(secret), text)


@given(
    secret=st.text(alphabet=string.ascii_letters + string.digits + "-_.~+<>\"' ", min_size=1, max_size=60),
    hows=st.lists(st.sampled_from([0, 1, 5]), min_size=60, max_size=60),
    before=st.text(alphabet=string.printable.replace("%", "").replace("&", ""), max_size=20),
    after=st.text(alphabet=string.printable.replace("%", "").replace("&", ""), max_size=20),
)
def test_the_literal_shortcut_masks_exactly_what_the_whole_pattern_masks(
    secret: str, hows: list[int], before: str, after: str,
) -> None:
    """Text without `%` or `&` takes the no-regex path; it must find every literal echo the pattern finds."""
    from l1nda_sync.masking import Scrubber, secret_pattern

    form = "".join(_encode(c, how) for c, how in zip(secret, hows, strict=False))
    for text in (before + form + after, before + after, form[:-1]):
        assert Scrubber(secret)(text) == secret_pattern(secret).sub(mask(secret), text)


def test_building_a_scrubber_compiles_nothing() -> None:
    """One is built for every Nmbrs call (`guarding`): building compiled a pattern of the token each time, under
    the guard's lock, and that capped the unchanged sweep at ~140 calls/s."""
    from l1nda_sync.masking import Scrubber

    for secret in (TOKEN, ACCESS_TOKEN):
        scrub_it = Scrubber(secret)
        assert (scrub_it._pattern, scrub_it._prefilter) == (None, None)
        assert scrub_it("GET /api/debtors HTTP/1.1 200 (no token here)").startswith("GET")
        assert (scrub_it._pattern, scrub_it._prefilter) == (None, None), "plain text needs no pattern"
