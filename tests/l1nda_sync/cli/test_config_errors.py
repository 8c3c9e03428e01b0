"""A bad registry URL is refused with the variable's name and without its password."""

from __future__ import annotations

import pytest

from tests.l1nda_sync.cli.conftest import Cli


@pytest.mark.parametrize("url", ["mysql://u:secretpw@h/db", "postgresql://u:secretpw@127.0.0.1:notaport/db",
                                 "postgresql://u:secretpw@127.0.0.1:1/db"])
def test_bad_database_url_names_the_variable_and_hides_the_password(
        run: Cli, url: str, fernet_keys: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("L1NDA_DATABASE_URL", url)
    result = run("tokens", "list")
    assert result.code == 1
    assert "L1NDA_DATABASE_URL" in result.err
    assert "secretpw" not in result.out + result.err
    assert "u:***@" in result.err


def test_links_list_for_an_unknown_token_is_bad_input(cli: Cli) -> None:
    result = cli("links", "list", "--token", "99")
    assert result.code == 2
    assert "99" in result.err
