from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from l1nda_sync.masking import Secret
from l1nda_sync.registry import db, locks, tokens
from l1nda_sync.registry.crypto import TokenCipher, generate_key
from l1nda_sync.registry.errors import Conflict, EncryptionKeyError, NotFound
from l1nda_sync.registry.tokens import NewToken, TokenStore

TOKENS = ["9f86d081884c7d659a2feaa0c55ad015", "60303ae22b998861bce3b28f33eec1be", "b5bb9d8014a0f9b1d61e21e796d78dcc"]


@pytest.fixture
def conn(registry_url: str) -> Iterator[object]:
    c = db.connect(registry_url)
    yield c
    c.close()


def new_token(n: int = 0, *, username: str | None = None, label: str | None = None, token: str | None = None):
    return NewToken.validate(label=label or f"Token {n}", level="accountant" if n % 2 else "debtor",
                             username=username or f"login{n}@example.com", token=token or TOKENS[n],
                             contacts=[f"contact{n}@customer.nl"], language="nl", domain="apitesting")


def add(store: TokenStore, conn, n: int = 0, **kw) -> tokens.Token:
    with db.transaction(conn):
        return store.add(conn, new_token(n, **kw), actor="test")


def count(conn, table: str) -> int:
    with db.reading(conn) as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        return int(cur.fetchone()[0])


def test_add_then_reveal_gives_the_token_back_only_as_a_secret(conn) -> None:
    store = TokenStore(TokenCipher([generate_key()]))
    token = add(store, conn)
    assert (token.state, token.level, token.domain, token.contact_language) == ("new", "debtor", "apitesting", "nl")
    assert token.token_hint == "…d015"
    assert token.contact_emails == ("contact0@customer.nl",)
    secret = store.reveal(conn, token.id)
    assert isinstance(secret, Secret)
    assert secret.reveal() == TOKENS[0]
    assert TOKENS[0] not in repr(token) + str(token)
    with db.reading(conn) as cur:
        cur.execute("SELECT actor, action, to_state FROM token_events WHERE token_id = %s", (token.id,))
        assert cur.fetchall() == [("test", "added", "new")]
        cur.execute("SELECT next_check_at <= now() FROM tokens WHERE id = %s", (token.id,))
        assert cur.fetchone()[0] is True


def test_the_engine_can_decrypt_what_the_store_wrote(conn, fernet_keys: list[str]) -> None:
    """SyncEngine uses TokenCipher.from_settings(settings).decrypt on the stored ciphertext."""
    token = add(TokenStore.from_settings(), conn)
    with db.reading(conn) as cur:
        cur.execute("SELECT token_ciphertext FROM tokens WHERE id = %s", (token.id,))
        ciphertext = cur.fetchone()[0]
    assert TokenCipher.from_settings().decrypt(ciphertext).reveal() == TOKENS[0]


def test_no_table_holds_a_plaintext_token(conn) -> None:
    """Dump every column of every table as text after every kind of write, and look for the tokens."""
    store = TokenStore(TokenCipher([generate_key()]))
    first, second = add(store, conn, 0), add(store, conn, 1)
    with db.transaction(conn) as cur:
        store.replace(conn, first.id, Secret(TOKENS[2]), actor="test")
        tokens.disable(conn, second.id, actor="test")
        tokens.remove(conn, second.id, actor="test")
        cur.execute("INSERT INTO links (customer_ref, company_id) VALUES ('C1', 5)")
        cur.execute("INSERT INTO problems (token_id, kind) VALUES (%s, 'revoked')", (first.id,))
    with db.reading(conn) as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        tables = [r[0] for r in cur.fetchall()]
        assert len(tables) == 20  # with problem_kinds, the three rest_ tables, invitations and customer_contacts
        assert "registry_keys" in tables  # the sealed fingerprint key is dumped too
        dump = []
        for table in tables:
            cur.execute(f"SELECT t::text FROM {table} t")
            dump += [r[0] for r in cur.fetchall()]
    text = "\n".join(dump)
    assert "…d015" in text  # the dump did reach the token rows
    for plain in TOKENS:
        assert plain not in text
        assert plain[:16] not in text
        assert plain[-16:] not in text


