"""The rotation protocol on an in-memory store with a scripted identity server: when it refreshes, that the new
grant is saved before its access token is handed out, and how an `invalid_grant` is judged."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from l1nda_sync.masking import Secret
from l1nda_sync.nmbrs.errors import ConsentRevoked, InvalidGrant, TransientError
from l1nda_sync.nmbrs.rest.config import RestApp
from l1nda_sync.nmbrs.rest.grants import InMemoryGrantStore, StoredGrant, access_token
from l1nda_sync.nmbrs.rest.oauth import Grant

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
APP = RestApp("https://api.example", "https://id.example", "PartnerApp_x", Secret("s*cret$"), Secret("k" * 32),
              None, "https://l1nda.example/cb")


class Identity:
    """A scripted token endpoint: rotating refresh tokens `r0, r1, ...`; records who asked, in order."""

    def __init__(self, store: InMemoryGrantStore | None = None) -> None:
        self.live = "r0"
        self.used: list[str] = []
        self.events: list[str] = []
        self.store = store
        self.fail: Exception | None = None

    def __call__(self, app: RestApp, refresh_token: str, *, now: datetime, **_: Any) -> Grant:
        token = refresh_token.reveal() if isinstance(refresh_token, Secret) else refresh_token
        self.used.append(token)
        self.events.append("refresh")
        if self.fail is not None:
            raise self.fail
        if token != self.live:
            raise InvalidGrant("Identity.refresh: invalid_grant", error="invalid_grant",
                               description="The refresh token was used already.")
        n = int(token[1:]) + 1
        self.live = f"r{n}"
        return Grant(Secret(f"a{n}"), now + timedelta(hours=1), Secret(self.live), ("offline_access",))


class Recorded(InMemoryGrantStore):
    """An in-memory store that logs saves and lock use into the identity's event list."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    @contextmanager
    def locked(self, connection_id: int) -> Iterator[StoredGrant]:
        self.events.append("lock")
        with super().locked(connection_id) as row:
            yield row
        self.events.append("unlock")

    def save(self, connection_id: int, grant: Grant, generation: int) -> None:
        self.events.append(f"save {generation}")
        super().save(connection_id, grant, generation)


def _setup(expires_in: float, refresh: str | None = "r0") -> tuple[Recorded, Identity]:
    identity = Identity()
    store = Recorded(identity.events)
    store.put(1, StoredGrant(Secret(refresh) if refresh else None, Secret("a0"), NOW + timedelta(seconds=expires_in),
                             0))
    return store, identity


def test_a_token_with_more_than_a_minute_left_is_used_without_lock_or_refresh() -> None:
    store, identity = _setup(61)
    assert access_token(APP, store, 1, now=NOW, refresher=identity).reveal() == "a0"
    assert identity.events == []


def test_a_token_due_is_refreshed_under_the_lock_and_saved_before_it_is_returned() -> None:
    store, identity = _setup(60)  # exactly a minute left: refreshed
    token = access_token(APP, store, 1, now=NOW, refresher=identity)
    assert token.reveal() == "a1"
    assert identity.events == ["lock", "refresh", "save 1", "unlock"]
    row = store.load(1)
    assert (row.refresh_token, row.access_token, row.generation) == ("r1", "a1", 1)
    assert access_token(APP, store, 1, now=NOW, refresher=identity).reveal() == "a1"  # cached now
    assert identity.used == ["r0"]


def test_force_refresh_refreshes_a_fresh_token_once() -> None:
    store, identity = _setup(3000)
    assert access_token(APP, store, 1, now=NOW, force_refresh=True, refresher=identity).reveal() == "a1"
    assert identity.used == ["r0"]


def test_a_waiter_uses_the_token_another_worker_saved_while_it_waited() -> None:
    store, identity = _setup(10)
    seen_before_lock = store.load(1)

    class Racing(Recorded):
        def locked(self, connection_id: int) -> Any:
            # another worker refreshes between our read and our lock
            if not identity.used:
                grant = identity(APP, "r0", now=NOW)
                InMemoryGrantStore.save(self, connection_id, grant, seen_before_lock.generation + 1)
            return super().locked(connection_id)

    racing = Racing(identity.events)
    racing.put(1, seen_before_lock)
    assert access_token(APP, racing, 1, now=NOW, refresher=identity).reveal() == "a1"
    assert identity.used == ["r0"]  # only the other worker's refresh


