"""Issue 14 from the operator's side: keys that are not this registry's are refused where it matters, `keys
check` says which key reads which token, bad text and numbers are refused naming the field (exit 2, nothing
written), mailbox settings are validated, and a `sync run` that fails before checking leaves nothing running.
Against a real registry (and the simulator over HTTP for the sync run)."""

from __future__ import annotations

from cryptography.fernet import Fernet

from l1nda_sync.registry import db
from tests.l1nda_sync.cli.conftest import Cli

TOKEN = "9f86d081884c7d659a2feaa0c55ad015"
OTHER = "60303ae22b998861bce3b28f33eec1be"


def add(cli: Cli, n: int, token: str, *extra: str):
    return cli("tokens", "add", "--no-check", "--label", f"T{n}", "--level", "debtor", "--username", f"u{n}@x.nl",
               "--contact", "c@x.nl", *extra, stdin=token)


def _rows(url: str, sql: str) -> list[tuple]:
    conn = db.connect(url)
    try:
        with db.reading(conn) as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


# -- keys ----------------------------------------------------------------------------------------------------


def test_dropping_the_old_key_before_rotating_can_never_register_a_token_twice(cli, fernet_keys, monkeypatch,
                                                                               counts) -> None:
    old = fernet_keys[0]
    assert add(cli, 1, TOKEN).code == 0
    new = Fernet.generate_key().decode()
    monkeypatch.setenv("L1NDA_FERNET_KEYS", f"{new},{old}")
    assert add(cli, 2, OTHER).code == 0  # under the new key, the old one still configured
    monkeypatch.setenv("L1NDA_FERNET_KEYS", new)  # the old key dropped, `keys rotate` never ran
    before = counts()
    again = cli("tokens", "add", "--no-check", "--label", "Again", "--level", "debtor", "--username", "u1@x.nl",
                "--contact", "c@x.nl", stdin=TOKEN)
    assert again.code == 1
    assert "these keys cannot read token 1: is L1NDA_FERNET_KEYS this deployment's?" in again.err
    assert "nothing was added" in again.err
    assert counts() == before
    # With both keys and a rotation the old key can go, and the duplicate is still found without it.
    monkeypatch.setenv("L1NDA_FERNET_KEYS", f"{new},{old}")
    assert cli("keys", "rotate").code == 0
    monkeypatch.setenv("L1NDA_FERNET_KEYS", new)
    before = counts()
    duplicate = cli("tokens", "add", "--no-check", "--label", "Again", "--level", "debtor", "--username",
                    "U1@X.nl", "--contact", "c@x.nl", stdin=TOKEN)
    assert duplicate.code == 2
    assert "already registered as token 1" in duplicate.err
    assert counts() == before


def test_a_foreign_key_set_is_refused_before_the_token_is_read_and_keys_check_says_why(
        cli, fernet_keys, monkeypatch, registry_url, counts) -> None:
    for n, token in enumerate((TOKEN, OTHER, "abcdefgh12345678"), start=1):
        assert add(cli, n, token).code == 0
    foreign = Fernet.generate_key().decode()
    monkeypatch.setenv("L1NDA_FERNET_KEYS", foreign)
    before = counts()
    refused = add(cli, 9, "zyxwvuts98765432")
    assert refused.code == 1
    assert "these keys cannot read token 1-3: is L1NDA_FERNET_KEYS this deployment's?" in refused.err
    replaced = cli("tokens", "replace", "2", "--no-check", stdin="zyxwvuts98765432")
    assert replaced.code == 1
    assert "cannot read token 1, 3" in replaced.err  # the token being replaced is not held against it
    assert counts() == before
    check = cli("keys", "check")
    assert check.code == 1
    assert "no key reads token 1-3: is L1NDA_FERNET_KEYS this deployment's?" in check.out
    assert "fingerprint key cannot be read" in check.out
    assert foreign not in check.out + check.err
    # The right keys, newest first: each key's tokens are listed, and the check passes.
    newest = Fernet.generate_key().decode()
    monkeypatch.setenv("L1NDA_FERNET_KEYS", f"{newest},{fernet_keys[0]}")
    assert add(cli, 4, "zyxwvuts98765432").code == 0  # under the newest key
    ok = cli("keys", "check", "--json")
    assert ok.code == 0, ok.err
    assert ok.json["reads"] == [{"key": 1, "token_ids": [4]}, {"key": 2, "token_ids": [1, 2, 3]}]
    assert (ok.json["unreadable"], ok.json["fingerprint_key"], ok.json["ok"]) == ([], "readable", True)
    text = cli("keys", "check")
    assert "3 still need an older key: run `l1nda-sync keys rotate`" in text.out
    for key in (newest, fernet_keys[0]):
        assert key not in text.out + ok.out


def test_fingerprints_of_an_old_registry_move_to_the_stable_key_on_the_first_write(cli, fernet_keys,
                                                                                    registry_url) -> None:
    """A registry from before migration 6: fingerprints under the Fernet-derived key, no registry_keys row."""
    from l1nda_sync.registry.crypto import TokenCipher

    assert add(cli, 1, TOKEN).code == 0
    legacy = TokenCipher(fernet_keys).fingerprint("u1@x.nl", TOKEN)
    conn = db.connect(registry_url)
    try:
        with db.transaction(conn) as cur:
            cur.execute("DELETE FROM registry_keys")
            cur.execute("UPDATE tokens SET fingerprint = %s", (legacy,))
    finally:
        conn.close()
    dup = cli("tokens", "add", "--no-check", "--label", "Again", "--level", "debtor", "--username", "u1@x.nl",
              "--contact", "c@x.nl", stdin=TOKEN)
    assert dup.code == 2  # found under the legacy fingerprint
    assert add(cli, 2, OTHER).code == 0
    (fp,), = _rows(registry_url, "SELECT fingerprint FROM tokens WHERE id = 1")
    assert fp != legacy  # re-fingerprinted under the registry's own key
    assert _rows(registry_url, "SELECT count(*) FROM registry_keys") == [(1,)]
    assert TOKEN not in str(_rows(registry_url, "SELECT ciphertext FROM registry_keys"))