def test_a_duplicate_login_and_token_is_refused_naming_the_token(conn) -> None:
    store = TokenStore(TokenCipher([generate_key()]))
    first = add(store, conn, 0)
    with pytest.raises(Conflict) as err, db.transaction(conn):
        store.add(conn, new_token(0, username="LOGIN0@example.com ", label="Other label"), actor="test")
    assert err.value.field == "token"
    assert f"token {first.id}" in str(err.value)
    assert first.label in str(err.value)
    assert count(conn, "tokens") == 1
    assert count(conn, "token_events") == 1
    # Same token under another login is another credential; same login with another token too.
    add(store, conn, 1, token=TOKENS[0])
    add(store, conn, 2, username="login0@example.com")
    assert count(conn, "tokens") == 3


def test_a_taken_label_is_refused_whatever_its_case(conn) -> None:
    store = TokenStore(TokenCipher([generate_key()]))
    first = add(store, conn, 0, label="Acme master")
    with pytest.raises(Conflict) as err, db.transaction(conn):
        store.add(conn, new_token(1, label="ACME MASTER"), actor="test")
    assert err.value.field == "--label"
    assert f"token {first.id}" in str(err.value)
    assert count(conn, "tokens") == 1


def test_duplicates_are_caught_after_a_key_was_added_before_and_after_rotation(conn) -> None:
    old, new = generate_key(), generate_key()
    add(TokenStore(TokenCipher([old])), conn, 0)
    both = TokenStore(TokenCipher([new, old]))
    with pytest.raises(Conflict, match="already registered as token 1"), db.transaction(conn):
        both.add(conn, new_token(0, label="again"), actor="test")
    with db.transaction(conn):
        both.rotate(conn, actor="test")
    only_new = TokenStore(TokenCipher([new]))
    assert only_new.find_duplicate(conn, "login0@example.com", TOKENS[0]) is not None
    with pytest.raises(Conflict, match="already registered as token 1"), db.transaction(conn):
        only_new.add(conn, new_token(0, label="again"), actor="test")


def test_rotation_keeps_every_token_readable_and_the_old_key_can_go(conn) -> None:
    old, new = generate_key(), generate_key()
    store = TokenStore(TokenCipher([old]))
    ids = [add(store, conn, n).id for n in range(3)]
    with db.transaction(conn):
        tokens.remove(conn, ids[2], actor="test")
    with db.reading(conn) as cur:
        cur.execute("SELECT id, token_ciphertext, fingerprint FROM tokens ORDER BY id")
        before = cur.fetchall()
    with db.transaction(conn):
        report = TokenStore(TokenCipher([new, old])).rotate(conn, actor="test")
    assert (report.tokens, report.under_older_key, report.keys) == (2, 2, 2)
    with db.reading(conn) as cur:
        cur.execute("SELECT id, token_ciphertext, fingerprint FROM tokens ORDER BY id")
        after = cur.fetchall()
    # Re-encrypted, but the fingerprints stay: their key is the registry's own, not a Fernet key.
    assert [a[1] != b[1] and a[2] == b[2] for a, b in zip(after[:2], before[:2], strict=True)] == [True, True]
    assert after[2] == before[2]  # a removed token has no secret left to rotate
    new_only = TokenStore(TokenCipher([new]))
    assert [new_only.reveal(conn, i).reveal() for i in ids[:2]] == TOKENS[:2]
    with pytest.raises(EncryptionKeyError):
        TokenStore(TokenCipher([old])).reveal(conn, ids[0])
    with db.transaction(conn):  # again: nothing is under an older key any more
        assert new_only.rotate(conn, actor="test").under_older_key == 0
    with db.reading(conn) as cur:
        cur.execute("SELECT count(*) FROM token_events WHERE action = 'key_rotated'")
        assert cur.fetchone()[0] == 4