def test_invalid_grant_after_somebody_else_rotated_uses_their_token() -> None:
    store, identity = _setup(10)

    def rotate_behind_our_back(app: RestApp, refresh_token: str, *, now: datetime) -> Grant:
        grant = identity(app, "r0", now=now)  # another worker without our lock wins the race ...
        InMemoryGrantStore.save(store, 1, grant, 1)
        return identity(app, refresh_token, now=now)  # ... so ours is refused

    assert access_token(APP, store, 1, now=NOW, refresher=rotate_behind_our_back).reveal() == "a1"
    assert identity.used == ["r0", "r0"]


def test_invalid_grant_that_nobody_explains_is_the_consent() -> None:
    store, identity = _setup(10)
    identity.live = "r7"  # the server knows another token: withdrawn or expired, for us
    with pytest.raises(ConsentRevoked) as caught:
        access_token(APP, store, 1, now=NOW, refresher=identity)
    assert caught.value.outcome == "consent_revoked"
    assert "used already" in str(caught.value)
    assert store.load(1).generation == 0
    assert "save" not in " ".join(identity.events)


def test_no_refresh_token_means_consent_again_once_the_access_token_is_due() -> None:
    store, identity = _setup(30, refresh=None)
    with pytest.raises(ConsentRevoked, match="offline_access"):
        access_token(APP, store, 1, now=NOW, refresher=identity)
    assert identity.used == []


def test_a_transient_identity_error_changes_nothing() -> None:
    store, identity = _setup(10)
    identity.fail = TransientError("Identity.refresh: HTTP 503")
    with pytest.raises(TransientError):
        access_token(APP, store, 1, now=NOW, refresher=identity)
    assert store.load(1).generation == 0
    assert store.load(1).refresh_token == "r0"


def test_threads_racing_refresh_once() -> None:
    store, identity = _setup(5)
    results: list[str] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        results.append(access_token(APP, store, 1, now=NOW, refresher=identity).reveal())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["a1"] * 8
    assert identity.used == ["r0"]
    assert store.saves == 1


def test_a_lost_refresh_answer_makes_the_next_invalid_grant_l1ndas_loss_not_the_customers() -> None:
    """Run 1: the server rotated r0 but its answer was lost (a read time-out). Run 2: r0 is spent: invalid_grant.
    That is L1NDA's loss (GrantLost, still consent_revoked), never read as the customer's withdrawal."""
    from l1nda_sync.nmbrs.rest.grants import GrantLost

    store, identity = _setup(10)

    def lost(app: RestApp, refresh_token: str, *, now: datetime, **kw: Any) -> Grant:
        identity(app, refresh_token, now=now)  # the server rotates it...
        raise TransientError("Identity.refresh: no answer in time")  # ...and the answer never arrives

    with pytest.raises(TransientError):
        access_token(APP, store, 1, now=NOW, refresher=lost)
    assert store.load(1).refresh_in_flight == 0
    with pytest.raises(GrantLost) as caught:
        access_token(APP, store, 1, now=NOW, refresher=identity)
    assert isinstance(caught.value, ConsentRevoked)
    assert caught.value.outcome == "consent_revoked"
    assert caught.value.lost_by_l1nda
    assert "L1NDA lost" in str(caught.value)


def test_a_refresh_that_never_left_clears_its_marker_and_a_later_withdrawal_is_the_customers() -> None:
    """No connection could be opened (refused, DNS, connect time-out): r0 was not spent. The marker goes, so a
    later withdrawal is the customer's (ConsentRevoked), not read as L1NDA's loss."""
    from l1nda_sync.nmbrs.rest.grants import GrantLost

    store, identity = _setup(10)

    def unreachable(app: RestApp, refresh_token: str, *, now: datetime, **kw: Any) -> Grant:
        error = TransientError("Identity.refresh: ConnectionError")
        error.unsent = True  # type: ignore[attr-defined]
        raise error

    with pytest.raises(TransientError):
        access_token(APP, store, 1, now=NOW, refresher=unreachable)
    assert store.load(1).refresh_in_flight is None
    identity.live = "withdrawn"
    with pytest.raises(ConsentRevoked) as caught:
        access_token(APP, store, 1, now=NOW, refresher=identity)
    assert not isinstance(caught.value, GrantLost)


