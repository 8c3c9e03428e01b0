"""The tokens table: registering, replacing, disabling and removing tokens, and revealing one for a call.

Functions take a psycopg2 connection and leave the transaction to the caller (`with conn:` commits or rolls
back the whole command). Writes that decide on duplicates take one advisory lock, so two operators adding the
same token at once cannot both succeed.

Fingerprints are under the registry's stable fingerprint key (`registry_keys`, see `registry.crypto`). A
registry upgraded from before it still has fingerprints under a Fernet-derived key; the first add, replace or
`keys rotate` makes the stable key and re-fingerprints every live token under it, in its own transaction and
under the write lock (refused, with nothing written, while any token cannot be decrypted). Until then duplicate
checks look for the legacy fingerprints under every configured key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from l1nda_sync.masking import Secret, mask
from l1nda_sync.registry import locks
from l1nda_sync.registry import validation as v
from l1nda_sync.registry.crypto import KEYS_VARIABLE, UNDECRYPTABLE_MESSAGE, TokenCipher, new_fingerprint_key
from l1nda_sync.registry.db import fetch_one, reading
from l1nda_sync.registry.errors import Conflict, EncryptionKeyError, NotFound
from l1nda_sync.settings import Settings

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor

FINGERPRINT_KEY_NAME = "fingerprint_key"


def id_ranges(ids: Sequence[int], limit: int = 20) -> str:
    """'1-5, 8, 10, 11' (runs of 3 or more as a range; at most `limit` groups, then '…')."""
    groups: list[str] = []
    ordered = sorted(set(ids))
    start = prev = None
    for n in [*ordered, None]:
        if n is not None and prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None and prev is not None:
            if prev - start >= 2:
                groups.append(f"{start}-{prev}")
            else:
                groups += [str(n) for n in range(start, prev + 1)]
        start = prev = n
    return ", ".join(groups[:limit]) + (" …" if len(groups) > limit else "")


def keys_cannot_read(what: str) -> str:
    """The message when the configured keys are not the ones the registry's secrets were encrypted with."""
    return (f"these keys cannot read {what}: is {KEYS_VARIABLE} this deployment's? Give it the key they were "
            f"encrypted with (an older key goes at the end of {KEYS_VARIABLE}); `l1nda-sync keys check` shows "
            "which key reads which token")

COLUMNS = (
    "id, label, level, username, token_hint, domain, contact_emails, contact_language, state, state_since, "
    "missing_operation, consecutive_invalid, consecutive_transient, last_checked_at, last_valid_at, "
    "next_check_at, notes, created_at, updated_at, replaced_at, removed_at, kind"
)
KINDS = ("soap_token", "rest_connection")


@dataclass(frozen=True, slots=True)
class Token:
    """A registered token as people see it: everything but the secret (only its masked hint)."""

    id: int
    label: str
    level: str
    username: str
    token_hint: str
    domain: str | None
    contact_emails: tuple[str, ...]
    contact_language: str
    state: str
    state_since: datetime
    missing_operation: str | None
    consecutive_invalid: int
    consecutive_transient: int
    last_checked_at: datetime | None
    last_valid_at: datetime | None
    next_check_at: datetime
    notes: str | None
    created_at: datetime
    updated_at: datetime
    replaced_at: datetime | None
    removed_at: datetime | None
    kind: str = "soap_token"  # or 'rest_connection' (its secrets in rest_connections, see registry.connections)

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Token:
        values = list(row)
        values[6] = tuple(values[6] or ())
        return cls(*values)


@dataclass(frozen=True, slots=True)
class NewToken:
    """Validated input for a new token. Build with `NewToken.validate(...)`."""

    label: str
    level: str
    username: str
    token: Secret = field(repr=False)
    contacts: tuple[str, ...]
    language: str = "en"
    domain: str | None = None
    notes: str | None = None

    @classmethod
    def validate(
        cls, *, label: str, level: str, username: str, token: str | Callable[[], str | None] | None,
        contacts: Sequence[str], language: str | None = None, domain: str | None = None, notes: str | None = None,
    ) -> NewToken:
        """Every field checked in the order the CLI shows them; the first bad one raises InvalidInput.

        `token` may be a function that reads it: it is called only after every other field passed, so an
        operator never pastes a token only to learn about a typo in the e-mail address.
        """
        return cls(  # keyword arguments are evaluated in the order written: the token last
            label=v.label(label), level=v.level(level), username=v.username(username),
            contacts=v.contacts(contacts), language=v.language(language),
            domain=v.subdomain(domain, "--domain"), notes=v.notes(notes),
            token=v.token(token() if callable(token) else token),
        )


