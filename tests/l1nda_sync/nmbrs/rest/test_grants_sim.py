"""Rotation against the simulator's identity server: threads and processes racing for one connection send exactly
one refresh (and nobody reads the loser's `invalid_grant` as a revocation); a withdrawn consent or an expired
refresh token is `ConsentRevoked`. Time moves on the simulator's clock, never by sleeping."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from l1nda_sync.masking import Secret
from l1nda_sync.nmbrs.errors import ConsentRevoked
from l1nda_sync.nmbrs.rest.config import RestApp
from l1nda_sync.nmbrs.rest.grants import StoredGrant, access_token
from nmbrs_sim.testing import RunningSim
from tests.l1nda_sync.nmbrs.rest.conftest import BUSINESS, SimClock, connect, consent, consent_id, rest_app
from tests.l1nda_sync.nmbrs.rest.file_store import FileGrantStore

WORKERS = 6


def _refreshes(sim: RunningSim) -> int:
    return sim.admin.call_count(service="Identity", operation="token")


def test_a_due_token_is_refreshed_once_and_the_rotation_is_stored(sim: RunningSim, app: RestApp, clock: SimClock
                                                                  ) -> None:
    conn = connect(sim, app, BUSINESS, clock)
    first = conn.store.load(1)
    assert conn.access(False) == first.access_token  # an hour left: cached
    sim.admin.clear_calls()
    clock.advance(3600 - 59)  # 59 s left: due
    token = conn.access(False)
    row = conn.store.load(1)
    assert token == row.access_token != first.access_token
    assert row.refresh_token != first.refresh_token
    assert row.generation == 1
    assert conn.access(False) == token
    assert _refreshes(sim) == 1


def test_threads_racing_for_a_due_token_send_one_refresh(sim: RunningSim, app: RestApp, clock: SimClock) -> None:
    conn = connect(sim, app, BUSINESS, clock)
    clock.advance(3600)
    now = clock()
    sim.admin.clear_calls()
    barrier = threading.Barrier(WORKERS)
    tokens: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            tokens.append(access_token(app, conn.store, 1, now=now).reveal())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(tokens)) == 1
    assert len(tokens) == WORKERS
    assert _refreshes(sim) == 1
    assert conn.store.saves == 1


def _process_worker(args: tuple[str, ...], barrier: Any, results: Any) -> None:
    root, client_id, secret, key, redirect, path, now = args
    app = RestApp(root, root, client_id, Secret(secret), Secret(key), None, redirect)
    store = FileGrantStore(Path(path))
    barrier.wait()  # every process imported and ready: they ask at once
    try:
        results.put(access_token(app, store, 1, now=datetime.fromisoformat(now)).reveal())
    except ConsentRevoked as exc:
        results.put(f"revoked: {exc}")


def test_processes_racing_for_a_due_token_send_one_refresh(sim: RunningSim, app: RestApp, clock: SimClock,
                                                           tmp_path: Path) -> None:
    grant = consent(sim, app, BUSINESS, clock())
    store = FileGrantStore(tmp_path / "grant.json")
    store.put(StoredGrant(grant.refresh_token, grant.access_token, grant.expires_at, 0))
    clock.advance(3600)
    now = clock().isoformat()
    sim.admin.clear_calls()
    args = (sim.root_url, app.client_id, app.client_secret.reveal(), app.subscription_key.reveal(), app.redirect_uri,
            str(store.path), now)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(WORKERS), context.Queue()
    workers = [context.Process(target=_process_worker, args=(args, barrier, results)) for _ in range(WORKERS)]
    for worker in workers:
        worker.start()
    tokens = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert [w.exitcode for w in workers] == [0] * WORKERS
    assert not [t for t in tokens if t.startswith("revoked")]
    assert len(set(tokens)) == 1
    row = store.load(1)
    assert row.generation == 1
    assert tokens[0] == row.access_token
    assert _refreshes(sim) == 1


def test_a_withdrawn_consent_is_revoked_at_the_next_refresh(sim: RunningSim, app: RestApp, clock: SimClock) -> None:
    conn = connect(sim, app, BUSINESS, clock)
    sim.admin.withdraw_consent(consent_id(sim, BUSINESS))
    with pytest.raises(ConsentRevoked) as caught:
        conn.access(True)
    assert caught.value.outcome == "consent_revoked"
    assert "withdrawn" in str(caught.value)
    assert conn.store.load(1).generation == 0


def test_a_refresh_token_expired_by_the_clock_is_revoked(sim: RunningSim, app: RestApp, clock: SimClock) -> None:
    conn = connect(sim, app, BUSINESS, clock)
    clock.advance(timedelta(days=29).total_seconds())
    assert conn.access(False) != conn.store.load(1).refresh_token  # 29 days idle: still refreshes
    assert conn.store.load(1).generation == 1
    clock.advance(timedelta(days=30, seconds=1).total_seconds())
    with pytest.raises(ConsentRevoked, match="expired"):
        conn.access(False)


def test_refresh_tokens_expired_by_the_simulator_are_revoked(sim: RunningSim, app: RestApp, clock: SimClock) -> None:
    conn = connect(sim, app, BUSINESS, clock)
    assert sim.admin.expire_refresh_tokens(consent_id(sim, BUSINESS)) == 1
    clock.advance(3600)
    with pytest.raises(ConsentRevoked):
        conn.access(False)


def test_the_narrow_app_without_refresh_tokens_must_consent_again(sim: RunningSim, clock: SimClock) -> None:
    from tests.l1nda_sync.nmbrs.rest.conftest import NARROW_CALLBACK, NARROW_ID, NARROW_KEY, NARROW_SECRET

    narrow = rest_app(sim, client_id=NARROW_ID, secret=NARROW_SECRET, key=NARROW_KEY, secondary=None,
                      redirect_uri=NARROW_CALLBACK, scopes=("company.info.read",))
    conn = connect(sim, narrow, BUSINESS, clock)
    assert conn.access(False) == conn.store.load(1).access_token
    sim.admin.clear_calls()
    clock.advance(3600)
    with pytest.raises(ConsentRevoked, match="offline_access"):
        conn.access(False)
    assert _refreshes(sim) == 0
