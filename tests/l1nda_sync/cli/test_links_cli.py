from __future__ import annotations

import pytest

from l1nda_sync.registry import db


def test_request_list_cancel(cli) -> None:
    requested = cli("links", "request", "--customer", "CUST-1", "--company", "54613", "--environment", "ApiTesting")
    assert requested.code == 0, requested.err
    assert "requested link 1: customer CUST-1, company 54613 in apitesting; state pending" in requested.out
    assert "no active token reaches this company yet" in requested.out
    listed = cli("links", "list", "--json").json
    assert [(lk["id"], lk["state"], lk["environment"]) for lk in listed] == [(1, "pending", "apitesting")]
    assert [lk["id"] for lk in cli("links", "list", "--state", "active", "--json").json] == []
    cancelled = cli("links", "cancel", "1")
    assert cancelled.code == 0
    assert "cancelled link 1" in cancelled.out
    again = cli("links", "cancel", "1")
    assert again.code == 0
    assert "already cancelled; nothing changed" in again.out
    assert [lk["state"] for lk in cli("links", "list", "--json").json] == ["cancelled"]


def test_request_says_which_active_token_reaches_the_company(cli, registry_url) -> None:
    assert cli("tokens", "add", "--no-check",
               "--label", "T", "--level", "debtor", "--username", "a@b.nl", "--contact", "c@d.nl",
               stdin="abcdefgh12345678").code == 0
    conn = db.connect(registry_url)
    try:
        with db.transaction(conn) as cur:
            cur.execute("UPDATE tokens SET state = 'active'")
            cur.execute("INSERT INTO reach_companies (token_id, company_id) VALUES (1, 77)")
    finally:
        conn.close()
    result = cli("links", "request", "--customer", "CUST-7", "--company", "77", "--json")
    assert result.code == 0
    assert [r["token_id"] for r in result.json["reached_by"]] == [1]
    assert "reached now by token 1 (T)" in cli("links", "request", "--customer", "X", "--company", "77",
                                                "--environment", "other").out


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (("--customer", "C", "--company", "0"), "--company"),
        (("--customer", "C", "--company", "abc"), "--company"),
        (("--customer", "C", "--company", "99999999999"), "--company"),
        (("--customer", "  ", "--company", "5"), "--customer"),
        (("--customer", "C", "--company", "5", "--environment", "a b"), "--environment"),
        (("--customer", "C", "--company", "5", "--environment", "x.nmbrs.nl"), "--environment"),
        (("--company", "5",), "--customer"),
    ],
)
def test_request_refuses_bad_input_and_writes_nothing(cli, counts, argv, field) -> None:
    before = counts()
    result = cli("links", "request", *argv)
    assert result.code == 2
    assert field in result.err
    assert counts() == before


def test_a_duplicate_request_names_the_existing_link(cli, counts) -> None:
    assert cli("links", "request", "--customer", "A", "--company", "5").code == 0
    before = counts()
    result = cli("links", "request", "--customer", "B", "--company", "5", "--json")
    assert result.code == 2
    assert result.json["error"]["field"] == "--company"
    assert "already has link 1" in result.err
    assert counts() == before


def test_cancel_and_list_refuse_bad_input(cli, counts) -> None:
    before = counts()
    missing = cli("links", "cancel", "12")
    assert missing.code == 2
    assert "no link with id 12" in missing.err
    state = cli("links", "list", "--state", "lost")
    assert state.code == 2
    assert "--state" in state.err
    assert counts() == before