# -- text, numbers and settings ---------------------------------------------------------------------------------


def test_escape_codes_and_overlong_text_are_refused_naming_the_field(cli, counts) -> None:
    before = counts()
    cases = [
        (("--notes", "x\x1b[2Jwiped"), "--notes: contains a terminal escape code"),
        (("--notes", "n" * 2001), "--notes: is 2001 characters long"),
    ]
    for extra, message in cases:
        result = add(cli, 1, TOKEN, *extra)
        assert result.code == 2, extra
        assert message in result.err
        assert "\x1b" not in result.out + result.err
    label = cli("tokens", "add", "--no-check", "--label", "Evil\x1b]0;pwned\x07", "--level", "debtor",
                "--username", "a@b.nl", "--contact", "c@x.nl", stdin=TOKEN)
    assert label.code == 2
    assert "--label: contains a terminal escape code" in label.err
    assert "\x1b" not in label.err
    assert counts() == before
    assert add(cli, 1, TOKEN).code == 0
    reason = cli("tokens", "disable", "1", "--reason", "bye\r\nforged line")
    assert reason.code == 2
    assert "--reason: contains a line break" in reason.err
    assert cli("tokens", "list", "--json").json[0]["state"] == "new"


def test_customer_references_are_canonical_never_a_second_customer(cli, counts) -> None:
    first = cli("links", "request", "--customer", "  cust-anker ", "--company", "50101", "--json")
    assert first.code == 0, first.err
    assert first.json["link"]["customer_ref"] == "CUST-ANKER"
    before = counts()
    spaced = cli("links", "request", "--customer", "  CUST ANKER ", "--company", "50102")
    assert spaced.code == 2
    assert "--customer: 'CUST ANKER' contains spaces" in spaced.err
    assert "did you mean 'CUST-ANKER'?" in spaced.err
    escaped = cli("links", "request", "--customer", "CUST\x1b[31m", "--company", "50102")
    assert escaped.code == 2
    assert "terminal escape code" in escaped.err
    assert counts() == before


def test_numeric_arguments_are_range_checked(cli) -> None:
    for argv, fragment in (
        (("runs", "list", "--limit", "99999999999999999999"), "is out of range; give a number from 1 to 1000"),
        (("runs", "list", "--limit", "0"), "out of range"),
        (("runs", "show", "99999999999999999999"), "out of range"),
        (("sync", "run", "--token", "99999999999999999999"), "out of range"),
        (("sync", "run", "--token", "²"), "is not a whole number"),
    ):
        result = cli(*argv)
        assert result.code == 2, (argv, result.err)
        assert fragment in result.err, argv
    assert cli("runs", "list", "--limit", "1000").code == 0


def test_a_crlf_in_mail_from_is_refused_naming_the_variable(cli, monkeypatch) -> None:
    monkeypatch.setenv("L1NDA_MAIL_FROM", "L1NDA <no-reply@l1nda.example>\r\nBcc: victim@example.com")
    result = cli("settings")
    assert result.code == 1
    assert "L1NDA_MAIL_FROM" in result.err
    assert "line break (CR/LF)" in result.err
    monkeypatch.setenv("L1NDA_MAIL_FROM", "L1NDA <no-reply@localhost>")
    assert "not an e-mail address: no-reply@localhost" in cli("settings").err
    monkeypatch.setenv("L1NDA_MAIL_FROM", "L1NDA sync <no-reply@l1nda.example>")
    monkeypatch.setenv("L1NDA_OPS_RECIPIENTS", "ops@l1nda.example,\nother@l1nda.example")
    assert "L1NDA_OPS_RECIPIENTS" in cli("settings").err


# -- sync run that fails before checking ----------------------------------------------------------------------


def test_a_sync_run_that_fails_before_checking_leaves_no_run_running(cli, fernet_keys, monkeypatch,
                                                                     registry_url) -> None:
    assert add(cli, 1, TOKEN).code == 0
    monkeypatch.setenv("L1NDA_FERNET_KEYS", Fernet.generate_key().decode())  # a worker with the wrong keys
    result = cli("sync", "run")
    assert result.code == 1
    assert "failed while checking" in result.err
    assert "marked failed" in result.err
    assert "nothing else was written" in result.err
    assert _rows(registry_url, "SELECT state FROM runs") == [("failed",)]
    assert _rows(registry_url, "SELECT count(*) FROM checks") == [(0,)]
    # Its claim is released: the token is due again at once (the next run checks it).
    assert _rows(registry_url, "SELECT next_check_at <= now() + interval '1 minute' FROM tokens") == [(True,)]


def test_stored_text_with_escape_codes_is_shown_escaped_never_raw(cli, registry_url) -> None:
    """A company name as Nmbrs returned it (not typed here, so not refused) reaches the terminal defused."""
    assert add(cli, 1, TOKEN).code == 0
    conn = db.connect(registry_url)
    try:
        with db.transaction(conn) as cur:
            cur.execute("INSERT INTO reach_companies (token_id, company_id, name) VALUES (1, 7, %s)",
                        ("Evil\x1b[2J B.V.",))
    finally:
        conn.close()
    shown = cli("tokens", "show", "1")
    assert shown.code == 0, shown.err
    assert "\x1b" not in shown.out
    assert "Evil\\x1b[2J B.V." in shown.out
