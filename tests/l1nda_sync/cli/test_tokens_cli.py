from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from l1nda_sync.registry import db
from l1nda_sync.registry.tokens import TokenStore

TOKEN = "9f86d081884c7d659a2feaa0c55ad015"
OTHER = "60303ae22b998861bce3b28f33eec1be"
ADD = ("tokens", "add", "--no-check",
       "--label", "Acme master", "--level", "accountant", "--username", "payroll@acme.nl",
       "--contact", "it@acme.nl", "--contact", "boss@acme.nl", "--language", "nl", "--domain", "acme")


def swap(argv: tuple[str, ...], option: str, value: str | None) -> list[str]:
    """ADD with one option's value replaced (or the option dropped when value is None)."""
    out, args = [], list(argv)
    while args:
        item = args.pop(0)
        if item == option:
            old = args.pop(0)
            if value is not None:
                out += [item, value]
                del old
            continue
        out.append(item)
    return out


def test_add_reads_the_token_from_stdin_and_never_prints_it(cli) -> None:
    result = cli(*ADD, stdin=TOKEN + "\n")
    assert result.code == 0, result.err
    assert "added token 1 'Acme master' (accountant, payroll@acme.nl, token …d015)" in result.out
    assert TOKEN not in result.out + result.err
    listed = cli("tokens", "list", "--json")
    assert listed.code == 0
    (row,) = listed.json
    assert (row["label"], row["state"], row["domain"], row["contact_language"]) == ("Acme master", "new", "acme", "nl")
    assert row["contact_emails"] == ["it@acme.nl", "boss@acme.nl"]
    assert TOKEN not in listed.out


@pytest.mark.parametrize(
    ("option", "value", "stdin", "field"),
    [
        ("--username", "payroll-at-acme.nl", TOKEN, "--username"),
        ("--contact", "nobody", TOKEN, "--contact"),
        ("--label", "   ", TOKEN, "--label"),
        ("--domain", "acme.nmbrs.nl", TOKEN, "--domain"),
        ("--domain", "ac me", TOKEN, "--domain"),
        ("--level", "master", TOKEN, "--level"),
        ("--language", "de", TOKEN, "--language"),
        ("--username", None, TOKEN, "--username"),
        (None, None, "", "token"),
        (None, None, "\n\n", "token"),
        (None, None, "short", "token"),
        (None, None, "two words here", "token"),
        (None, None, f"{TOKEN}\n{OTHER}\n", "token"),
        (None, None, "x" * 5000, "token"),
    ],
)
def test_add_refuses_bad_input_naming_the_field_and_writes_nothing(cli, counts, option, value, stdin, field) -> None:
    before = counts()
    argv = swap(ADD, option, value) if option else list(ADD)
    result = cli(*argv, stdin=stdin)
    assert result.code == 2
    assert field in result.err
    assert counts() == before
    assert TOKEN not in result.out + result.err
    if option is None and stdin.strip():
        assert stdin.strip()[:12] not in result.err


def test_a_token_on_the_command_line_is_refused_and_not_echoed(cli, counts) -> None:
    before = counts()
    for argv in ([*ADD, "--token", TOKEN], [*ADD, f"--token={TOKEN}"], [*ADD, TOKEN]):
        result = cli(*argv, stdin=TOKEN)
        assert result.code == 2, argv
        assert TOKEN not in result.out + result.err
        assert "never taken from the command line" in result.err
    assert counts() == before


def test_a_duplicate_is_refused_naming_the_token_it_duplicates(cli, counts) -> None:
    assert cli(*ADD, stdin=TOKEN).code == 0
    before = counts()
    again = cli(*swap(ADD, "--label", "Acme again"), "--username", "PAYROLL@acme.nl", stdin=TOKEN)
    assert again.code == 2
    assert "already registered as token 1 (Acme master" in again.err
    assert counts() == before
    same_label = cli(*swap(ADD, "--label", "ACME MASTER"), stdin=OTHER)
    assert same_label.code == 2
    assert "--label" in same_label.err
    assert "token 1" in same_label.err
    assert counts() == before


def test_duplicates_are_caught_after_a_new_key_was_added_and_after_rotation(cli, counts, fernet_keys,
                                                                            monkeypatch) -> None:
    assert cli(*ADD, stdin=TOKEN).code == 0
    newest = Fernet.generate_key().decode()
    monkeypatch.setenv("L1NDA_FERNET_KEYS", f"{newest},{fernet_keys[0]}")
    assert cli(*swap(ADD, "--label", "again"), stdin=TOKEN).code == 2
    rotated = cli("keys", "rotate")
    assert rotated.code == 0, rotated.err
    assert "re-encrypted 1 token under" in rotated.out
    assert "(1 were under an older key)" in rotated.out
    monkeypatch.setenv("L1NDA_FERNET_KEYS", newest)
    before = counts()
    again = cli(*swap(ADD, "--label", "again"), stdin=TOKEN)
    assert again.code == 2
    assert "already registered as token 1" in again.err
    assert counts() == before


