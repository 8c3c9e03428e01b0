"""Rotating refresh tokens, safely: the access token of one REST connection, refreshed at most once at a time.

Nmbrs' refresh tokens are single use: a refresh returns a new one and kills the old, and a second refresh with
the old one answers `invalid_grant`. So, for each connection (`access_token`):

1. a cached access token with more than `MIN_LIFETIME` left is used as it is (no lock; as the row was read a
   moment ago, by the check batch's load, or now);
2. else, under the connection's lock (`GrantStore.locked`, held across processes and workers), the row is read
   again: another worker may have refreshed meanwhile, and then its token is used;
3. else the refresh token is used once, and the new grant is saved (`GrantStore.save`, committed in its own
   transaction) **before** the new access token is handed out;
4. an `invalid_grant` is judged only after re-reading the row (`GrantStore.load`): when its generation moved,
   somebody rotated it (that one is used); only a row nobody rotated is the consent: `ConsentRevoked`.

A refresh whose answer is lost (a read time-out, a 5xx after processing, a truncated answer, the save failing)
leaves a refresh token the identity server has spent. So before the refresh is sent, `GrantStore.begin_refresh`
commits a marker "refresh in flight at generation g" (on a connection of its own: it survives any rollback), and
`save` clears it. An `invalid_grant` for a row whose marker names its current generation was sent with a token
L1NDA itself may have spent: `GrantLost` (still `consent_revoked`: a new consent is needed; but the mails say that
L1NDA lost the token, not that the customer withdrew).

The store is a Protocol: the registry implements it on PostgreSQL (`registry.connections`); `InMemoryGrantStore`
is the reference for tests.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

from l1nda_sync.masking import Secret
from l1nda_sync.nmbrs.errors import ConsentRevoked, InvalidGrant, TransientError
from l1nda_sync.nmbrs.rest import oauth
from l1nda_sync.nmbrs.rest.config import RestApp
from l1nda_sync.nmbrs.rest.oauth import Grant

_log = logging.getLogger(__name__)
MIN_LIFETIME = timedelta(seconds=60)  # a token with less left is refreshed rather than sent
Refresher = Callable[..., Grant]  # oauth.refresh's shape: (app, refresh_token, *, now) -> Grant


@dataclass(frozen=True, slots=True)
class StoredGrant:
    """A connection's row as stored: its secrets decrypted, and `generation`, which counts rotations."""

    refresh_token: Secret | None
    access_token: Secret | None = field(default=None)
    access_expires_at: datetime | None = None
    generation: int = 0
    refresh_in_flight: int | None = None  # the generation whose refresh was started and never saved

    @property
    def refresh_was_lost(self) -> bool:
        """A refresh of this very generation was sent before and its answer never saved: the token may be spent."""
        return self.refresh_in_flight is not None and self.refresh_in_flight == self.generation

    def usable_at(self, now: datetime) -> Secret | None:
        """The cached access token when it has more than `MIN_LIFETIME` left at `now`, else None."""
        return self.access_token if lasts(self.access_expires_at, now) else None


def lasts(expires_at: datetime | None, now: datetime) -> bool:
    """Whether an access token that expires at `expires_at` has more than `MIN_LIFETIME` left at `now`."""
    return expires_at is not None and expires_at - now > MIN_LIFETIME


class GrantStore(Protocol):
    """Where a connection's grant lives (the registry's `rest_connections` row)."""

    def locked(self, connection_id: int) -> AbstractContextManager[StoredGrant]:
        """Hold the connection's lock (across processes) for one refresh; yield its row read under the lock."""
        ...

    def save(self, connection_id: int, grant: Grant, generation: int) -> None:
        """Store `grant` as `generation` (the locked row's + 1), committed when this returns (it may end the lock).

        A grant without a refresh token keeps the stored one."""
        ...

    def load(self, connection_id: int) -> StoredGrant:
        """Read the row as committed now, without the lock."""
        ...

    def begin_refresh(self, connection_id: int, generation: int) -> None:
        """Commit (durably, whatever happens to the lock's transaction) that a refresh of `generation` is about to
        be sent; `save` clears it."""
        ...

    def cancel_refresh(self, connection_id: int, generation: int) -> None:
        """Clear the marker of `generation`'s refresh: it provably never left (no connection could be opened)."""
        ...


class GrantLost(ConsentRevoked):
    """`invalid_grant` for a refresh token L1NDA may have spent itself: an earlier refresh of the same generation
    was sent and its answer (or its save) was lost. A new consent is needed all the same (`consent_revoked`), but
    it is L1NDA's loss, not the customer's withdrawal."""

    lost_by_l1nda = True


