"""`RegistryGrantStore`: the registry side of rotating refresh tokens (the GrantStore of nmbrs.rest.grants).

Nmbrs' refresh tokens are single use: a second refresh with the same one answers `invalid_grant`. So one
refresh per connection at a time, across processes and workers, and the rotated token is committed before the
access token is used:

- `locked(id)` opens a connection of its own, starts a transaction and takes the connection's lock (a
  transaction-level advisory lock keyed on the id, so that `begin_refresh` can still write the row from another
  connection); it yields the grant as read under that lock (another worker may have refreshed meanwhile) and
  holds the lock until the block ends (rolled back then if nothing was saved). The wait for the lock is bounded
  (`LOCK_TIMEOUT`: a `TransientError`), and so is the lock's life should the process hang
  (`idle_in_transaction_session_timeout`, above the refresh's own deadline); the connection has TCP keepalives.
- `begin_refresh(id, generation)` commits, on a connection of its own, the marker "a refresh of `generation` was
  sent" (`refresh_generation`, `refresh_started_at`); the save clears it. A marker still naming the current
  generation means an answer or its save was lost (see `nmbrs.rest.grants.GrantLost`).
- `save(id, grant, generation)` writes the new secrets as `generation` (the read one + 1; an answer without a
  refresh token or a scope keeps the stored one), committed at once, whatever transaction the caller has
  elsewhere. Inside `locked(id)` (same thread) it commits the locking transaction, which also releases the lock:
  the rotated token is durable before anyone can take the row. Elsewhere it is a transaction of its own. Either
  way it saves only while the row is still at `generation - 1`; otherwise someone else rotated it and
  `StaleGrant` says so (nothing written). When the held connection is broken (the server or the network dropped
  it during the refresh), the save is tried once more on a fresh connection: the generation guard keeps that
  safe, and a save that had committed before the connection broke is recognised.
- `load(id)` reads the row afresh, committed state only.

Secrets are Fernet ciphertexts under the registry's keys (`TokenCipher`); they are decrypted only into `Secret`s.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg2
import psycopg2.errors

from l1nda_sync.nmbrs.errors import TransientError
from l1nda_sync.nmbrs.rest.grants import GrantStore, StoredGrant
from l1nda_sync.registry import locks
from l1nda_sync.registry.crypto import TokenCipher
from l1nda_sync.registry.errors import Conflict, NotFound

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor

    from l1nda_sync.nmbrs.rest.oauth import Grant

_SELECT = """SELECT r.refresh_ciphertext, r.access_ciphertext, r.access_expires_at, r.generation,
                    t.removed_at IS NOT NULL, r.refresh_generation
             FROM rest_connections r JOIN tokens t ON t.id = r.token_id WHERE r.token_id = %s"""
LOCK_TIMEOUT = "90s"  # how long a worker waits for another's refresh (which is bounded by the retry deadline)
IDLE_TIMEOUT = "150s"  # the lock's transaction idles through one refresh (deadline 60 s): above it, never forever
CONNECT_KWARGS: dict[str, Any] = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30,
                                  "keepalives_interval": 10, "keepalives_count": 3}
# PostgreSQL connections a store opens at most, at once: reads share `MAX_READERS` (kept idle between reads, as
# opening one for each check cost more than the read); each refresh takes two (the lock's and the marker's) and
# at most `MAX_REFRESHES` run at once. Without the bound, a process checking several batches of 32 connections
# whose access tokens all expired opened hundreds ("sorry, too many clients already", seen in `make bench`).
MAX_READERS = 8
MAX_REFRESHES = 8
REFRESH_WAIT = 90.0  # seconds a refresh waits for a slot (as for another worker's lock: `LOCK_TIMEOUT`)
_BROKEN = (psycopg2.OperationalError, psycopg2.InterfaceError)


class StaleGrant(Conflict):
    """The row's generation moved on since it was read: another worker rotated the refresh token."""