def test_a_second_token_for_the_same_login_hints_at_replace(cli) -> None:
    assert cli(*ADD, stdin=TOKEN).code == 0
    second = cli(*swap(ADD, "--label", "Acme 2"), stdin=OTHER)
    assert second.code == 0
    assert "tokens replace 1" in second.err


def test_without_keys_add_fails_before_reading_the_token(cli, counts, monkeypatch) -> None:
    monkeypatch.delenv("L1NDA_FERNET_KEYS")
    before = counts()
    result = cli(*ADD, stdin=TOKEN)
    assert result.code == 1
    assert "L1NDA_FERNET_KEYS" in result.err
    assert "l1nda-sync keys generate" in result.err
    assert counts() == before


def test_list_filters_by_state_and_hides_removed_tokens(cli) -> None:
    assert cli(*ADD, stdin=TOKEN).code == 0
    assert cli(*swap(ADD, "--label", "B"), "--username", "b@acme.nl", stdin=OTHER).code == 0
    assert cli("tokens", "disable", "2").code == 0
    table = cli("tokens", "list")
    assert table.code == 0
    lines = table.out.splitlines()
    assert lines[0].split()[:7] == ["id", "kind", "label", "level", "username", "token", "state"]
    assert lines[2].split()[1] == "soap"
    assert len(lines) == 4  # header, rule, two tokens
    assert [t["id"] for t in cli("tokens", "list", "--state", "disabled", "--json").json] == [2]
    assert cli("tokens", "remove", "2").code == 0
    assert [t["id"] for t in cli("tokens", "list", "--json").json] == [1]
    assert [t["id"] for t in cli("tokens", "list", "--all", "--json").json] == [1, 2]
    empty = cli("tokens", "list", "--state", "revoked")
    assert empty.code == 0
    assert "no tokens in state revoked" in empty.out
    bad = cli("tokens", "list", "--state", "sleeping")
    assert bad.code == 2
    assert "--state" in bad.err


def test_show_gives_reach_checks_links_problems_and_history(cli, registry_url) -> None:
    assert cli(*ADD, stdin=TOKEN).code == 0
    conn = db.connect(registry_url)
    try:
        with db.transaction(conn) as cur:
            cur.execute("""INSERT INTO reach_debtors (token_id, debtor_id, number, name, tags)
                           VALUES (1, 11, 'D11', 'Debtor <b>Eleven</b>', '["payroll"]')""")
            cur.execute("""INSERT INTO reach_companies (token_id, company_id, debtor_id, number, name)
                           VALUES (1, 54613, 11, 444445, 'DEMO B.V. 2'), (1, 54614, 11, 444446, 'Gone B.V.')""")
            cur.execute("UPDATE reach_companies SET lost_at = now() WHERE company_id = 54614")
            cur.execute("""INSERT INTO checks (token_id, outcome, fault_code, duration_ms, calls, debtors, companies)
                           VALUES (1, 'valid', NULL, 120, 4, 1, 1), (1, 'invalid', 1001, 80, 1, NULL, NULL)""")
            cur.execute("""INSERT INTO links (customer_ref, company_id, state, token_id)
                           VALUES ('CUST-9', 54613, 'active', 1)""")
            cur.execute("INSERT INTO problems (token_id, kind) VALUES (1, 'revoked')")
    finally:
        conn.close()
    shown = cli("tokens", "show", "1")
    assert shown.code == 0, shown.err
    for fragment in ("Acme master", "…d015", "Reach: 1 debtor, 1 company", "lost earlier: 0 debtors, 1 company",
                     "DEMO B.V. 2", "Debtor <b>Eleven</b>", "payroll", "invalid", "1001", "CUST-9", "revoked",
                     "added"):
        assert fragment in shown.out, fragment
    assert "Gone B.V." not in shown.out
    data = cli("tokens", "show", "1", "--json").json
    assert [c["company_id"] for c in data["companies"]] == [54613]
    assert [c["outcome"] for c in data["checks"]] == ["invalid", "valid"]
    assert [lk["customer_ref"] for lk in data["links"]] == ["CUST-9"]
    assert [p["kind"] for p in data["problems"]] == ["revoked"]
    assert TOKEN not in shown.out + str(data)