def access_token(app: RestApp, store: GrantStore, connection_id: int, *, now: datetime, force_refresh: bool = False,
                 refresher: Refresher = oauth.refresh, read: StoredGrant | None = None,
                 refused: int | None = None) -> Secret:
    """A valid access token for the connection (see the module docstring). `force_refresh`: the API refused the
    cached one (401), so refresh unless another worker did so since it was read.

    `read`: the row as read a moment ago with others (a check batch's load), used instead of reading it again
    unless `force_refresh`. Its cached access token, if it has more than `MIN_LIFETIME` left, is as good as a
    fresh read's: a refresh since then does not end it, and should the API refuse it all the same, the 401 forces
    a refresh that reads the row under the lock. Anything else reads the row as committed now.

    `refused` (with `force_refresh`): the generation of the access token the API refused, when known. A row
    rotated past it since (another worker refreshed) gives its token without a refresh of ours; without it, the
    row read now stands for the refused token's (a rotation between that read and the refusal goes unseen).

    Raises ConsentRevoked when the consent is gone (withdrawn, refresh token expired, none granted); transient
    errors of the identity server as TransientError (nothing stored changes then)."""
    if force_refresh and refused is not None:
        return _refresh_locked(app, store, connection_id, now=now, seen_generation=refused, force_refresh=True,
                               refresher=refresher)
    seen = read if read is not None and not force_refresh else store.load(connection_id)
    if not force_refresh:
        cached = seen.usable_at(now)
        if cached is not None:
            return cached
    return _refresh_locked(app, store, connection_id, now=now, seen_generation=seen.generation,
                           force_refresh=force_refresh, refresher=refresher)


def _refresh_locked(app: RestApp, store: GrantStore, connection_id: int, *, now: datetime, seen_generation: int,
                    force_refresh: bool, refresher: Refresher) -> Secret:
    with store.locked(connection_id) as stored:
        cached = stored.usable_at(now)
        if cached is not None and (not force_refresh or stored.generation != seen_generation):
            return cached  # somebody refreshed while we waited for the lock
        if stored.refresh_token is None:
            raise ConsentRevoked(f"REST connection {connection_id}: the access token expired and the consent holds "
                                 "no refresh token (granted without offline_access): the customer must consent again",
                                 service=oauth.IDENTITY, operation="refresh")
        store.begin_refresh(connection_id, stored.generation)
        try:
            grant = refresher(app, stored.refresh_token, now=now)
        except InvalidGrant as refused:
            return _after_invalid_grant(store, connection_id, stored, refused, now)
        except TransientError as failed:
            if getattr(failed, "unsent", False):
                _cancel_marker(store, connection_id, stored.generation)
            raise
        store.save(connection_id, grant, stored.generation + 1)
        return grant.access_token


def _cancel_marker(store: GrantStore, connection_id: int, generation: int) -> None:
    """A refresh that never left spent nothing: without its marker a later `invalid_grant` is read as the
    customer's (ConsentRevoked), not as L1NDA's loss (GrantLost). Best effort: a marker left behind only changes
    what a later mail says, never whether one is sent."""
    try:
        store.cancel_refresh(connection_id, generation)
    except Exception:  # the refresh's own failure is the one to report
        _log.warning("REST connection %s: could not clear the marker of a refresh that never left", connection_id,
                     exc_info=True)


def _after_invalid_grant(store: GrantStore, connection_id: int, used: StoredGrant, refused: InvalidGrant,
                         now: datetime) -> Secret:
    current = store.load(connection_id)
    if current.generation != used.generation:
        cached = current.usable_at(now)
        if cached is not None:
            return cached  # another worker rotated it (outside our lock): its token is good
    reason = refused.description or "invalid_grant"
    if used.refresh_was_lost and current.generation == used.generation:
        raise GrantLost(f"REST connection {connection_id}: Nmbrs refused the refresh token ({reason}) after an "
                        "earlier refresh of it was sent and its answer or its save was lost: L1NDA lost the "
                        "connection's token; the customer must consent again",
                        code=refused.code, service=refused.service, operation=refused.operation,
                        text=refused.text) from None
    raise ConsentRevoked(f"REST connection {connection_id}: Nmbrs refused the refresh token ({reason}): "
                         "the consent was withdrawn or its refresh token expired",
                         code=refused.code, service=refused.service, operation=refused.operation,
                         text=refused.text) from None


class InMemoryGrantStore:
    """A `GrantStore` in one process's memory (tests, the reference behaviour); counts refreshes saved."""

    def __init__(self) -> None:
        self._rows: dict[int, StoredGrant] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()
        self.saves = 0

    def put(self, connection_id: int, row: StoredGrant) -> None:
        with self._guard:
            self._rows[connection_id] = row
            self._locks.setdefault(connection_id, threading.Lock())

    @contextmanager
    def locked(self, connection_id: int) -> Iterator[StoredGrant]:
        with self._guard:
            lock = self._locks.setdefault(connection_id, threading.Lock())
        with lock:
            yield self.load(connection_id)

    def save(self, connection_id: int, grant: Grant, generation: int) -> None:
        with self._guard:
            old = self._rows[connection_id]
            self._rows[connection_id] = StoredGrant(grant.refresh_token or old.refresh_token, grant.access_token,
                                                    grant.expires_at, generation)
            self.saves += 1

    def begin_refresh(self, connection_id: int, generation: int) -> None:
        with self._guard:
            row = self._rows[connection_id]
            if row.generation == generation:
                self._rows[connection_id] = replace(row, refresh_in_flight=generation)

    def cancel_refresh(self, connection_id: int, generation: int) -> None:
        with self._guard:
            row = self._rows[connection_id]
            if row.refresh_in_flight == generation:
                self._rows[connection_id] = replace(row, refresh_in_flight=None)

    def load(self, connection_id: int) -> StoredGrant:
        with self._guard:
            row = self._rows.get(connection_id)
        if row is None:
            raise KeyError(f"no REST connection {connection_id}")
        return row