def test_a_saved_refresh_clears_the_marker_and_a_later_withdrawal_is_the_customers() -> None:
    from l1nda_sync.nmbrs.rest.grants import GrantLost

    store, identity = _setup(10)
    assert access_token(APP, store, 1, now=NOW, refresher=identity).reveal() == "a1"
    assert store.load(1).refresh_in_flight is None
    assert not store.load(1).refresh_was_lost
    identity.live = "withdrawn"
    with pytest.raises(ConsentRevoked) as caught:
        access_token(APP, store, 1, now=NOW + timedelta(hours=2), refresher=identity)
    assert not isinstance(caught.value, GrantLost)


class Unread(Recorded):
    """A store that also logs every read of the row without the lock (`load`) into the identity's event list."""

    locking = False

    def load(self, connection_id: int) -> StoredGrant:
        if not self.locking:
            self.events.append("load")
        return super().load(connection_id)

    @contextmanager
    def locked(self, connection_id: int) -> Iterator[StoredGrant]:
        self.locking = True  # the in-memory lock reads the row with `load`: that read is the lock's
        try:
            with super().locked(connection_id) as row:
                self.locking = False
                yield row
        finally:
            self.locking = False


def _read_setup(expires_in: float) -> tuple[Unread, Identity, StoredGrant]:
    identity = Identity()
    store = Unread(identity.events)
    row = StoredGrant(Secret("r0"), Secret("a0"), NOW + timedelta(seconds=expires_in), 0)
    store.put(1, row)
    return store, identity, StoredGrant(None, row.access_token, row.access_expires_at, row.generation)


def test_a_good_token_read_with_the_batch_is_used_without_reading_the_row_again() -> None:
    store, identity, read = _read_setup(61)
    assert access_token(APP, store, 1, now=NOW, refresher=identity, read=read).reveal() == "a0"
    assert identity.events == []


def test_a_due_token_read_with_the_batch_is_refreshed_from_the_row_read_under_the_lock() -> None:
    store, identity, read = _read_setup(60)
    assert access_token(APP, store, 1, now=NOW, refresher=identity, read=read).reveal() == "a1"
    assert identity.events == ["lock", "refresh", "save 1", "unlock"]  # the lock's read gave the refresh token
    assert identity.used == ["r0"]


def test_a_row_rotated_since_the_batch_read_it_gives_the_rotated_token() -> None:
    store, identity, read = _read_setup(10)
    InMemoryGrantStore.save(store, 1, identity(APP, "r0", now=NOW), 1)  # another worker, after our batch's load
    assert access_token(APP, store, 1, now=NOW, refresher=identity, read=read).reveal() == "a1"
    assert identity.used == ["r0"]  # only the other worker's refresh: ours read the rotated row under the lock


def test_force_refresh_reads_the_row_again_whatever_the_batch_read() -> None:
    store, identity, read = _read_setup(3000)
    assert access_token(APP, store, 1, now=NOW, force_refresh=True, refresher=identity, read=read).reveal() == "a1"
    assert identity.events[0] == "load"
    assert identity.used == ["r0"]


def test_a_refused_token_whose_row_was_rotated_since_gets_the_rotated_token_without_a_refresh() -> None:
    store, identity, read = _read_setup(3000)
    assert access_token(APP, store, 1, now=NOW, refresher=identity, read=read).reveal() == "a0"
    InMemoryGrantStore.save(store, 1, identity(APP, "r0", now=NOW), 1)  # another worker rotated it meanwhile
    again = access_token(APP, store, 1, now=NOW, force_refresh=True, refresher=identity, refused=read.generation)
    assert again.reveal() == "a1"
    assert identity.used == ["r0"], "only the other worker's refresh"
    assert access_token(APP, store, 1, now=NOW, force_refresh=True, refresher=identity, refused=1).reveal() == "a2"
