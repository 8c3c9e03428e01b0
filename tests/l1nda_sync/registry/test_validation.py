from __future__ import annotations

import pytest

from l1nda_sync.registry import validation as v
from l1nda_sync.registry.errors import InvalidInput
from l1nda_sync.registry.tokens import NewToken

TOKEN = "9f86d081884c7d659a2feaa0c55ad015"


@pytest.mark.parametrize(
    ("check", "value", "field", "fragment"),
    [
        (v.label, "   ", "--label", "is empty"),
        (v.label, "x" * 101, "--label", "100 or fewer"),
        (v.label, "tab\there", "--label", "control characters"),
        (v.level, "master", "--level", "'accountant'"),
        (v.username, "jan", "--username", "not an e-mail address"),
        (v.username, "jan@localhost", "--username", "not an e-mail address"),
        (v.username, "jan@@example.com", "--username", "not an e-mail address"),
        (v.username, "jan..x@example.com", "--username", "not an e-mail address"),
        (v.username, "", "--username", "is empty"),
        (v.language, "de", "--language", "'en' or 'nl'"),
        (lambda x: v.subdomain(x, "--domain"), "apitesting.nmbrs.nl", "--domain", "only the sub-domain"),
        (lambda x: v.subdomain(x, "--domain"), "-bad-", "--domain", "not a sub-domain"),
        (lambda x: v.subdomain(x, "--domain"), " ", "--domain", "is empty"),
        (lambda x: v.positive_id(x, "--company"), "abc", "--company", "not a whole number"),
        (lambda x: v.positive_id(x, "--company"), "0", "--company", "out of range"),
        (lambda x: v.positive_id(x, "--company"), str(2**31), "--company", "out of range"),
        (v.customer_ref, "", "--customer", "is empty"),
        (v.notes, "n" * 2001, "--notes", "2000 or fewer"),
    ],
)
def test_bad_values_name_the_field_and_the_fix(check, value, field, fragment) -> None:
    with pytest.raises(InvalidInput) as err:
        check(value)
    assert err.value.field == field
    assert fragment in err.value.message
    assert str(err.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "is empty"),
        ("\n", "is empty"),
        ("abc", "characters long"),
        ("a" * 257, "characters long"),
        ("abcd efgh ijkl", "spaces"),
        ("abcdefgh\nijklmnop", "line breaks"),
        ("abcdefghé123", "non-ASCII"),
    ],
)
def test_bad_tokens_are_refused_without_being_echoed(value: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as err:
        v.token(value)
    assert err.value.field == "token"
    assert fragment in err.value.message
    if value.strip():
        assert value.strip() not in str(err.value)


def test_good_values_are_normalised() -> None:
    assert v.username(" Jan@Example.COM ") == "Jan@example.com"
    assert v.subdomain(" ApiTesting ", "--domain") == "apitesting"
    assert v.contacts(["a@b.nl", "A@b.nl, c@d.nl"]) == ("a@b.nl", "c@d.nl")
    assert v.token(f"  {TOKEN}\n").reveal() == TOKEN
    assert v.language(None) == "en"


def test_contacts_need_at_least_one() -> None:
    with pytest.raises(InvalidInput, match="--contact: no contact given"):
        v.contacts([])


def test_new_token_reads_the_token_only_after_every_other_field_passed() -> None:
    asked: list[bool] = []

    def read() -> str:
        asked.append(True)
        return TOKEN

    with pytest.raises(InvalidInput, match="--username"):
        NewToken.validate(label="A", level="debtor", username="nope", token=read, contacts=["c@d.nl"])
    assert asked == []
    new = NewToken.validate(label="A", level="debtor", username="a@b.nl", token=read, contacts=["c@d.nl"])
    assert asked == [True]
    assert new.token.reveal() == TOKEN
    assert TOKEN not in repr(new)
