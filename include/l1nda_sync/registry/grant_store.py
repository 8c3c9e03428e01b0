"""`RegistryGrantStore`: the registry side of rotating refresh tokens (the GrantStore of nmbrs.rest.grants).

Nmbrs' refresh tokens are single use: a second refresh with the same one answers `invalid_grant`. So one
refresh per connection at a time, across processes and workers, and the rotated token is committed before the
access token is used:

- `locked(id)` opens a connection of its own, starts a transaction and takes the `rest_connections` row
  `FOR UPDATE`; it yields the grant as read under that lock (another worker may have refreshed meanwhile) and
  holds the lock until the block ends (rolled back then if nothing was saved).
- `save(id, grant, generation)` writes the new secrets as `generation` (the read one + 1; an answer without a
  refresh token or a scope keeps the stored one), committed at once, whatever transaction the caller has
  elsewhere. Inside `locked(id)` (same thread) it commits the locking transaction, which also releases the lock:
  the rotated token is durable before anyone can take the row. Elsewhere it is a transaction of its own. Either
  way it saves only while the row is still at `generation - 1`; otherwise someone else rotated it and
  `StaleGrant` says so (nothing written).
- `load(id)` reads the row afresh, committed state only.

Secrets are Fernet ciphertexts under the registry's keys (`TokenCipher`); they are decrypted only into `Secret`s.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from l1nda_sync.nmbrs.rest.grants import GrantStore, StoredGrant
from l1nda_sync.registry.crypto import TokenCipher
from l1nda_sync.registry.errors import Conflict, NotFound

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor

    from l1nda_sync.nmbrs.rest.oauth import Grant

_SELECT = """SELECT r.refresh_ciphertext, r.access_ciphertext, r.access_expires_at, r.generation,
                    t.removed_at IS NOT NULL
             FROM rest_connections r JOIN tokens t ON t.id = r.token_id WHERE r.token_id = %s"""


class StaleGrant(Conflict):
    """The row's generation moved on since it was read: another worker rotated the refresh token."""


class RegistryGrantStore:
    """Rotation-safe storage of one REST app's grants in the registry (see the module docstring)."""

    def __init__(self, connect: Callable[[], Connection], cipher: TokenCipher) -> None:
        self._connect = connect
        self.cipher = cipher
        self._held: dict[tuple[int, int], Connection] = {}  # (thread, connection id) -> the locking connection
        self._mutex = threading.Lock()

    # -- reading ---------------------------------------------------------------------------------------------
    def _read(self, cur: Cursor, connection_id: int, *, lock: bool) -> StoredGrant:
        cur.execute(_SELECT + (" FOR UPDATE OF r" if lock else ""), (connection_id,))
        row = cur.fetchone()
        if row is None:
            raise NotFound("ID", f"no REST connection with id {connection_id}")
        return self._stored(connection_id, row)

    def _stored(self, connection_id: int, row: tuple[Any, ...]) -> StoredGrant:
        refresh, access, expires_at, generation, removed = row
        if removed:
            raise NotFound("ID", f"REST connection {connection_id} was removed; its secrets are gone")
        return StoredGrant(None if refresh is None else self.cipher.decrypt(refresh),
                           None if access is None else self.cipher.decrypt(access), expires_at, int(generation))

    def load(self, connection_id: int) -> StoredGrant:
        """The grant as committed now (a fresh read on a connection of its own)."""
        conn = self._connect()
        try:
            with conn, conn.cursor() as cur:
                return self._read(cur, connection_id, lock=False)
        finally:
            conn.close()

    @contextmanager
    def locked(self, connection_id: int) -> Iterator[StoredGrant]:
        """Hold the connection's row lock for one refresh; yields the grant read under the lock."""
        key = (threading.get_ident(), connection_id)
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                stored = self._read(cur, connection_id, lock=True)
            with self._mutex:
                self._held[key] = conn
            yield stored
        finally:
            with self._mutex:
                self._held.pop(key, None)
            try:
                conn.rollback()  # nothing saved: nothing to keep; saved: already committed
            finally:
                conn.close()

    # -- writing ---------------------------------------------------------------------------------------------
    def save(self, connection_id: int, grant: Grant, generation: int) -> None:
        """Store a rotated grant as `generation` (the row's read generation + 1), committed when this returns.
        A grant without a refresh token keeps the stored one. StaleGrant when the row is no longer at
        `generation - 1` (nothing written)."""
        with self._mutex:
            held = self._held.get((threading.get_ident(), connection_id))
        if held is not None:
            self._save_on(held, connection_id, grant, generation)
            return
        conn = self._connect()
        try:
            self._save_on(conn, connection_id, grant, generation)
        finally:
            conn.close()

    def _save_on(self, conn: Connection, connection_id: int, grant: Grant, generation: int) -> None:
        refresh = None if grant.refresh_token is None else self.cipher.encrypt(grant.refresh_token)
        scopes = list(grant.scopes)
        with conn, conn.cursor() as cur:  # commits (and so releases a lock this connection holds)
            cur.execute(
                """UPDATE rest_connections SET refresh_ciphertext = coalesce(%s, refresh_ciphertext),
                       access_ciphertext = %s, access_expires_at = %s,
                       scopes = CASE WHEN cardinality(%s::text[]) = 0 THEN scopes ELSE %s::text[] END,
                       generation = %s, refreshed_at = now()
                   WHERE token_id = %s AND generation = %s
                     AND token_id IN (SELECT id FROM tokens WHERE removed_at IS NULL)
                   RETURNING generation""",
                (refresh, self.cipher.encrypt(grant.access_token), grant.expires_at, scopes, scopes, generation,
                 connection_id, generation - 1),
            )
            row = cur.fetchone()
        if row is None:
            raise StaleGrant("ID", f"REST connection {connection_id} is no longer at generation {generation - 1} "
                                   "(another worker rotated its refresh token, or it was removed); nothing was saved")


def as_grant_store(store: RegistryGrantStore) -> GrantStore:
    """The store as the client's GrantStore (mypy checks here that it is one)."""
    return store