@dataclass(frozen=True, slots=True)
class StateChange:
    """The token after a state change, the state before, and whether anything changed."""

    token: Token
    before: str
    changed: bool


@dataclass(frozen=True, slots=True)
class KeyReport:
    """What each configured key reads (`keys check`); positions count from 1 = newest, keys never shown."""

    keys: int
    reads: tuple[tuple[int, ...], ...]  # per key, the live token ids it decrypts
    unreadable: tuple[int, ...]  # live tokens no configured key decrypts
    fingerprint_key: int | None  # which key (1 = newest) opens the stable fingerprint key; None: see below
    fingerprint_key_state: str  # 'readable', 'unreadable' or 'not made yet'

    @property
    def ok(self) -> bool:
        return not self.unreadable and self.fingerprint_key_state != "unreadable"


@dataclass(frozen=True, slots=True)
class RotationReport:
    """What `keys rotate` re-encrypted."""

    tokens: int  # live tokens re-encrypted and re-fingerprinted under the newest key
    under_older_key: int  # how many of them were not yet under the newest key
    keys: int  # keys configured


def void_pending_checks(cur: Cursor, token_id: int, why: str) -> int:
    """Pending checks of a token probed what it was before (the old secret, a disabled token, a replaced
    consent): never apply them. Returns how many were voided; inside the caller's transaction.

    The engine applies only checks with applied_at NULL, so marking them applied makes them inert.
    """
    cur.execute(
        """UPDATE checks SET applied_at = now(), probe = NULL, detail = %s
           WHERE token_id = %s AND applied_at IS NULL""",
        (f"not applied: {why}", token_id),
    )
    return int(cur.rowcount)


def record_event(cur: Cursor, token_id: int, actor: str, action: str, before: str | None, after: str | None,
                 detail: dict[str, Any] | None = None) -> None:
    """One row of a token's audit trail (`token_events`): who (`actor`) did what (`action`: added, replaced,
    disabled, ...), the state before and after, and a JSON `detail`; inside the caller's transaction."""
    cur.execute(
        """INSERT INTO token_events (token_id, actor, action, from_state, to_state, detail)
           VALUES (%s, %s, %s, %s, %s, %s::jsonb)""",
        (token_id, actor, action, before, after, json.dumps(detail or {})),
    )


def fetch_token(cur: Cursor, token_id: int, *, for_update: bool = False) -> Token:
    lock = " FOR UPDATE" if for_update else ""
    cur.execute(f"SELECT {COLUMNS} FROM tokens WHERE id = %s{lock}", (token_id,))
    row = cur.fetchone()
    if row is None:
        raise NotFound("ID", f"no token with id {token_id}; see `l1nda-sync tokens list`")
    return Token.from_row(row)


def get_token(conn: Connection, token_id: int) -> Token:
    """The token with that id (removed ones too); NotFound naming the id and how to list them."""
    with reading(conn) as cur:
        return fetch_token(cur, token_id)


def list_tokens(conn: Connection, *, state: str | None = None, include_removed: bool = False,
                kind: str | None = None) -> list[Token]:
    where: list[str] = []
    args: list[object] = []
    if state is not None:
        where.append("state = %s")
        args.append(state)
    elif not include_removed:
        where.append("removed_at IS NULL")
    if kind is not None:
        where.append("kind = %s")
        args.append(kind)
    sql = f"SELECT {COLUMNS} FROM tokens" + (" WHERE " + " AND ".join(where) if where else "")
    with reading(conn) as cur:
        cur.execute(sql + " ORDER BY id", args)
        return [Token.from_row(r) for r in cur.fetchall()]


def tokens_with_login(conn: Connection, username: str, *, exclude_id: int | None = None) -> list[Token]:
    """Live tokens of the same login (a second one usually means the first was reset: use `tokens replace`)."""
    with reading(conn) as cur:
        cur.execute(
            f"""SELECT {COLUMNS} FROM tokens
                WHERE lower(username) = lower(%s) AND removed_at IS NULL AND id IS DISTINCT FROM %s ORDER BY id""",
            (username, exclude_id),
        )
        return [Token.from_row(r) for r in cur.fetchall()]