@pytest.mark.parametrize("action", ["show", "replace", "disable", "enable", "remove"])
def test_an_unknown_or_malformed_id_is_bad_input(cli, counts, action) -> None:
    before = counts()
    missing = cli("tokens", action, "999", stdin=OTHER)
    assert missing.code == 2
    assert "no token with id 999" in missing.err
    malformed = cli("tokens", action, "abc", stdin=OTHER)
    assert malformed.code == 2
    assert "ID" in malformed.err
    assert "not a whole number" in malformed.err
    assert counts() == before


def test_replace_stores_the_new_secret_and_keeps_the_rest(cli, registry_url, counts) -> None:
    assert cli(*ADD, stdin=TOKEN).code == 0
    conn = db.connect(registry_url)
    try:
        with db.transaction(conn) as cur:
            cur.execute("UPDATE tokens SET state = 'revoked', next_check_at = now() + interval '1 hour'")
            cur.execute("INSERT INTO links (customer_ref, company_id, state, token_id) VALUES ('C', 5, 'suspended', 1)")
        result = cli("tokens", "replace", "1", "--no-check", stdin=OTHER + "\n")
        assert result.code == 0, result.err
        assert "state revoked -> new" in result.out
        assert "(was …d015)" in result.out
        assert TokenStore.from_settings().reveal(conn, 1).reveal() == OTHER
        with db.reading(conn) as cur:
            cur.execute("SELECT state, next_check_at <= now(), username FROM tokens WHERE id = 1")
            assert cur.fetchone() == ("new", True, "payroll@acme.nl")
            cur.execute("SELECT count(*) FROM links WHERE token_id = 1")
            assert cur.fetchone()[0] == 1
        before = counts()
        same = cli("tokens", "replace", "1", "--no-check", stdin=OTHER)
        assert same.code == 2
        assert "already stored for token 1" in same.err
        empty = cli("tokens", "replace", "1", "--no-check", stdin="")
        assert empty.code == 2
        assert "token: is empty" in empty.err
        assert counts() == before
    finally:
        conn.close()


def test_disable_enable_remove_report_changes_and_no_ops(cli, counts) -> None:
    assert cli(*ADD, stdin=TOKEN).code == 0
    expected = [
        (("disable", "1"), 0, "disabled token 1", "new -> disabled"),
        (("disable", "1"), 0, "is already disabled", "nothing changed"),
        (("enable", "1", "--reason", "customer is back"), 0, "enabled token 1", "disabled -> new"),
        (("enable", "1"), 0, "is not disabled", "nothing changed"),
        (("remove", "1"), 0, "removed token 1", "new -> removed"),
        (("remove", "1"), 0, "is already removed", "nothing changed"),
        (("enable", "1"), 2, "was removed", "tokens add"),
        (("disable", "1"), 2, "was removed", "tokens add"),
    ]
    for argv, code, first, second in expected:
        before = counts()
        result = cli("tokens", *argv)
        assert result.code == code, (argv, result.err)
        text = result.out + result.err
        assert first in text, argv
        assert second in text, argv
        if "nothing changed" in text or code:
            assert counts() == before, argv
    as_json = cli("tokens", "show", "1", "--json").json
    assert [e["action"] for e in as_json["events"]] == ["removed", "enabled", "disabled", "added"]
    assert as_json["events"][1]["detail"] == {"reason": "customer is back"}


@pytest.mark.parametrize("check", [["--no-check"], []])
def test_after_soap_end_add_and_replace_refuse_a_soap_token_and_write_nothing(cli, registry_url, counts,
                                                                              monkeypatch, check) -> None:
    assert cli(*ADD, stdin=TOKEN).code == 0  # before soap_end (default 2027-03-01): as ever
    monkeypatch.setenv("L1NDA_SOAP_END", "2026-01-01")
    before = counts()
    argv = [a for a in swap(ADD, "--username", "other@acme.nl") if a != "--no-check"] + check
    added = cli(*argv, stdin=OTHER)
    replaced = cli("tokens", "replace", "1", *check, stdin=OTHER)
    for result in (added, replaced):
        assert result.code == 2
        assert "token: Nmbrs ended its SOAP API on 2026-01-01 00:00 CET (setting soap_end)" in result.err
        assert "connect the customer through REST instead" in result.err
        assert "nothing was written" in result.err
        assert OTHER not in result.out + result.err
    assert counts() == before
    conn = db.connect(registry_url)
    try:
        assert TokenStore.from_settings().reveal(conn, 1).reveal() == TOKEN  # the old secret stays
    finally:
        conn.close()
