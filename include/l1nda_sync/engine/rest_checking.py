"""The check step for REST connections: an access token (rotated safely), the REST probe, and its UUIDs resolved
to L1NDA keys before the check is stored.

A connection is probed in the worker pool like a SOAP token: `grants.access_token` gives its access token (the
one the batch's load read, while it has more than a minute left; a refresh only when due, under the row lock,
committed before use: `RegistryGrantStore`), and
`RestClient.probe(RestCredentials(id, access, scopes))` what it reaches, with UUIDs. The UUIDs become integer keys
in the transaction that stores the checks (`finish_rest`, `rest_resolution.resolve`), so the stored probe is the
same `Probe` a SOAP probe gives: the apply step, reach diffs and link rules need nothing new.

Without L1NDA's REST app configured (`Settings.rest_app()` None) no connection can be checked: that is a deployment
fault (`RestAppMissing`), never an Nmbrs one: no outcome is stored for them and nothing about them moves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from l1nda_sync.engine.outcomes import outcome_of
from l1nda_sync.engine.rest_resolution import resolve, resolve_known, same_reach
from l1nda_sync.engine.token_state import Outcome, StatePolicy, is_sharp_drop
from l1nda_sync.registry import locks
from l1nda_sync.registry.db import fetch_one

if TYPE_CHECKING:
    from psycopg2.extensions import cursor as Cursor

    from l1nda_sync.engine.checking import CheckRecord, TokenToCheck
    from l1nda_sync.masking import Secret
    from l1nda_sync.nmbrs.records import Probe
    from l1nda_sync.nmbrs.rest.config import RestApp
    from l1nda_sync.nmbrs.rest.grants import GrantStore, StoredGrant
    from l1nda_sync.nmbrs.rest.records import RestCredentials, RestReach

log = logging.getLogger(__name__)

REST_KIND = "rest_connection"
DRY_RUN_LOCK_TIMEOUT = "500ms"  # below PostgreSQL's deadlock_timeout (1 s): a dry run gives way first
REST_SETTINGS = ("the Airflow connection nmbrs_rest (type http: host = API base URL, login = client id, password = "
                 "client secret; extra: subscription_key, redirect_uri) or L1NDA_NMBRS_REST_CLIENT_ID, "
                 "L1NDA_NMBRS_REST_CLIENT_SECRET, L1NDA_NMBRS_REST_SUBSCRIPTION_KEY and L1NDA_NMBRS_REST_REDIRECT_URI")


class RestProber(Protocol):
    """What probing needs of the REST client (`RestClient`): what one connection reaches."""

    def probe(self, connection: RestCredentials, /) -> RestReach: ...


@dataclass(frozen=True, slots=True)
class RestChecking:
    """L1NDA's REST app, its client and the registry's grant store: all a connection's check needs."""

    app: RestApp
    client: RestProber
    store: GrantStore
    clock: Callable[[], datetime]  # the access tokens' 'now' (a refresh is due by this clock)
    reveal: Callable[[str], Secret] | None = None  # decrypts the access token the batch's load read

    def credentials(self, token: TokenToCheck) -> RestCredentials:
        from l1nda_sync.nmbrs.rest.grants import access_token
        from l1nda_sync.nmbrs.rest.records import RestCredentials

        handed: list[int] = []  # the generation of the access token handed out from the batch's read, if it was

        def access(force_refresh: bool) -> Secret:
            now = self.clock()
            if force_refresh:  # the API refused the token handed out: a rotation since then is used, not redone
                return access_token(self.app, self.store, token.id, now=now, force_refresh=True,
                                    refused=handed[-1] if handed else None)
            read = self._as_read(token, now)
            if read is not None and read.usable_at(now) is not None:
                handed.append(read.generation)
            return access_token(self.app, self.store, token.id, now=now, read=read)

        return RestCredentials(token.id, access, token.scopes)

    def _as_read(self, token: TokenToCheck, now: datetime) -> StoredGrant | None:
        """The grant as the batch's load read it (`TokenToCheck.access_read`): a connection whose access token is
        still good then costs no read of its own. The token is decrypted only when it is good; one that is not
        goes to the refresh, which reads the row again under the lock."""
        from l1nda_sync.nmbrs.rest.grants import StoredGrant, lasts

        if token.access_read is None or self.reveal is None:
            return None
        ciphertext, expires_at, generation = token.access_read
        if ciphertext is None or not lasts(expires_at, now):
            return StoredGrant(None, None, expires_at, generation)
        return StoredGrant(None, self.reveal(ciphertext), expires_at, generation)

    def release(self) -> None:
        """Close what the store keeps open between checks (its idle read connections), if it keeps any."""
        close = getattr(self.store, "close", None)
        if callable(close):
            close()


