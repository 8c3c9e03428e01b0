"""REST connections in the registry: migration 0007 on a registry with data, started consents, saving and
renewing connections, and the RegistryGrantStore's row lock across real PostgreSQL connections."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from l1nda_sync.masking import Secret
from l1nda_sync.nmbrs.rest import grants
from l1nda_sync.nmbrs.rest.oauth import Grant
from l1nda_sync.registry import connections, db, schema, tokens
from l1nda_sync.registry.connections import ConnectionStore, Consent
from l1nda_sync.registry.crypto import TokenCipher, generate_key
from l1nda_sync.registry.errors import Conflict, InvalidInput, NotFound
from l1nda_sync.registry.grant_store import RegistryGrantStore, StaleGrant
from l1nda_sync.registry.tokens import NewToken, TokenStore

CLIENT = "PartnerApp_L1NDA_test"
USER = "6f1c7d9e-0b3a-4c52-9a8e-2d4f6b8a0c11"


@pytest.fixture
def conn(registry_url: str) -> Iterator[db.Connection]:
    c = db.connect(registry_url)
    yield c
    c.close()


@pytest.fixture
def store() -> ConnectionStore:
    return ConnectionStore(TokenCipher([generate_key()]))


def grant(n: int = 1, *, expires_in: float = 3600) -> Grant:
    return Grant(Secret(f"access-{n}-{uuid.uuid4().hex}"), datetime.now(UTC) + timedelta(seconds=expires_in),
                 Secret(f"refresh-{n}-{uuid.uuid4().hex}"), ("offline_access", "company.info.read"))


def start(store: ConnectionStore, conn: db.Connection, state: str = "state-1", **kw: str) -> None:
    with db.transaction(conn):
        store.start(conn, customer_ref=kw.get("customer", "cust-graaf"), contact=kw.get("contact", "jan@graaf.nl"),
                    language="nl", label=kw.get("label"), state=state, code_verifier="verifier-" + state,
                    actor="test")


def connect_user(store: ConnectionStore, conn: db.Connection, state: str, the_grant: Grant, *, user: str = USER,
                 email: str = "Salaris@Graaf.NL", **kw: str) -> connections.SavedConnection:
    start(store, conn, state, **kw)
    with db.transaction(conn):
        auth = store.take_authorization(conn, state)
        return store.save_connection(conn, auth, Consent(CLIENT, user, email, (str(uuid.uuid4()),), the_grant),
                                     actor="test")


def one(conn: db.Connection, sql: str, *args: object) -> object:
    with db.reading(conn) as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0]


# -- migration ----------------------------------------------------------------------------------------------------


def test_0007_keeps_every_token_check_and_link_of_a_registry_at_0006(database_url: str) -> None:
    conn = db.connect(database_url)
    try:
        schema.upgrade(conn, target=6)
        soap = TokenStore(TokenCipher([generate_key()]))
        with db.transaction(conn) as cur:  # as the code of 0006 wrote it (this code reads `kind`)
            cur.execute("""INSERT INTO tokens (label, level, username, token_ciphertext, token_hint, fingerprint,
                                               contact_emails)
                           VALUES ('Acme', 'accountant', 'a@acme.nl', %s, '…d015', 'fp', '{c@acme.nl}')
                           RETURNING id""", (soap.cipher.encrypt("9f86d081884c7d659a2feaa0c55ad015"),))
            token_id = cur.fetchone()[0]
            cur.execute("INSERT INTO token_events (token_id, actor, action) VALUES (%s, 'test', 'added')", (token_id,))
            cur.execute("INSERT INTO checks (token_id, outcome) VALUES (%s, 'valid')", (token_id,))
            cur.execute("INSERT INTO reach_companies (token_id, company_id, number) VALUES (%s, 50101, 101)",
                        (token_id,))
            cur.execute("""INSERT INTO links (customer_ref, company_id, state, token_id, activated_at)
                           VALUES ('CUST', 50101, 'active', %s, now())""", (token_id,))
            cur.execute("INSERT INTO problems (token_id, kind) VALUES (%s, 'revoked')", (token_id,))
            cur.execute("SELECT t::text FROM tokens t")
            before = cur.fetchall()
        assert [m.version for m in schema.upgrade(conn, target=7)] == [7]
        with db.reading(conn) as cur:
            cur.execute("SELECT t::text FROM tokens t")
            after = cur.fetchall()
            cur.execute("SELECT kind FROM tokens")
            assert cur.fetchall() == [("soap_token",)]
            for table in ("checks", "reach_companies", "links", "problems", "token_events"):
                cur.execute(f"SELECT count(*) FROM {table}")
                assert cur.fetchone()[0] >= 1, table
            cur.execute("SELECT count(*) FROM problem_kinds WHERE kind = 'consent_revoked'")
            assert cur.fetchone()[0] == 1
        assert [r[0].rsplit(",", 1)[0] + ")" for r in after] == [r[0] for r in before]  # only kind was appended
        assert soap.reveal(conn, token_id).reveal() == "9f86d081884c7d659a2feaa0c55ad015"
        assert tokens.get_token(conn, token_id).kind == "soap_token"
        with db.transaction(conn) as cur, pytest.raises(Exception, match="tokens_live_has_secret"):
            cur.execute("UPDATE tokens SET token_ciphertext = NULL WHERE id = %s", (token_id,))
    finally:
        conn.close()


def test_the_key_sequences_start_where_the_design_says(conn: db.Connection) -> None:
    assert one(conn, "SELECT nextval('rest_only_keys')") == 2_000_000_000
    assert one(conn, "SELECT -nextval('rest_unmatched_keys')") == -1


# -- started consents ---------------------------------------------------------------------------------------------


def test_start_keeps_only_the_state_hash_and_an_encrypted_verifier(conn: db.Connection, store: ConnectionStore
                                                                    ) -> None:
    start(store, conn, "the-state-plaintext")
    with db.reading(conn) as cur:
        cur.execute("SELECT r::text, customer_ref, expires_at - created_at FROM rest_authorizations r")
        text, ref, ttl = cur.fetchone()
    assert "the-state-plaintext" not in text
    assert "verifier-the-state" not in text
    assert connections.state_hash("the-state-plaintext") in text
    assert (ref, ttl) == ("CUST-GRAAF", timedelta(days=1))
    with db.transaction(conn):
        auth = store.take_authorization(conn, "the-state-plaintext")
    assert auth.code_verifier.reveal() == "verifier-the-state-plaintext"
    assert "verifier" not in repr(auth)


def test_a_consent_is_taken_once_and_a_rollback_gives_it_back(conn: db.Connection, store: ConnectionStore) -> None:
    start(store, conn, "s1")
    def taken_then_failed() -> None:
        with db.transaction(conn):
            store.take_authorization(conn, "s1")
            raise RuntimeError("the exchange failed")

    with pytest.raises(RuntimeError):
        taken_then_failed()
    with db.transaction(conn):
        store.take_authorization(conn, "s1")
    with pytest.raises(Conflict, match="finished already") as used, db.transaction(conn):
        store.take_authorization(conn, "s1")
    assert used.value.field == "--callback-url"
    with pytest.raises(InvalidInput, match="matches no consent"), db.transaction(conn):
        store.take_authorization(conn, "never-started")


def test_an_expired_consent_says_so(conn: db.Connection, store: ConnectionStore) -> None:
    start(store, conn, "old")
    with db.transaction(conn) as cur:
        cur.execute("UPDATE rest_authorizations SET created_at = now() - interval '2 days', "
                    "expires_at = now() - interval '1 day'")
    with pytest.raises(InvalidInput, match=r"expired at .* connections start"), db.transaction(conn):
        store.take_authorization(conn, "old")
    assert one(conn, "SELECT used_at FROM rest_authorizations") is None


def test_start_refuses_bad_input_naming_the_option(conn: db.Connection, store: ConnectionStore) -> None:
    with pytest.raises(InvalidInput) as bad, db.transaction(conn):
        store.start(conn, customer_ref="CUST", contact="no-address", language="en", label=None, state="s",
                    code_verifier="v", actor="t")
    assert bad.value.field == "--contact"
    assert one(conn, "SELECT count(*) FROM rest_authorizations") == 0


# -- connections ----------------------------------------------------------------------------------------------------


def test_a_connection_is_a_debtor_level_token_of_kind_rest_with_its_secrets_encrypted_beside_it(
        conn: db.Connection, store: ConnectionStore) -> None:
    first = grant()
    saved = connect_user(store, conn, "s1", first)
    c = saved.connection
    assert not saved.replaced
    assert (c.token.kind, c.token.level, c.token.username, c.token.label, c.token.state) == (
        "rest_connection", "debtor", "Salaris@graaf.nl", "CUST-GRAAF", "new")
    assert c.token.contact_emails == ("jan@graaf.nl",)
    assert c.token.contact_language == "nl"
    assert c.token.token_hint == "…" + first.refresh_token.reveal()[-4:]
    assert (c.customer_ref, c.user_id, c.scopes, c.generation) == ("CUST-GRAAF", USER, first.scopes, 0)
    assert one(conn, "SELECT token_ciphertext FROM tokens") is None
    assert one(conn, "SELECT token_id FROM rest_authorizations") == c.id
    with db.reading(conn) as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        dump = []
        for (table,) in cur.fetchall():
            cur.execute(f"SELECT t::text FROM {table} t")
            dump += [r[0] for r in cur.fetchall()]
    text = "\n".join(dump)
    for secret in (first.refresh_token.reveal(), first.access_token.reveal(), "verifier-s1"):
        assert secret not in text
    stored = RegistryGrantStore(lambda: db.connect(conn.dsn), store.cipher).load(c.id)
    assert (stored.refresh_token, stored.access_token) == (first.refresh_token, first.access_token)
    assert [t.kind for t in tokens.list_tokens(conn)] == ["rest_connection"]
    assert tokens.list_tokens(conn, kind="soap_token") == []


def test_the_same_user_consenting_again_renews_the_connection(conn: db.Connection, store: ConnectionStore) -> None:
    first = connect_user(store, conn, "s1", grant(1)).connection
    with db.transaction(conn) as cur:
        cur.execute("UPDATE tokens SET state = 'revoked' WHERE id = %s", (first.id,))
        cur.execute("INSERT INTO checks (token_id, outcome, probe) VALUES (%s, 'consent_revoked', '{}')", (first.id,))
    second_grant = grant(2)
    again = connect_user(store, conn, "s2", second_grant, email="salaris@graaf.nl")
    assert again.replaced
    assert again.before == "revoked"
    c = again.connection
    assert (c.id, c.token.state, c.generation, c.token.label) == (first.id, "new", 1, "CUST-GRAAF")
    assert c.token.replaced_at is not None
    assert one(conn, "SELECT count(*) FROM tokens") == 1
    assert one(conn, "SELECT count(*) FROM checks WHERE applied_at IS NULL") == 0  # voided as tokens replace does
    stored = RegistryGrantStore(lambda: db.connect(conn.dsn), store.cipher).load(c.id)
    assert stored.refresh_token == second_grant.refresh_token
    assert one(conn, "SELECT array_agg(action ORDER BY id) FROM token_events") == ["added", "replaced"]
    other = connect_user(store, conn, "s3", grant(3), user=str(uuid.uuid4()), email="hr@graaf.nl")
    assert not other.replaced
    assert other.connection.token.label == "CUST-GRAAF (hr@graaf.nl)"


def test_remove_erases_the_secrets_and_keeps_the_history(conn: db.Connection, store: ConnectionStore) -> None:
    c = connect_user(store, conn, "s1", grant()).connection
    with db.transaction(conn):
        change = connections.remove(conn, c.id, actor="test", reason="customer left")
    assert change.changed
    assert change.token.state == "removed"
    with db.reading(conn) as cur:
        cur.execute("SELECT refresh_ciphertext, access_ciphertext FROM rest_connections")
        assert cur.fetchall() == [(None, None)]
    assert connections.list_connections(conn) == []
    assert [x.id for x in connections.list_connections(conn, include_removed=True)] == [c.id]
    with pytest.raises(NotFound):
        RegistryGrantStore(lambda: db.connect(conn.dsn), store.cipher).load(c.id)
    again = connect_user(store, conn, "s2", grant(2)).connection  # consenting again after removal: a new one
    assert again.id != c.id
    assert again.token.label == "CUST-GRAAF"


def test_a_soap_token_is_not_a_connection_and_a_connection_has_no_token_to_replace(
        conn: db.Connection, store: ConnectionStore) -> None:
    c = connect_user(store, conn, "s1", grant()).connection
    soap = TokenStore(store.cipher)
    with pytest.raises(Conflict, match="REST connection"), db.transaction(conn):
        soap.replace(conn, c.id, Secret("9f86d081884c7d659a2feaa0c55ad015"), actor="t")
    with pytest.raises(Conflict, match="REST connection"):
        soap.reveal(conn, c.id)
    with db.transaction(conn):
        t = soap.add(conn, NewToken.validate(label="Soap", level="debtor", username="s@x.nl",
                                             token="9f86d081884c7d659a2feaa0c55ad015", contacts=["c@x.nl"]),
                     actor="t")
    with pytest.raises(NotFound), db.transaction(conn):
        connections.remove(conn, t.id, actor="t")


# -- the grant store ----------------------------------------------------------------------------------------------


def test_save_commits_at_once_and_refuses_a_stale_generation(conn: db.Connection, store: ConnectionStore) -> None:
    c = connect_user(store, conn, "s1", grant()).connection
    grant_store = RegistryGrantStore(lambda: db.connect(conn.dsn), store.cipher)
    rotated = grant(2)
    with db.transaction(conn) as cur:  # a caller's open transaction elsewhere does not hold the save back
        cur.execute("SELECT 1")
        grant_store.save(c.id, rotated, 1)
        assert grant_store.load(c.id).generation == 1
    with pytest.raises(StaleGrant):
        grant_store.save(c.id, grant(3), 1)
    kept = grant_store.load(c.id)
    assert (kept.refresh_token, kept.generation) == (rotated.refresh_token, 1)
    no_refresh = Grant(Secret("access-only"), datetime.now(UTC), None, ())
    grant_store.save(c.id, no_refresh, 2)
    after = grant_store.load(c.id)
    assert (after.refresh_token, after.access_token) == (rotated.refresh_token, Secret("access-only"))
    assert connections.get_connection(conn, c.id).scopes == rotated.scopes  # no scope in the answer: kept


def test_the_row_lock_serialises_two_refreshers(conn: db.Connection, store: ConnectionStore) -> None:
    c = connect_user(store, conn, "s1", grant()).connection
    grant_store = RegistryGrantStore(lambda: db.connect(conn.dsn), store.cipher)
    first_holds, second_in = threading.Event(), threading.Event()
    seen: list[int] = []
    rotated = grant(2)

    def first() -> None:
        with grant_store.locked(c.id) as row:
            first_holds.set()
            time.sleep(0.8)
            grant_store.save(c.id, rotated, row.generation + 1)

    def second() -> None:
        first_holds.wait(5)
        with grant_store.locked(c.id) as row:
            second_in.set()
            seen.append(row.generation)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    assert first_holds.wait(5)
    assert not second_in.wait(0.5)  # waits on the row lock
    for t in threads:
        t.join(10)
    assert seen == [1]  # it got the row only after the save, and saw the rotation


def test_two_workers_needing_a_fresh_access_token_refresh_once(conn: db.Connection, store: ConnectionStore) -> None:
    """grants.access_token over RegistryGrantStore, two threads, each with its own PostgreSQL connections."""
    c = connect_user(store, conn, "s1", grant(expires_in=10)).connection  # less than a minute left: refresh
    grant_store = RegistryGrantStore(lambda: db.connect(conn.dsn), store.cipher)
    refreshes: list[str] = []
    rotated = grant(2)

    def refresher(app: object, refresh_token: Secret, *, now: datetime) -> Grant:
        refreshes.append(refresh_token.reveal())
        time.sleep(0.5)
        return rotated

    got: list[Secret] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        barrier.wait()
        got.append(grants.access_token(None, grant_store, c.id, now=datetime.now(UTC),  # type: ignore[arg-type]
                                       refresher=refresher))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(refreshes) == 1
    assert got == [rotated.access_token, rotated.access_token]
    assert grant_store.load(c.id).generation == 1


def test_keys_rotate_reencrypts_rest_secrets_and_keys_check_sees_them(conn: db.Connection) -> None:
    old_key, new_key = generate_key(), generate_key()
    old = ConnectionStore(TokenCipher([old_key]))
    first = grant()
    c = connect_user(old, conn, "s1", first).connection
    start(old, conn, "open-consent")
    assert TokenStore(TokenCipher([new_key])).key_report(conn).unreadable == (c.id,)
    both = TokenStore(TokenCipher([new_key, old_key]))
    assert both.key_report(conn).reads == ((), (c.id,))
    with db.transaction(conn):
        both.rotate(conn, actor="test")
    newest = TokenCipher([new_key])
    stored = RegistryGrantStore(lambda: db.connect(conn.dsn), newest).load(c.id)
    assert (stored.refresh_token, stored.access_token) == (first.refresh_token, first.access_token)
    with db.transaction(conn):
        assert ConnectionStore(newest).take_authorization(conn, "open-consent").code_verifier.reveal() == (
            "verifier-open-consent")
    assert TokenStore(newest).key_report(conn).ok


# -- a refresh whose answer is lost; lock and idle time-outs (review of issue 18) ----------------------------------


def test_a_lost_refresh_answer_is_marked_and_the_next_invalid_grant_is_l1ndas_loss(
        conn: db.Connection, store: ConnectionStore) -> None:
    from l1nda_sync.nmbrs.errors import ConsentRevoked, InvalidGrant, TransientError
    from l1nda_sync.nmbrs.rest.grants import GrantLost

    c = connect_user(store, conn, "s1", grant(expires_in=10)).connection
    grant_store = RegistryGrantStore(lambda: db.connect(conn.dsn), store.cipher)

    def lost(app: object, refresh_token: Secret, *, now: datetime) -> Grant:
        raise TransientError("Identity.refresh: no answer in time")  # the server may have rotated it

    def spent(app: object, refresh_token: Secret, *, now: datetime) -> Grant:
        raise InvalidGrant("Identity.refresh: invalid_grant", error="invalid_grant", description="used already")

    with pytest.raises(TransientError):
        grants.access_token(None, grant_store, c.id, now=datetime.now(UTC), refresher=lost)  # type: ignore[arg-type]
    row = grant_store.load(c.id)
    assert (row.generation, row.refresh_in_flight) == (0, 0)  # committed although the lock's transaction rolled back
    assert one(conn, "SELECT refresh_started_at IS NOT NULL FROM rest_connections WHERE token_id = %s", c.id)
    with pytest.raises(GrantLost) as caught:
        grants.access_token(None, grant_store, c.id, now=datetime.now(UTC), refresher=spent)  # type: ignore[arg-type]
    assert isinstance(caught.value, ConsentRevoked)
    assert caught.value.outcome == "consent_revoked"
    # a saved refresh clears the marker: a later invalid_grant is the customer's again
    grant_store.save(c.id, grant(2, expires_in=10), 1)
    assert grant_store.load(c.id).refresh_in_flight is None
    with pytest.raises(ConsentRevoked) as withdrawn:
        grants.access_token(None, grant_store, c.id, now=datetime.now(UTC), refresher=spent)  # type: ignore[arg-type]
    assert not isinstance(withdrawn.value, GrantLost)
    # a refresh that never left (no connection opened) clears its marker: a later invalid_grant is the customer's
    grant_store.save(c.id, grant(3, expires_in=10), 2)

    def unreachable(app: object, refresh_token: Secret, *, now: datetime) -> Grant:
        error = TransientError("Identity.refresh: ConnectionError")
        error.unsent = True  # type: ignore[attr-defined]
        raise error

    with pytest.raises(TransientError):
        grants.access_token(None, grant_store, c.id, now=datetime.now(UTC), refresher=unreachable)  # type: ignore[arg-type]
    assert grant_store.load(c.id).refresh_in_flight is None
    assert one(conn, "SELECT refresh_started_at IS NULL FROM rest_connections WHERE token_id = %s", c.id)
    with pytest.raises(ConsentRevoked) as after_unsent:
        grants.access_token(None, grant_store, c.id, now=datetime.now(UTC), refresher=spent)  # type: ignore[arg-type]
    assert not isinstance(after_unsent.value, GrantLost)


def test_a_save_whose_held_connection_broke_is_retried_once_on_a_fresh_one(
        conn: db.Connection, store: ConnectionStore) -> None:
    c = connect_user(store, conn, "s1", grant(expires_in=10)).connection
    grant_store = RegistryGrantStore(lambda: db.connect(conn.dsn), store.cipher)
    rotated = grant(2)

    def refresher(app: object, refresh_token: Secret, *, now: datetime) -> Grant:
        (held,) = grant_store._held.values()
        with db.transaction(conn) as cur:  # the server drops the lock's connection while Nmbrs answers
            cur.execute("SELECT pg_terminate_backend(%s)", (held.get_backend_pid(),))
        time.sleep(0.2)
        return rotated

    token = grants.access_token(None, grant_store, c.id, now=datetime.now(UTC),  # type: ignore[arg-type]
                                refresher=refresher)
    assert token == rotated.access_token
    row = grant_store.load(c.id)
    assert (row.generation, row.refresh_token, row.refresh_in_flight) == (1, rotated.refresh_token, None)


def test_waiting_for_another_refresh_is_bounded_by_the_lock_timeout(
        conn: db.Connection, store: ConnectionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from l1nda_sync.nmbrs.errors import TransientError
    from l1nda_sync.registry import grant_store as module

    c = connect_user(store, conn, "s1", grant()).connection
    grant_store = RegistryGrantStore(lambda: db.connect(conn.dsn), store.cipher)
    monkeypatch.setattr(module, "LOCK_TIMEOUT", "300ms")
    holds, done = threading.Event(), threading.Event()

    def holder() -> None:
        with grant_store.locked(c.id):
            holds.set()
            done.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert holds.wait(5)
        began = time.monotonic()
        with pytest.raises(TransientError, match="lock"), grant_store.locked(c.id):
            pass
        assert time.monotonic() - began < 5
    finally:
        done.set()
        thread.join(10)


def test_the_lock_s_transaction_has_an_idle_timeout_and_its_connection_keepalives(
        conn: db.Connection, store: ConnectionStore) -> None:
    import socket

    c = connect_user(store, conn, "s1", grant()).connection
    grant_store = RegistryGrantStore(lambda: db.connect(conn.dsn), store.cipher)
    with grant_store.locked(c.id):
        (held,) = grant_store._held.values()
        with held.cursor() as cur:
            cur.execute("SHOW idle_in_transaction_session_timeout")
            assert cur.fetchone()[0] == "150s"
            cur.execute("SHOW lock_timeout")
            assert cur.fetchone()[0] == "90s"
        sock = socket.socket(fileno=__import__("os").dup(held.fileno()))
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        finally:
            sock.close()


def test_the_alerts_see_a_confirmed_connection_whose_token_l1nda_lost(conn: db.Connection,
                                                                       store: ConnectionStore) -> None:
    from l1nda_sync.alerts.hooks import grant_lost
    from l1nda_sync.engine.token_state import TokenState

    c = connect_user(store, conn, "s1", grant()).connection
    grant_store = RegistryGrantStore(lambda: db.connect(conn.dsn), store.cipher)
    with db.reading(conn) as cur:
        assert not grant_lost(cur, c.id, TokenState.REVOKED)
    grant_store.begin_refresh(c.id, 0)
    with db.reading(conn) as cur:
        assert grant_lost(cur, c.id, TokenState.REVOKED)
        assert grant_lost(cur, c.id, TokenState.REJECTED)
        assert not grant_lost(cur, c.id, TokenState.INVALID)  # suspected: not mailed, nothing to say yet
    grant_store.save(c.id, grant(2), 1)
    with db.reading(conn) as cur:
        assert not grant_lost(cur, c.id, TokenState.REVOKED)


def test_load_reuses_an_idle_connection_and_replaces_a_broken_one(conn: db.Connection, store: ConnectionStore) -> None:
    """A check reads its connection's grant once: opening a PostgreSQL connection for each read cost more than the
    read (a server process per connection). Reads reuse idle connections; close() ends them."""
    c = connect_user(store, conn, "s1", grant()).connection
    opened: list[db.Connection] = []

    def connect() -> db.Connection:
        opened.append(db.connect(conn.dsn))
        return opened[-1]

    grant_store = RegistryGrantStore(connect, store.cipher)
    assert [grant_store.load(c.id).generation for _ in range(3)] == [0, 0, 0]
    assert len(opened) == 1
    opened[0].close()  # the server ended it (a restart, an idle timeout)
    assert grant_store.load(c.id).generation == 0
    assert len(opened) == 2
    with pytest.raises(NotFound):
        grant_store.load(c.id + 1000)
    assert opened[1].closed, "a connection whose read failed is not kept"
    grant_store.load(c.id)
    with conn.cursor() as cur:  # the server ends the idle connection: the next read opens a new one, no error
        cur.execute("SELECT pg_terminate_backend(%s)", (opened[2].get_backend_pid(),))
    conn.commit()
    assert grant_store.load(c.id).generation == 0
    assert len(opened) == 4
    grant_store.close()
    assert all(o.closed for o in opened)


def test_a_store_opens_a_bounded_number_of_connections_however_many_refresh_at_once(
        conn: db.Connection, store: ConnectionStore) -> None:
    """Every access token expired at once (after an outage, a deploy): 3 x MAX_REFRESHES threads refresh
    different connections. At most MAX_REFRESHES refreshes run at once, the store never holds more than
    MAX_READERS + 2 x MAX_REFRESHES PostgreSQL connections, and every thread gets its new access token."""
    from l1nda_sync.registry import grant_store as module

    many = 3 * module.MAX_REFRESHES
    ids = [connect_user(store, conn, f"s{n}", grant(n, expires_in=10), user=str(uuid.uuid4()),
                        email=f"user{n}@graaf.nl").connection.id for n in range(many)]
    guard = threading.Lock()
    open_now, peak_open = [0], [0]
    refreshing, peak_refreshing = [0], [0]
    released = threading.Event()

    class Counted:
        def __init__(self) -> None:
            self.inner = db.connect(conn.dsn)
            with guard:
                open_now[0] += 1
                peak_open[0] = max(peak_open[0], open_now[0])

        def close(self) -> None:
            if not self.inner.closed:
                with guard:
                    open_now[0] -= 1
            self.inner.close()

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        def __enter__(self) -> object:
            return self.inner.__enter__()

        def __exit__(self, *exc: object) -> object:
            return self.inner.__exit__(*exc)

    def refresher(app: object, refresh_token: Secret, *, now: datetime) -> Grant:
        with guard:
            refreshing[0] += 1
            peak_refreshing[0] = max(peak_refreshing[0], refreshing[0])
            if peak_refreshing[0] >= module.MAX_REFRESHES:
                released.set()
        released.wait(timeout=30)  # the first refreshes answer once as many run at once as the store allows
        with guard:
            refreshing[0] -= 1
        return grant(99)

    grant_store = RegistryGrantStore(Counted, store.cipher)  # type: ignore[arg-type]
    results: list[str] = []

    def worker(connection_id: int) -> None:
        token = grants.access_token(None, grant_store, connection_id, now=datetime.now(UTC),  # type: ignore[arg-type]
                                    refresher=refresher)
        with guard:
            results.append(token.reveal())

    threads = [threading.Thread(target=worker, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    grant_store.close()
    assert len(results) == many
    assert all(r.startswith("access-99-") for r in results)
    assert peak_refreshing[0] == module.MAX_REFRESHES
    assert peak_open[0] <= module.MAX_READERS + 2 * module.MAX_REFRESHES
    assert open_now[0] == 0