def test_rotation_is_all_or_nothing_when_a_key_is_missing(conn) -> None:
    a, b, c = generate_key(), generate_key(), generate_key()
    add(TokenStore(TokenCipher([a])), conn, 0)
    add(TokenStore(TokenCipher([b, a])), conn, 1)
    with db.reading(conn) as cur:
        cur.execute("SELECT token_ciphertext FROM tokens ORDER BY id")
        before = cur.fetchall()
    with pytest.raises(EncryptionKeyError, match="token 2 cannot be decrypted") as err, db.transaction(conn):
        TokenStore(TokenCipher([c, a])).rotate(conn, actor="test")
    assert "nothing was rotated" in str(err.value)
    with db.reading(conn) as cur:
        cur.execute("SELECT token_ciphertext FROM tokens ORDER BY id")
        assert cur.fetchall() == before


def test_replace_keeps_id_links_and_history_and_is_due_again(conn) -> None:
    store = TokenStore(TokenCipher([generate_key()]))
    token = add(store, conn)
    with db.transaction(conn) as cur:
        cur.execute("""UPDATE tokens SET state = 'revoked', consecutive_invalid = 2, first_invalid_at = now(),
                       next_check_at = now() + interval '1 day' WHERE id = %s""", (token.id,))
        cur.execute("INSERT INTO links (customer_ref, company_id, state, token_id) VALUES ('C', 7, 'suspended', %s)",
                    (token.id,))
        cur.execute("INSERT INTO reach_companies (token_id, company_id) VALUES (%s, 7)", (token.id,))
    with db.transaction(conn):
        change = store.replace(conn, token.id, Secret(TOKENS[1]), actor="test")
    assert (change.before, change.token.state, change.token.id) == ("revoked", "new", token.id)
    assert change.token.consecutive_invalid == 0
    assert change.token.replaced_at is not None
    assert change.token.token_hint == "…c1be"
    assert store.reveal(conn, token.id).reveal() == TOKENS[1]
    with db.reading(conn) as cur:
        cur.execute("SELECT next_check_at <= now(), first_invalid_at FROM tokens WHERE id = %s", (token.id,))
        assert cur.fetchone() == (True, None)
        cur.execute("SELECT count(*) FROM links WHERE token_id = %s", (token.id,))
        assert cur.fetchone()[0] == 1
        cur.execute("SELECT action FROM token_events WHERE token_id = %s ORDER BY id", (token.id,))
        assert [r[0] for r in cur.fetchall()] == ["added", "replaced"]
    assert store.find_duplicate(conn, token.username, TOKENS[0]) is None  # the old secret is gone


def test_replace_refuses_the_same_token_and_a_removed_one(conn) -> None:
    store = TokenStore(TokenCipher([generate_key()]))
    token = add(store, conn)
    with pytest.raises(Conflict, match="already stored for token 1"), db.transaction(conn):
        store.replace(conn, token.id, Secret(TOKENS[0]), actor="test")
    with db.transaction(conn):
        tokens.remove(conn, token.id, actor="test")
    with pytest.raises(Conflict, match="was removed"), db.transaction(conn):
        store.replace(conn, token.id, Secret(TOKENS[1]), actor="test")
    with pytest.raises(NotFound, match="no token with id 42"), db.transaction(conn):
        store.replace(conn, 42, Secret(TOKENS[1]), actor="test")