def label_taken(cur: Cursor, label: str, exclude_id: int | None = None) -> int | None:
    """The id of the live token or connection that already has `label` (case ignored), other than `exclude_id`;
    None when the label is free. Labels are unique among live credentials."""
    cur.execute(
        "SELECT id FROM tokens WHERE lower(label) = lower(%s) AND removed_at IS NULL AND id IS DISTINCT FROM %s",
        (label, exclude_id),
    )
    row = cur.fetchone()
    return None if row is None else int(row[0])


def _soap_only(token: Token, action: str) -> None:
    if token.kind != "soap_token":
        raise Conflict("ID", f"token {token.id} ({token.label}) is a REST connection and cannot be {action} here; "
                             "the customer consents again (`l1nda-sync connections start`), which replaces it")


def _live(token: Token, action: str) -> None:
    if token.removed_at is not None:
        raise Conflict("ID", f"token {token.id} ({token.label}) was removed and cannot be {action}; "
                             "register the token again with `l1nda-sync tokens add`")


class TokenStore:
    """The operations that need the encryption keys: add, replace, reveal, rotate."""

    def __init__(self, cipher: TokenCipher) -> None:
        self.cipher = cipher

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> TokenStore:
        return cls(TokenCipher.from_settings(settings))

    # -- the stable fingerprint key -------------------------------------------------------------------------
    def stable_key(self, cur: Cursor, *, create: bool) -> bytes | None:
        """The registry's fingerprint key; made (and every live token re-fingerprinted) when `create` and missing.

        Creating needs the caller to hold locks.lock_token_writes. Raises EncryptionKeyError when the configured
        keys cannot open it, or (creating) cannot decrypt a live token: nothing is written then.
        """
        cur.execute("SELECT ciphertext FROM registry_keys WHERE name = %s", (FINGERPRINT_KEY_NAME,))
        row = cur.fetchone()
        if row is not None:
            key = self.cipher.open_key(row[0])
            if key is None:
                raise EncryptionKeyError(keys_cannot_read("the registry's fingerprint key"))
            return key
        if not create:
            return None
        from psycopg2.extras import execute_values

        key = new_fingerprint_key()
        cur.execute("SELECT id, username, token_ciphertext FROM tokens WHERE token_ciphertext IS NOT NULL "
                    "ORDER BY id FOR UPDATE")
        updates: list[tuple[int, str]] = []
        unreadable: list[int] = []
        for token_id, username, ciphertext in cur.fetchall():
            try:
                plain = self.cipher.decrypt(ciphertext)
            except EncryptionKeyError:
                unreadable.append(token_id)
                continue
            updates.append((token_id, self.cipher.fingerprint(username, plain, key)))
        if unreadable:
            raise EncryptionKeyError(keys_cannot_read(f"token {id_ranges(unreadable)}") + "; nothing was written")
        if updates:
            execute_values(
                cur, "UPDATE tokens AS t SET fingerprint = u.fp FROM (VALUES %s) AS u(id, fp) WHERE t.id = u.id",
                updates, template="(%s::bigint, %s)", page_size=1000,
            )
        cur.execute("INSERT INTO registry_keys (name, ciphertext) VALUES (%s, %s)",
                    (FINGERPRINT_KEY_NAME, self.cipher.seal_key(key)))
        return key

    def _fingerprints(self, cur: Cursor, username: str, token: str, *, create: bool) -> list[str]:
        key = self.stable_key(cur, create=create)
        if key is None:
            return self.cipher.legacy_fingerprint_candidates(username, token)
        return [self.cipher.fingerprint(username, token, key)]

    # -- can these keys read this registry? ------------------------------------------------------------------
    def key_report(self, conn: Connection) -> KeyReport:
        """Which configured key decrypts which live token, and the fingerprint key (for `keys check`)."""
        reads: list[list[int]] = [[] for _ in range(self.cipher.key_count)]
        unreadable: list[int] = []
        from l1nda_sync.registry.connections import rest_ciphertexts

        with reading(conn) as cur:
            cur.execute("SELECT id, token_ciphertext FROM tokens WHERE token_ciphertext IS NOT NULL ORDER BY id")
            secrets: list[tuple[int, str]] = [*cur.fetchall(), *rest_ciphertexts(cur)]  # REST: refresh and access
            for token_id, ciphertext in secrets:
                found = self.cipher.readers(ciphertext)
                for index in found:
                    if token_id not in reads[index]:
                        reads[index].append(token_id)
                if not found and token_id not in unreadable:
                    unreadable.append(token_id)
            cur.execute("SELECT ciphertext FROM registry_keys WHERE name = %s", (FINGERPRINT_KEY_NAME,))
            row = cur.fetchone()
        fp_key: int | None = None
        if row is None:
            fp_state = "not made yet"
        else:
            opened = self.cipher.readers(row[0])
            fp_key = opened[0] + 1 if opened else None
            fp_state = "readable" if opened else "unreadable"
        return KeyReport(self.cipher.key_count, tuple(tuple(r) for r in reads), tuple(unreadable), fp_key, fp_state)

    def refuse_foreign_keys(self, conn: Connection, *, action: str, except_id: int | None = None) -> None:
        """EncryptionKeyError when the configured keys cannot read the registry's tokens (or its fingerprint key):
        adding under keys that are not this deployment's would split the registry in two. `except_id`: a token
        about to be replaced (a new secret is how a token under a lost key is saved)."""
        report = self.key_report(conn)
        unreadable = [t for t in report.unreadable if t != except_id]
        if unreadable:
            raise EncryptionKeyError(keys_cannot_read(f"token {id_ranges(unreadable)}") + f"; nothing was {action}")
        if report.fingerprint_key_state == "unreadable":
            raise EncryptionKeyError(keys_cannot_read("the registry's fingerprint key") + f"; nothing was {action}")

    def find_duplicate(self, conn: Connection, username: str, token: str) -> Token | None:
        """A live token with the same login and token, without decrypting anything."""
        with reading(conn) as cur:
            return self._find_duplicate(cur, username, token)

    def _find_duplicate(self, cur: Cursor, username: str, token: str, *, create: bool = False) -> Token | None:
        cur.execute(
            f"""SELECT {COLUMNS} FROM tokens WHERE fingerprint = ANY(%s) AND removed_at IS NULL
                ORDER BY id LIMIT 1""",
            (self._fingerprints(cur, username, token, create=create),),
        )
        row = cur.fetchone()
        return None if row is None else Token.from_row(row)

    def refuse_clashes(self, conn: Connection, new: NewToken) -> None:
        """Conflict when the label is taken or the login + token is registered already (checked again by add)."""
        with reading(conn) as cur:
            self._refuse_clashes(cur, new)

    def _refuse_clashes(self, cur: Cursor, new: NewToken, *, create: bool = False) -> None:
        taken = label_taken(cur, new.label)
        if taken is not None:
            raise Conflict("--label", f"{new.label!r} is already the label of token {taken}; choose another "
                                      "label (see `l1nda-sync tokens list`)")
        duplicate = self._find_duplicate(cur, new.username, new.token, create=create)
        if duplicate is not None:
            raise Conflict("token", f"this login and token are already registered as token {duplicate.id} "
                                    f"({duplicate.label}, state {duplicate.state}); nothing was added")

    def add(self, conn: Connection, new: NewToken, *, actor: str, detail: dict[str, Any] | None = None) -> Token:
        """Register a token (state 'new', due now). Refuses a taken label and a duplicate login + token."""
        with conn.cursor() as cur:
            locks.lock_token_writes(cur)
            self._refuse_clashes(cur, new, create=True)
            key = self.stable_key(cur, create=False)
            cur.execute(
                f"""INSERT INTO tokens (label, level, username, token_ciphertext, token_hint, fingerprint, domain,
                                        contact_emails, contact_language, notes)
                    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {COLUMNS}""",
                (new.label, new.level, new.username, self.cipher.encrypt(new.token), mask(new.token.reveal()),
                 self.cipher.fingerprint(new.username, new.token, key), new.domain, list(new.contacts), new.language,
                 new.notes),
            )
            token = Token.from_row(fetch_one(cur))
            record_event(cur, token.id, actor, "added", None, token.state, {
                "label": token.label, "level": token.level, "username": token.username, "domain": token.domain,
                "contacts": list(token.contact_emails), "language": token.contact_language, **(detail or {}),
            })
        return token

    def refuse_replacement_clash(self, conn: Connection, current: Token, token: Secret) -> None:
        """Conflict when the new token is the stored one, or another token's (checked again by replace)."""
        with reading(conn) as cur:
            self._refuse_replacement_clash(cur, current, token)

    def _refuse_replacement_clash(self, cur: Cursor, current: Token, token: Secret, *, create: bool = False) -> None:
        duplicate = self._find_duplicate(cur, current.username, token, create=create)
        if duplicate is not None and duplicate.id == current.id:
            raise Conflict("token", f"is the token already stored for token {current.id}; paste the new token "
                                    "Nmbrs showed after the reset")
        if duplicate is not None:
            raise Conflict("token", f"this login and token are already registered as token {duplicate.id} "
                                    f"({duplicate.label}); nothing was replaced")

    def replace(self, conn: Connection, token_id: int, token: Secret, *, actor: str, domain: str | None = None,
                detail: dict[str, Any] | None = None) -> StateChange:
        """A new token for the same login (after a reset): history, reach and links stay; checked again now."""
        with conn.cursor() as cur:
            locks.lock_token_writes(cur)
            current = fetch_token(cur, token_id, for_update=True)
            _live(current, "replaced")
            _soap_only(current, "replaced")
            self._refuse_replacement_clash(cur, current, token, create=True)
            key = self.stable_key(cur, create=False)
            cur.execute(
                f"""UPDATE tokens SET token_ciphertext = %s, token_hint = %s, fingerprint = %s,
                        domain = coalesce(%s, domain), state = 'new', state_since = now(), missing_operation = NULL,
                        consecutive_invalid = 0, first_invalid_at = NULL, consecutive_transient = 0,
                        first_transient_at = NULL, refusal = NULL, drop_since = NULL, last_outcome = NULL,
                        next_check_at = now(), replaced_at = now(), updated_at = now()
                    WHERE id = %s RETURNING {COLUMNS}""",
                (self.cipher.encrypt(token), mask(token.reveal()),
                 self.cipher.fingerprint(current.username, token, key), domain, token_id),
            )
            updated = Token.from_row(fetch_one(cur))
            void_pending_checks(cur, token_id, "the token was replaced after this check")
            record_event(cur, token_id, actor, "replaced", current.state, updated.state,
                   {"old_hint": current.token_hint, "new_hint": updated.token_hint, **(detail or {})})
        return StateChange(updated, current.state, True)

    def reveal(self, conn: Connection, token_id: int) -> Secret:
        """The plaintext token for a call to Nmbrs, wrapped so that it never prints. Only for live tokens."""
        with reading(conn) as cur:
            cur.execute("SELECT token_ciphertext FROM tokens WHERE id = %s AND removed_at IS NULL", (token_id,))
            row = cur.fetchone()
        if row is not None and row[0] is None:
            raise Conflict("ID", f"token {token_id} is a REST connection: it has no API token to reveal")
        if row is None:
            raise NotFound("ID", f"no live token with id {token_id}; see `l1nda-sync tokens list`")
        try:
            return self.cipher.decrypt(row[0])
        except EncryptionKeyError:
            raise EncryptionKeyError(f"token {token_id} {UNDECRYPTABLE_MESSAGE}") from None

    def rotate(self, conn: Connection, *, actor: str) -> RotationReport:
        """Re-encrypt every live token, and the stable fingerprint key, under the newest key, all or nothing.

        Fingerprints do not change (their key is the registry's own); a registry without a stable key gets one
        here, and every token's fingerprint under it.
        """
        from psycopg2.extras import execute_values

        with conn.cursor() as cur:
            locks.lock_token_writes(cur)
            cur.execute(
                """SELECT id, username, token_ciphertext FROM tokens WHERE token_ciphertext IS NOT NULL
                   ORDER BY id FOR UPDATE"""
            )
            rows = cur.fetchall()
            plains: list[tuple[int, str, Secret]] = []
            older: list[int] = []
            unreadable: list[int] = []
            for token_id, username, ciphertext in rows:
                index = self.cipher.key_index(ciphertext)
                if index is None:
                    unreadable.append(token_id)
                    continue
                if index > 0:
                    older.append(token_id)
                plains.append((token_id, username, self.cipher.decrypt(ciphertext)))
            if unreadable:
                raise EncryptionKeyError(f"token {id_ranges(unreadable)} {UNDECRYPTABLE_MESSAGE}; nothing was rotated")
            from l1nda_sync.registry.connections import rotate_secrets

            _, rest_unreadable = rotate_secrets(cur, self.cipher)  # REST connections' secrets, the same way
            if rest_unreadable:
                raise EncryptionKeyError(f"REST connection {id_ranges(rest_unreadable)} {UNDECRYPTABLE_MESSAGE}; "
                                         "nothing was rotated")
            cur.execute("SELECT ciphertext FROM registry_keys WHERE name = %s FOR UPDATE", (FINGERPRINT_KEY_NAME,))
            sealed = cur.fetchone()
            if sealed is not None:
                key = self.cipher.open_key(sealed[0])
                if key is None:
                    raise EncryptionKeyError(f"the registry's fingerprint key {UNDECRYPTABLE_MESSAGE}; nothing was "
                                             "rotated")
                cur.execute("UPDATE registry_keys SET ciphertext = %s, updated_at = now() WHERE name = %s",
                            (self.cipher.reseal_key(sealed[0]), FINGERPRINT_KEY_NAME))
            else:  # a registry from before the stable key: make it, and fingerprint every token under it below
                key = new_fingerprint_key()
                cur.execute("INSERT INTO registry_keys (name, ciphertext) VALUES (%s, %s)",
                            (FINGERPRINT_KEY_NAME, self.cipher.seal_key(key)))
            updates = [(token_id, self.cipher.encrypt(plain), self.cipher.fingerprint(username, plain, key))
                       for token_id, username, plain in plains]
            if updates:
                execute_values(
                    cur,
                    """UPDATE tokens AS t SET token_ciphertext = u.ciphertext, fingerprint = u.fingerprint,
                           updated_at = now()
                       FROM (VALUES %s) AS u(id, ciphertext, fingerprint) WHERE t.id = u.id""",
                    updates, template="(%s::bigint, %s, %s)", page_size=1000,
                )
                execute_values(
                    cur,
                    "INSERT INTO token_events (token_id, actor, action, detail) VALUES %s",
                    [(t, actor, "key_rotated", json.dumps({"was_older_key": t in set(older)})) for t, _, _ in updates],
                    template="(%s, %s, %s, %s::jsonb)", page_size=1000,
                )
        return RotationReport(tokens=len(updates), under_older_key=len(older), keys=self.cipher.key_count)