class RegistryGrantStore:
    """Rotation-safe storage of one REST app's grants in the registry (see the module docstring)."""

    def __init__(self, connect: Callable[[], Connection], cipher: TokenCipher) -> None:
        self._connect_raw = connect
        self.cipher = cipher
        self._held: dict[tuple[int, int], Connection] = {}  # (thread, connection id) -> the locking connection
        self._mutex = threading.Lock()
        self._idle: list[Connection] = []  # connections `load` reuses (opening one per check cost more than the read)
        self._readers = threading.BoundedSemaphore(MAX_READERS)
        self._refreshes = threading.BoundedSemaphore(MAX_REFRESHES)

    @classmethod
    def for_url(cls, url: str, cipher: TokenCipher) -> RegistryGrantStore:
        """A store whose connections time out connecting and carry TCP keepalives (`CONNECT_KWARGS`)."""

        def connect() -> Connection:
            conn: Connection = psycopg2.connect(url, application_name="l1nda-sync", options="-c timezone=UTC",
                                                **CONNECT_KWARGS)
            return conn

        return cls(connect, cipher)

    def _connect(self) -> Connection:
        conn = self._connect_raw()
        _keepalive(conn)
        return conn

    # -- reading ---------------------------------------------------------------------------------------------
    def _read(self, cur: Cursor, connection_id: int) -> StoredGrant:
        cur.execute(_SELECT, (connection_id,))
        row = cur.fetchone()
        if row is None:
            raise NotFound("ID", f"no REST connection with id {connection_id}")
        return self._stored(connection_id, row)

    def _stored(self, connection_id: int, row: tuple[Any, ...]) -> StoredGrant:
        refresh, access, expires_at, generation, removed, in_flight = row
        if removed:
            raise NotFound("ID", f"REST connection {connection_id} was removed; its secrets are gone")
        return StoredGrant(None if refresh is None else self.cipher.decrypt(refresh),
                           None if access is None else self.cipher.decrypt(access), expires_at, int(generation),
                           None if in_flight is None else int(in_flight))

    def load(self, connection_id: int) -> StoredGrant:
        """The grant as committed now: one read in a transaction of its own, on a reused idle connection (never
        one that holds a lock: those are opened for each refresh and closed after it). At most `MAX_READERS` run
        at once (a read takes about a millisecond: the wait is short)."""
        with self._readers:
            with self._mutex:
                idle = self._idle.pop() if self._idle else None
            if idle is not None and not idle.closed:
                try:
                    return self._read_and_keep(idle, connection_id)
                except _BROKEN:
                    pass  # the server ended it while idle (a restart, a timeout): read on a new one
            return self._read_and_keep(self._connect(), connection_id)

    def _read_and_keep(self, conn: Connection, connection_id: int) -> StoredGrant:
        try:
            with conn, conn.cursor() as cur:
                stored = self._read(cur, connection_id)
        except BaseException:
            conn.close()
            raise
        with self._mutex:
            keep = len(self._idle) < MAX_READERS
            if keep:
                self._idle.append(conn)
        if not keep:
            conn.close()
        return stored

    def close(self) -> None:
        """Close the idle connections `load` keeps."""
        with self._mutex:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    @contextmanager
    def locked(self, connection_id: int) -> Iterator[StoredGrant]:
        """Hold the connection's refresh lock (`locks.lock_rest_refresh`) for one refresh; yields the grant read
        under the lock. At most `MAX_REFRESHES` of this store's refreshes run at once."""
        if not self._refreshes.acquire(timeout=REFRESH_WAIT):
            raise TransientError(f"REST connection {connection_id}: no refresh slot within {REFRESH_WAIT:g} s (this "
                                 "worker's other refreshes took them); the next check tries again",
                                 service="Registry", operation="refresh_slot")
        try:
            with self._locked(connection_id) as stored:
                yield stored
        finally:
            self._refreshes.release()

    @contextmanager
    def _locked(self, connection_id: int) -> Iterator[StoredGrant]:
        key = (threading.get_ident(), connection_id)
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                cur.execute(f"SET LOCAL idle_in_transaction_session_timeout = '{IDLE_TIMEOUT}'")
                try:
                    locks.lock_rest_refresh(cur, connection_id)
                except psycopg2.errors.LockNotAvailable:
                    raise TransientError(f"REST connection {connection_id}: another worker's refresh held its lock "
                                         f"for more than {LOCK_TIMEOUT}; the next check tries again",
                                         service="Registry", operation="refresh_lock") from None
                stored = self._read(cur, connection_id)
            with self._mutex:
                self._held[key] = conn
            yield stored
        finally:
            with self._mutex:
                self._held.pop(key, None)
            try:
                conn.rollback()  # nothing saved: nothing to keep; saved: already committed
            except _BROKEN:
                pass  # a broken connection: the server ends its transaction (and the lock) itself
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
            try:
                self._save_on(held, connection_id, grant, generation)
                return
            except _BROKEN:
                pass  # the held connection broke during the refresh: once more on a fresh one (generation-guarded)
            try:
                self._save_fresh(connection_id, grant, generation)
            except StaleGrant:
                if not self._saved_already(connection_id, grant, generation):
                    raise
            return
        self._save_fresh(connection_id, grant, generation)

    def _saved_already(self, connection_id: int, grant: Grant, generation: int) -> bool:
        """The broken connection's commit went through before it broke: the row holds this very grant."""
        current = self.load(connection_id)
        return current.generation == generation and current.access_token == grant.access_token

    def _save_fresh(self, connection_id: int, grant: Grant, generation: int) -> None:
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
                       generation = %s, refreshed_at = now(), refresh_generation = NULL,
                       refresh_started_at = NULL
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


    def begin_refresh(self, connection_id: int, generation: int) -> None:
        """Commit "a refresh of `generation` is being sent" on a connection of its own (it survives whatever
        happens to the lock's transaction); the save of its answer clears it."""
        conn = self._connect()
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SET LOCAL lock_timeout = %s", (LOCK_TIMEOUT,))
                cur.execute("""UPDATE rest_connections SET refresh_generation = %s, refresh_started_at = now()
                               WHERE token_id = %s AND generation = %s""", (generation, connection_id, generation))
        except psycopg2.errors.LockNotAvailable:
            raise TransientError(f"REST connection {connection_id}: its row stayed locked for more than "
                                 f"{LOCK_TIMEOUT}; nothing was sent", service="Registry",
                                 operation="refresh_marker") from None
        finally:
            conn.close()

    def cancel_refresh(self, connection_id: int, generation: int) -> None:
        """Clear the marker of a refresh of `generation` that provably never left (no connection opened)."""
        conn = self._connect()
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SET LOCAL lock_timeout = %s", (LOCK_TIMEOUT,))
                cur.execute("""UPDATE rest_connections SET refresh_generation = NULL, refresh_started_at = NULL
                               WHERE token_id = %s AND refresh_generation = %s""", (connection_id, generation))
        finally:
            conn.close()


def _keepalive(conn: Connection) -> None:
    """TCP keepalives on the connection's socket, whoever opened it (a dead server or network is noticed in
    about a minute, not after the kernel's two hours)."""
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
                if hasattr(socket, name):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    except (OSError, ValueError):
        pass  # a Unix socket or an unusual platform: nothing to keep alive


def as_grant_store(store: RegistryGrantStore) -> GrantStore:
    """The store as the client's GrantStore (mypy checks here that it is one)."""
    return store