def test_disable_enable_remove_and_their_no_ops(conn) -> None:
    store = TokenStore(TokenCipher([generate_key()]))
    token = add(store, conn)
    steps = [(tokens.disable, "disabled", True), (tokens.disable, "disabled", False),
             (tokens.enable, "new", True), (tokens.enable, "new", False),
             (tokens.remove, "removed", True), (tokens.remove, "removed", False)]
    for fn, state, changed in steps:
        with db.transaction(conn):
            change = fn(conn, token.id, actor="test", reason="because")
        assert (change.token.state, change.changed) == (state, changed), fn.__name__
    with db.reading(conn) as cur:
        cur.execute("SELECT action, from_state, to_state, detail FROM token_events WHERE token_id = %s ORDER BY id",
                    (token.id,))
        assert cur.fetchall()[1:] == [("disabled", "new", "disabled", {"reason": "because"}),
                                      ("enabled", "disabled", "new", {"reason": "because"}),
                                      ("removed", "new", "removed", {"reason": "because"})]
        cur.execute("SELECT token_ciphertext, removed_at IS NOT NULL FROM tokens WHERE id = %s", (token.id,))
        assert cur.fetchone() == (None, True)
    for fn in (tokens.disable, tokens.enable):
        with pytest.raises(Conflict, match="was removed"), db.transaction(conn):
            fn(conn, token.id, actor="test")
    with pytest.raises(NotFound):
        store.reveal(conn, token.id)
    # Label and fingerprint are free again; the removed row stays for the audit trail.
    again = add(store, conn)
    assert again.id != token.id
    assert count(conn, "tokens") == 2
    assert [t.id for t in tokens.list_tokens(conn)] == [again.id]
    assert [t.id for t in tokens.list_tokens(conn, include_removed=True)] == [token.id, again.id]
    assert [t.id for t in tokens.list_tokens(conn, state="removed")] == [token.id]


def _waiting_on(conn, key: int) -> int:
    with db.reading(conn) as cur:
        cur.execute("""SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                       AND ((classid::bigint << 32) | objid::bigint) = %s""", (key,))
        return int(cur.fetchone()[0])


def test_two_operators_adding_the_same_token_at_once_store_it_once(registry_url: str) -> None:
    store = TokenStore(TokenCipher([generate_key()]))
    first, second, watcher = db.connect(registry_url), db.connect(registry_url), db.connect(registry_url)
    outcome: list[object] = []

    def late_add() -> None:
        try:
            with db.transaction(second):
                outcome.append(store.add(second, new_token(0, label="second"), actor="b"))
        except Conflict as exc:
            outcome.append(exc)

    try:
        store.add(first, new_token(0, label="first"), actor="a")  # transaction left open: holds the lock
        thread = threading.Thread(target=late_add)
        thread.start()
        deadline = time.monotonic() + 20
        while _waiting_on(watcher, locks.TOKEN_WRITE_LOCK_KEY) < 1:
            assert time.monotonic() < deadline, "the second add never waited for the first"
            time.sleep(0.01)
        first.commit()
        thread.join(30)
        assert len(outcome) == 1
        assert isinstance(outcome[0], Conflict)
        assert count(watcher, "tokens") == 1
    finally:
        for c in (first, second, watcher):
            c.close()


def test_checks_still_pending_from_before_a_replace_or_state_change_are_never_applied(conn) -> None:
    """A run that probed the old secret must not revoke the new one when it applies its checks later."""
    store = TokenStore(TokenCipher([generate_key()]))
    token = add(store, conn)

    def pending_check() -> int:
        with db.transaction(conn) as cur:
            cur.execute("""INSERT INTO checks (token_id, outcome, fault_code, probe) VALUES (%s, 'invalid', 1001,
                           '{"debtors": []}') RETURNING id""", (token.id,))
            return cur.fetchone()[0]

    def applied(check_id: int) -> tuple:
        with db.reading(conn) as cur:
            cur.execute("SELECT applied_at IS NOT NULL, probe, detail FROM checks WHERE id = %s", (check_id,))
            return cur.fetchone()

    before_replace = pending_check()
    with db.transaction(conn):
        store.replace(conn, token.id, Secret(TOKENS[1]), actor="test")
    assert applied(before_replace) == (True, None, "not applied: the token was replaced after this check")
    before_disable = pending_check()
    with db.transaction(conn):
        tokens.disable(conn, token.id, actor="test")
    assert applied(before_disable)[0] is True
    with db.transaction(conn) as cur:  # a no-op touches nothing
        cur.execute("INSERT INTO checks (token_id, outcome) VALUES (%s, 'valid') RETURNING id", (token.id,))
        untouched = cur.fetchone()[0]
        tokens.disable(conn, token.id, actor="test")
    assert applied(untouched)[0] is False