class RestAppMissing(RuntimeError):
    """REST connections are due but L1NDA's Nmbrs REST app is not configured: a deployment fault."""

    def __init__(self, token_ids: Sequence[int]) -> None:
        self.token_ids = sorted(token_ids)
        shown = ", ".join(map(str, self.token_ids[:20])) + (" ..." if len(self.token_ids) > 20 else "")
        super().__init__(
            f"L1NDA's Nmbrs REST app is not configured, so REST connection(s) {shown} were not checked and nothing "
            f"about them changed. Set {REST_SETTINGS} on every worker; `l1nda-sync settings` shows them."
        )


def probe_connection(token: TokenToCheck, *, rest: RestChecking | None, checked_at: datetime,
                     started: Callable[[], int]) -> CheckRecord:
    """Probe one REST connection; never raises. A valid answer carries its `RestReach` (UUIDs) for
    `finish_rest`; `started()` gives the milliseconds since the probe began."""
    from l1nda_sync.engine.checking import CheckRecord
    from l1nda_sync.registry.errors import EncryptionKeyError

    if rest is None:
        return CheckRecord(token.id, checked_at, Outcome.UNKNOWN, None, None, None, 0, 0, None, no_rest_app=True)
    try:
        reach = rest.client.probe(rest.credentials(token))
    except EncryptionKeyError:
        return CheckRecord(token.id, checked_at, Outcome.UNKNOWN, None, None, None, 0, 0, None, undecryptable=True)
    except Exception as exc:
        outcome, code, missing = outcome_of(exc)
        if outcome is Outcome.UNKNOWN and code is None:
            log.warning("REST connection %s: unexpected %s during probe", token.id, type(exc).__name__)
        return CheckRecord(token.id, checked_at, outcome, code, f"{type(exc).__name__}: {exc}"[:500], missing,
                           started(), getattr(exc, "calls", None) or 0, None)
    return CheckRecord(token.id, checked_at, Outcome.VALID, None, None, None, started(), reach.calls, None,
                       debtors=len(reach.debtors), companies=len(reach.companies), rest_reach=reach)


def finish_rest(cur: Cursor, records: Sequence[CheckRecord], tokens: Sequence[TokenToCheck], *,
                policy: StatePolicy, dry_run: bool = False) -> list[CheckRecord]:
    """Resolve the UUIDs of every valid REST probe (in the caller's transaction, before the checks are stored)
    and judge it as a SOAP probe is judged (unchanged, reach drop). A resolution that fails (a SOAP id out of
    range, ...) is rolled back to its savepoint and stored as `unknown`: the connection's state stays."""
    by_id = {t.id: t for t in tokens}
    probed = [r for r in records if r.rest_reach is not None]
    with _giving_way(cur, dry_run):
        settled = (_together(cur, probed, all_or_nothing=False) or {}) if dry_run else _settled(cur, probed)
        return [r if r.rest_reach is None else _judged(r, by_id[r.token_id], settled[r.token_id], policy)
                if r.token_id in settled else _finish_one(cur, r, by_id[r.token_id], policy) for r in records]


def _settled(cur: Cursor, probed: Sequence[CheckRecord]) -> dict[int, Probe]:
    """The probes of the connections whose every company and debtor is known and stays as stored, resolved for the
    whole batch at once (`resolve_known`): a handful of statements instead of ten per connection. The others are
    resolved one by one (`_finish_one`), which stores entities; should the bulk read fail, nothing of it stays and
    every connection is resolved on its own, under its own savepoint.

    A batch that stores entities takes the writers' lock first (`locks.lock_rest_entity_writes`), before any entity
    row lock: what the bulk read locked is undone with its savepoint, the lock taken, and the read done again.
    Two storing batches locking rows in different orders deadlocked (PostgreSQL aborted one after a second, and
    its connection's check was `unknown`: seen in `make bench`); a batch that only refreshes known entities takes
    no such lock and never waits (`rest_entities.mark_seen`)."""
    if not probed:
        return {}
    settled = _together(cur, probed, all_or_nothing=True)
    if settled is not None and len(settled) == len(probed):
        return settled
    locks.lock_rest_entity_writes(cur)
    if not settled:  # the bulk read failed or settled none: each connection on its own, under the lock
        return {}
    return _together(cur, probed, all_or_nothing=False) or {}