def _set_state(conn: Connection, token_id: int, *, actor: str, action: str, to_state: str, from_states: tuple[str, ...],
               extra_sql: str = "", reason: str | None = None, refuse_removed: bool = True) -> StateChange:
    with conn.cursor() as cur:
        current = fetch_token(cur, token_id, for_update=True)
        if refuse_removed and current.removed_at is not None:
            _live(current, action)
        if current.state == to_state or current.state not in from_states:
            return StateChange(current, current.state, False)
        cur.execute(
            f"""UPDATE tokens SET state = %s, state_since = now(), updated_at = now() {extra_sql}
                WHERE id = %s RETURNING {COLUMNS}""",
            (to_state, token_id),
        )
        updated = Token.from_row(fetch_one(cur))
        void_pending_checks(cur, token_id, f"the token was {action} after this check")
        record_event(cur, token_id, actor, action, current.state, to_state, {"reason": reason} if reason else {})
    return StateChange(updated, current.state, True)


LIVE_STATES = tuple(s for s in v.TOKEN_STATES if s != "removed")


def disable(conn: Connection, token_id: int, *, actor: str, reason: str | None = None) -> StateChange:
    """Stop checking a token (its links fail over or are suspended by the next sync). No-op when disabled."""
    return _set_state(conn, token_id, actor=actor, action="disabled", to_state="disabled",
                      from_states=LIVE_STATES, reason=reason)


