"""REST connections in the registry: started consents, the connections they make, and their secrets.

A REST connection is a `tokens` row of kind 'rest_connection' (so checks, reach, links, problems and the DAG
work for it unchanged) plus a `rest_connections` row with its secrets: the refresh token and the cached access
token, Fernet-encrypted under the registry's keys (`TokenCipher`), never in `tokens.token_ciphertext`.

`connections start` stores a `rest_authorizations` row: the OAuth2 `state` only as its SHA-256 hash, the PKCE
verifier encrypted, expiring after `rest_authorization_ttl`. Its callback takes it once (`take_authorization`)
and saves the connection (`save_connection`) in the same transaction, so a finish that fails at any step writes
nothing. One user consenting twice to the same app is one connection: the fingerprint is an HMAC of
`rest:<client id>:<user id>` under the registry's fingerprint key, and the second consent replaces the first.

Like `registry.tokens`, functions take a psycopg2 connection and leave the transaction to the caller. The
refresh tokens' rotation (`RegistryGrantStore`) is the exception: it commits on connections of its own.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from l1nda_sync.masking import Secret, mask
from l1nda_sync.registry import locks, tokens
from l1nda_sync.registry import validation as v
from l1nda_sync.registry.crypto import TokenCipher
from l1nda_sync.registry.db import fetch_one, reading
from l1nda_sync.registry.errors import Conflict, InvalidInput, NotFound
from l1nda_sync.registry.tokens import COLUMNS, StateChange, Token, TokenStore

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor

    from l1nda_sync.nmbrs.rest.oauth import Grant
    from l1nda_sync.settings import Settings

KIND = "rest_connection"
DEFAULT_AUTHORIZATION_TTL = 86400.0  # seconds; the setting rest_authorization_ttl
CALLBACK_FIELD = "--callback-url"
START_AGAIN = "start a new consent with `l1nda-sync connections start` and send the customer the new link"


def state_hash(state: str) -> str:
    """What the registry keeps of an OAuth2 `state`: its SHA-256, hex."""
    plain = state.reveal() if isinstance(state, Secret) else state
    return hashlib.sha256(plain.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class StartedAuthorization:
    """A consent started by `connections start` (the state and verifier themselves are the caller's)."""

    id: int
    customer_ref: str
    contact: str
    language: str
    label: str | None
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Authorization:
    """A started consent taken by its callback: with the PKCE verifier, to exchange the code."""

    id: int
    customer_ref: str
    contact: str
    language: str
    label: str | None
    created_at: datetime
    expires_at: datetime
    code_verifier: Secret = field(repr=False)


@dataclass(frozen=True, slots=True)
class Consent:
    """What a finished consent established: who consented to which app, what it covers, its first grant."""

    client_id: str
    user_id: str  # the Nmbrs user's UUID
    user_email: str
    debtor_ids: tuple[str, ...]  # the REST debtor UUIDs the probe found
    grant: Grant = field(repr=False)


@dataclass(frozen=True, slots=True)
class RestConnection:
    """A REST connection as people see it: its tokens row and what the consent covers; never a secret."""

    token: Token
    customer_ref: str
    user_id: str
    user_email: str
    scopes: tuple[str, ...]
    debtor_ids: tuple[str, ...]
    access_expires_at: datetime | None
    generation: int
    refreshed_at: datetime | None
    created_at: datetime

    @property
    def id(self) -> int:
        return self.token.id


@dataclass(frozen=True, slots=True)
class SavedConnection:
    """The connection a callback saved; `replaced` when the same user's earlier connection was renewed."""

    connection: RestConnection
    replaced: bool
    before: str | None  # the replaced connection's state


_REST_COLUMNS = ("r.customer_ref, r.user_id::text, r.user_email, r.scopes, r.debtor_ids::text[], r.access_expires_at, "
                 "r.generation, r.refreshed_at, r.created_at")
_TOKEN_COLUMNS = ", ".join(f"t.{c.strip()}" for c in COLUMNS.split(","))
_SELECT = f"SELECT {_TOKEN_COLUMNS}, {_REST_COLUMNS} FROM tokens t JOIN rest_connections r ON r.token_id = t.id"
_TOKEN_WIDTH = len(COLUMNS.split(","))


def _connection(row: tuple[Any, ...]) -> RestConnection:
    token = Token.from_row(row[:_TOKEN_WIDTH])
    ref, user_id, email, scopes, debtors, expires, generation, refreshed, created = row[_TOKEN_WIDTH:]
    return RestConnection(token, ref, user_id, email, tuple(scopes or ()), tuple(debtors or ()), expires,
                          int(generation), refreshed, created)


def fetch_connection(cur: Cursor, token_id: int, *, for_update: bool = False) -> RestConnection:
    cur.execute(f"{_SELECT} WHERE t.id = %s" + (" FOR UPDATE OF t, r" if for_update else ""), (token_id,))
    row = cur.fetchone()
    if row is None:
        raise NotFound("ID", f"no REST connection with id {token_id}; see `l1nda-sync connections list`")
    return _connection(row)


def get_connection(conn: Connection, token_id: int) -> RestConnection:
    """The connection with that id (removed ones too); NotFound naming the id and how to list them."""
    with reading(conn) as cur:
        return fetch_connection(cur, token_id)


def list_connections(conn: Connection, *, include_removed: bool = False,
                     customer_ref: str | None = None) -> list[RestConnection]:
    where = ["t.kind = %s"]
    args: list[object] = [KIND]
    if not include_removed:
        where.append("t.removed_at IS NULL")
    if customer_ref is not None:
        where.append("r.customer_ref = %s")
        args.append(customer_ref)
    with reading(conn) as cur:
        cur.execute(f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY t.id", args)
        return [_connection(r) for r in cur.fetchall()]


def remove(conn: Connection, token_id: int, *, actor: str, reason: str | None = None) -> StateChange:
    """Retire a connection as `tokens remove` retires a token; its refresh and access tokens are erased too."""
    with reading(conn) as cur:
        fetch_connection(cur, token_id)  # NotFound for a SOAP token's id
    return tokens.remove(conn, token_id, actor=actor, reason=reason)


class ConnectionStore:
    """The operations that need the encryption keys: start and take consents, save connections."""

    def __init__(self, cipher: TokenCipher, *, authorization_ttl: float = DEFAULT_AUTHORIZATION_TTL) -> None:
        if authorization_ttl <= 0:
            raise ValueError("authorization_ttl must be positive")
        self.cipher = cipher
        self.authorization_ttl = authorization_ttl

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionStore:
        return cls(TokenCipher.from_settings(settings), authorization_ttl=settings.rest_authorization_ttl)

    # -- a started consent -----------------------------------------------------------------------------------
    def start(self, conn: Connection, *, customer_ref: str, contact: str, language: str | None, label: str | None,
              state: str, code_verifier: str, actor: str) -> StartedAuthorization:
        """Remember a consent about to be sent to the customer. Validates the operator's input (InvalidInput
        naming the option); a label another live token has is refused now rather than at the callback."""
        ref = v.customer_ref(customer_ref)
        address = v.email(contact, "--contact")
        lang = v.language(language)
        chosen = v.label(label) if label is not None else None
        with conn.cursor() as cur:
            if chosen is not None:
                taken = tokens.label_taken(cur, chosen)
                if taken is not None:
                    raise Conflict("--label", f"{chosen!r} is already the label of token {taken}; choose another "
                                              "label (see `l1nda-sync tokens list`)")
            cur.execute(
                """INSERT INTO rest_authorizations (state_hash, verifier_ciphertext, customer_ref, contact, language,
                                                    label, expires_at)
                   VALUES (%s, %s, %s, %s, %s, %s, now() + make_interval(secs => %s))
                   RETURNING id, customer_ref, contact, language, label, created_at, expires_at""",
                (state_hash(state), self.cipher.encrypt(code_verifier), ref, address, lang, chosen,
                 self.authorization_ttl),
            )
            started = StartedAuthorization(*fetch_one(cur))
        return started

    def take_authorization(self, conn: Connection, state: str | None) -> Authorization:
        """The started consent whose `state` came back, marked used (in the caller's transaction: roll back and
        it is unused again). Unknown, used or expired: InvalidInput naming --callback-url and what to do."""
        if not state:
            raise InvalidInput(CALLBACK_FIELD, "has no state parameter: copy the whole address the browser was sent "
                                               "to after the consent")
        with conn.cursor() as cur:
            cur.execute(
                """SELECT id, customer_ref, contact, language, label, created_at, expires_at, verifier_ciphertext,
                          used_at, token_id, expires_at <= now()
                   FROM rest_authorizations WHERE state_hash = %s FOR UPDATE""",
                (state_hash(state),),
            )
            row = cur.fetchone()
            if row is None:
                raise InvalidInput(CALLBACK_FIELD, "its state matches no consent started here (a different "
                                                   "deployment, or a changed link?); " + START_AGAIN)
            head, (ciphertext, used_at, token_id, expired) = row[:7], row[7:]
            if used_at is not None:
                made = f" (it made connection {token_id})" if token_id is not None else ""
                raise Conflict(CALLBACK_FIELD, f"this consent was finished already on "
                                               f"{used_at:%Y-%m-%d %H:%M} UTC{made}; a callback is used once. "
                                               "If the customer consented again, use the newest callback URL")
            if expired:
                raise InvalidInput(CALLBACK_FIELD, f"this consent expired at {head[6]:%Y-%m-%d %H:%M} UTC (it "
                                                   f"is valid {self.authorization_ttl / 3600:g} h); " + START_AGAIN)
            cur.execute("UPDATE rest_authorizations SET used_at = now(), verifier_ciphertext = NULL WHERE id = %s",
                        (head[0],))
        auth_id, ref, contact, language, label, created_at, expires_at = head
        return Authorization(auth_id, ref, contact, language, label, created_at, expires_at,
                             self.cipher.decrypt(ciphertext))

    # -- the connection a callback makes ---------------------------------------------------------------------
    def fingerprint(self, cur: Cursor, client_id: str, user_id: str) -> str:
        """HMAC-SHA256 of 'rest:<client id>:<user id>' under the registry's fingerprint key (made when missing;
        the caller holds locks.lock_token_writes)."""
        key = TokenStore(self.cipher).stable_key(cur, create=True)
        assert key is not None  # create=True makes it
        message = f"rest:{client_id}:{user_id.strip().lower()}".encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    def save_connection(self, conn: Connection, authorization: Authorization, consent: Consent, *,
                        actor: str) -> SavedConnection:
        """Store the connection a consent made, or renew the same user's connection to the same app (new secrets,
        state 'new', due now, pending checks voided: what `tokens replace` does). Marks the authorization's
        connection. In the caller's transaction."""
        grant = consent.grant
        if grant.refresh_token is None:
            raise InvalidInput(CALLBACK_FIELD, "the consent granted no refresh token (scope offline_access was "
                                               "not granted); ask the customer to consent again and allow it")
        email = v.email(consent.user_email, "user e-mail")
        with conn.cursor() as cur:
            locks.lock_token_writes(cur)
            fingerprint = self.fingerprint(cur, consent.client_id, consent.user_id)
            cur.execute(f"SELECT {COLUMNS} FROM tokens WHERE fingerprint = %s AND removed_at IS NULL FOR UPDATE",
                        (fingerprint,))
            row = cur.fetchone()
            current = None if row is None else Token.from_row(row)
            label = _choose_label(cur, authorization, email, current)
            secrets = (self.cipher.encrypt(grant.refresh_token), self.cipher.encrypt(grant.access_token),
                       grant.expires_at, list(grant.scopes), consent.user_id, email, list(consent.debtor_ids))
            if current is None:
                token_id = _insert(cur, authorization, label, email, mask(grant.refresh_token.reveal()), fingerprint,
                                   secrets, actor)
            else:
                token_id = _renew(cur, current, authorization, label, email, mask(grant.refresh_token.reveal()),
                                  secrets, actor)
            cur.execute("UPDATE rest_authorizations SET token_id = %s WHERE id = %s", (token_id, authorization.id))
            saved = fetch_connection(cur, token_id)
        return SavedConnection(saved, current is not None, None if current is None else current.state)


def _choose_label(cur: Cursor, authorization: Authorization, email: str, current: Token | None) -> str:
    """The operator's label (refused when another live token has it), else the renewed connection's own, else the
    customer ref (with the user's e-mail when a SOAP token of the customer already has that label)."""
    exclude = None if current is None else current.id
    if authorization.label is not None:
        taken = tokens.label_taken(cur, authorization.label, exclude)
        if taken is not None:
            raise Conflict("--label", f"{authorization.label!r} became the label of token {taken} after the consent "
                                      "was started; nothing was written. " + START_AGAIN + " with another --label")
        return authorization.label
    if current is not None:
        return current.label
    for candidate in (authorization.customer_ref, f"{authorization.customer_ref} ({email})"[: v.LABEL_MAX]):
        if tokens.label_taken(cur, candidate, exclude) is None:
            return candidate
    raise Conflict("--label", f"the labels {authorization.customer_ref!r} and '{authorization.customer_ref} "
                              f"({email})' are taken; nothing was written. " + START_AGAIN + " with --label")


_RESET = """state = 'new', state_since = now(), missing_operation = NULL, consecutive_invalid = 0,
            first_invalid_at = NULL, consecutive_transient = 0, first_transient_at = NULL, refusal = NULL,
            drop_since = NULL, last_outcome = NULL, next_check_at = now(), updated_at = now()"""


def _insert(cur: Cursor, authorization: Authorization, label: str, email: str, hint: str, fingerprint: str,
            secrets: tuple[Any, ...], actor: str) -> int:
    cur.execute(
        """INSERT INTO tokens (kind, label, level, username, token_hint, fingerprint, contact_emails,
                               contact_language)
           VALUES (%s, %s, 'debtor', %s, %s, %s, %s, %s) RETURNING id, state""",
        (KIND, label, email, hint, fingerprint, [authorization.contact], authorization.language),
    )
    token_id, state = fetch_one(cur)
    cur.execute(
        """INSERT INTO rest_connections (token_id, customer_ref, refresh_ciphertext, access_ciphertext,
                                         access_expires_at, scopes, user_id, user_email, debtor_ids, refreshed_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::uuid[], now())""",
        (token_id, authorization.customer_ref, *secrets),
    )
    tokens.record_event(cur, token_id, actor, "added", None, state, {
        "kind": KIND, "label": label, "customer_ref": authorization.customer_ref, "username": email,
        "contacts": [authorization.contact], "language": authorization.language, "scopes": list(secrets[3]),
        "debtors": len(secrets[6]), "authorization": authorization.id,
    })
    return int(token_id)


def _renew(cur: Cursor, current: Token, authorization: Authorization, label: str, email: str, hint: str,
           secrets: tuple[Any, ...], actor: str) -> int:
    cur.execute(
        f"""UPDATE tokens SET label = %s, username = %s, token_hint = %s, contact_emails = %s, contact_language = %s,
                replaced_at = now(), {_RESET}
            WHERE id = %s RETURNING state""",
        (label, email, hint, [authorization.contact], authorization.language, current.id),
    )
    state = fetch_one(cur)[0]
    cur.execute(
        """UPDATE rest_connections SET refresh_ciphertext = %s, access_ciphertext = %s, access_expires_at = %s,
               scopes = %s, user_id = %s, user_email = %s, debtor_ids = %s::uuid[], customer_ref = %s,
               generation = generation + 1, refreshed_at = now(), refresh_generation = NULL,
               refresh_started_at = NULL
           WHERE token_id = %s""",
        (*secrets, authorization.customer_ref, current.id),
    )
    tokens.void_pending_checks(cur, current.id, "the connection was replaced by a new consent after this check")
    tokens.record_event(cur, current.id, actor, "replaced", current.state, state, {
        "kind": KIND, "reason": "the same user consented again", "old_hint": current.token_hint, "new_hint": hint,
        "customer_ref": authorization.customer_ref, "scopes": list(secrets[3]), "debtors": len(secrets[6]),
        "authorization": authorization.id,
    })
    return current.id



def rest_ciphertexts(cur: Cursor) -> list[tuple[int, str]]:
    """(connection id, ciphertext) of every live REST secret (refresh and access tokens), for `keys check`."""
    cur.execute("""SELECT token_id, c FROM rest_connections, unnest(ARRAY[refresh_ciphertext, access_ciphertext]) c
                   WHERE c IS NOT NULL ORDER BY token_id""")
    return [(int(t), str(c)) for t, c in cur.fetchall()]


def rotate_secrets(cur: Cursor, cipher: TokenCipher) -> tuple[int, list[int]]:
    """Re-encrypt every REST secret (refresh and access tokens, open consents' verifiers) under the newest key,
    in the caller's transaction (`keys rotate`). Returns (connections rotated, connection ids no key reads); the
    caller refuses to commit when that list is not empty."""
    cur.execute("""SELECT token_id, refresh_ciphertext, access_ciphertext FROM rest_connections
                   WHERE refresh_ciphertext IS NOT NULL OR access_ciphertext IS NOT NULL
                   ORDER BY token_id FOR UPDATE""")
    rows = cur.fetchall()
    unreadable = [int(t) for t, r, a in rows if any(c is not None and not cipher.readers(c) for c in (r, a))]
    if unreadable:
        return 0, unreadable
    for token_id, refresh, access in rows:
        cur.execute("UPDATE rest_connections SET refresh_ciphertext = %s, access_ciphertext = %s WHERE token_id = %s",
                    (None if refresh is None else cipher.rotate(refresh), None if access is None else
                     cipher.rotate(access), token_id))
    cur.execute("SELECT id, verifier_ciphertext FROM rest_authorizations WHERE verifier_ciphertext IS NOT NULL "
                "FOR UPDATE")
    for auth_id, verifier in cur.fetchall():  # an unreadable verifier only spoils its own consent: dropped
        rotated = cipher.rotate(verifier) if cipher.readers(verifier) else None
        cur.execute("UPDATE rest_authorizations SET verifier_ciphertext = %s WHERE id = %s", (rotated, auth_id))
    return len(rows), []