@contextmanager
def _giving_way(cur: Cursor, dry_run: bool) -> Iterator[None]:
    """A dry run's resolution: its transaction lives until the whole run is previewed (minutes), so it never takes
    the writers' lock (every real batch that stores would wait for it), and it gives way on an entity row a real
    writer holds (`DRY_RUN_LOCK_TIMEOUT`: that connection is `unknown` in the preview) instead of making it wait.
    The transaction's own lock time-out is back afterwards."""
    if not dry_run:
        yield
        return
    cur.execute("SHOW lock_timeout")
    before = str(fetch_one(cur)[0])
    cur.execute("SET LOCAL lock_timeout = %s", (DRY_RUN_LOCK_TIMEOUT,))
    yield
    cur.execute("SET LOCAL lock_timeout = %s", (before,))


def _together(cur: Cursor, probed: Sequence[CheckRecord], *, all_or_nothing: bool) -> dict[int, Probe] | None:
    """`resolve_known` under a savepoint: None (undone) when it fails; with `all_or_nothing`, undone also when it
    settles only some of the connections (those settled are still returned)."""
    cur.execute("SAVEPOINT rest_known")
    try:
        settled = resolve_known(cur, [(r.token_id, r.rest_reach, r.checked_at) for r in probed
                                      if r.rest_reach is not None])
    except Exception as exc:
        cur.execute("ROLLBACK TO SAVEPOINT rest_known")
        log.warning("REST connections: their known companies could not be resolved together (%s); resolving "
                    "each on its own", type(exc).__name__)
        return None
    cur.execute("ROLLBACK TO SAVEPOINT rest_known" if all_or_nothing and len(settled) < len(probed)
                else "RELEASE SAVEPOINT rest_known")
    return settled


def _finish_one(cur: Cursor, record: CheckRecord, token: TokenToCheck, policy: StatePolicy) -> CheckRecord:
    reach = record.rest_reach
    assert reach is not None
    cur.execute("SAVEPOINT rest_resolution")
    try:
        probe = resolve(cur, token.id, reach, at=record.checked_at)
    except Exception as exc:
        cur.execute("ROLLBACK TO SAVEPOINT rest_resolution")
        log.warning("REST connection %s: its companies could not be resolved: %s", token.id, type(exc).__name__)
        return replace(record, outcome=Outcome.UNKNOWN, detail=f"resolving REST ids: {type(exc).__name__}: {exc}"
                       [:500], rest_reach=None, debtors=None, companies=None)
    cur.execute("RELEASE SAVEPOINT rest_resolution")
    return _judged(record, token, probe, policy)


def _judged(record: CheckRecord, token: TokenToCheck, probe: Probe, policy: StatePolicy) -> CheckRecord:
    """A resolved REST probe judged as a SOAP probe is: unchanged, or a sharp reach drop to confirm. A stored probe
    that cannot be read makes the check `unknown` (its state stays), as for a SOAP token, not the batch's failure."""
    try:
        previous = token.previous_probe()
        if previous is not None:
            previous.read_records()
    except ValueError as exc:
        return replace(record, outcome=Outcome.UNKNOWN, detail=f"{type(exc).__name__}: {exc}"[:500], rest_reach=None,
                       debtors=None, companies=None)
    unchanged = same_reach(probe, previous)
    outcome, detail = Outcome.VALID, None
    if previous is not None and is_sharp_drop(len(previous.companies), len(probe.companies), policy):
        outcome = Outcome.REACH_DROP
        detail = f"reach dropped from {len(previous.companies)} to {len(probe.companies)} companies: confirming"
    return replace(record, outcome=outcome, detail=detail, unchanged=unchanged,
                   probe=None if unchanged else probe.to_dict(), rest_reach=None)