def enable(conn: Connection, token_id: int, *, actor: str, reason: str | None = None) -> StateChange:
    """A disabled token back to 'new', checked at the next run. No-op when it is not disabled."""
    return _set_state(
        conn, token_id, actor=actor, action="enabled", to_state="new", from_states=("disabled",), reason=reason,
        extra_sql=""", next_check_at = now(), consecutive_invalid = 0, first_invalid_at = NULL,
                       consecutive_transient = 0, first_transient_at = NULL, missing_operation = NULL,
                       refusal = NULL, drop_since = NULL, last_outcome = NULL""",
    )


def remove(conn: Connection, token_id: int, *, actor: str, reason: str | None = None) -> StateChange:
    """Retire a token for good: the secret is erased, label and fingerprint are freed, history stays."""
    change = _set_state(conn, token_id, actor=actor, action="removed", to_state="removed", from_states=LIVE_STATES,
                        reason=reason, extra_sql=", removed_at = now(), token_ciphertext = NULL",
                        refuse_removed=False)
    if change.token.kind == "rest_connection":  # a connection's secrets live beside it
        with conn.cursor() as cur:
            cur.execute("""UPDATE rest_connections SET refresh_ciphertext = NULL, access_ciphertext = NULL,
                               access_expires_at = NULL WHERE token_id = %s""", (token_id,))
    return change
