"""Check and discover: probe a batch of tokens on the process's probe workers and record what each probe found.

Nothing here decides a token's fate: results are stored as pending checks, and the apply step decides once
the whole run is known (the circuit breaker needs every batch). One thing is judged here, because only here is
the previous reach at hand for free: a valid answer whose reach dropped sharply is stored as `reach_drop`, so
that it is confirmed before the stored reach changes and counted by the circuit breaker. Secrets: tokens are
decrypted one at a time inside the worker that calls Nmbrs, and only the check's outcome, counts and the
probe's plain data are kept.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from l1nda_sync.engine.outcomes import outcome_of
from l1nda_sync.engine.token_state import Outcome, StatePolicy, is_sharp_drop

if TYPE_CHECKING:
    from psycopg2.extensions import cursor as Cursor

    from l1nda_sync.engine.rest_checking import RestChecking
    from l1nda_sync.masking import Secret
    from l1nda_sync.nmbrs import Credentials, Probe
    from l1nda_sync.nmbrs.rest.records import RestReach

log = logging.getLogger(__name__)


class Prober(Protocol):
    """What probing needs of the Nmbrs client (`NmbrsClient`): one token's reach, reusing the previous probe."""

    def probe(self, credentials: Credentials, previous: Probe | None = None, /) -> Probe: ...


@dataclass(frozen=True, slots=True)
class TokenToCheck:
    """A token as a probe needs it: its login, the stored probe and the encrypted secret. A REST connection
    (`kind` rest_connection) has no ciphertext here (its grant lives in rest_connections) but its scopes."""

    id: int
    username: str
    domain: str | None
    probe_cache: dict[str, Any] | None
    ciphertext: str | None = field(repr=False)
    kind: str = "soap_token"
    scopes: tuple[str, ...] | None = None
    # As `load_tokens` reads the stored probe: `probe_cache` without its records, which are these JSON texts (None:
    # no such key) and counts (None: not a list), read only when the probe needs them (`StoredRecords`).
    stored_records: tuple[str | None, str | None, int | None, int | None] | None = field(default=None, repr=False)
    # A REST connection's cached access token as the load read it: (ciphertext or None, expiry, generation).
    access_read: tuple[str | None, datetime | None, int] | None = field(default=None, repr=False)

    def previous_probe(self) -> Probe | None:
        """The stored probe, or None when there is none; raises ValueError when it cannot be read."""
        from l1nda_sync.nmbrs import Probe

        if self.stored_records is None:
            return Probe.from_dict(self.probe_cache) if self.probe_cache else None
        debtors, companies, debtor_count, company_count = self.stored_records
        if not self.probe_cache and debtors is None and companies is None:
            return None  # as a whole: a stored probe that is falsy ({}, [], 0, "", false, null) is none
        return Probe.from_stored(self.probe_cache, debtors, companies, debtor_count=debtor_count,
                                 company_count=company_count)


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """One probe's result, as stored in `checks` until applied."""

    token_id: int
    checked_at: datetime
    outcome: Outcome
    fault_code: int | None
    detail: str | None
    missing_operation: str | None
    duration_ms: int
    calls: int
    probe: dict[str, Any] | None  # None when it failed, or when it equals the stored probe (unchanged)
    unchanged: bool = False
    debtors: int | None = None
    companies: int | None = None
    undecryptable: bool = False  # the configured keys cannot read the token: a deployment fault, never stored
    no_rest_app: bool = False  # a REST connection while no REST app is configured: a deployment fault, never stored
    rest_reach: RestReach | None = field(default=None, repr=False)  # a valid REST probe's UUIDs, until resolved


class KeysCannotDecrypt(RuntimeError):
    """The configured Fernet keys cannot read some tokens: a deployment fault, not an Nmbrs one."""

    def __init__(self, token_ids: Sequence[int]) -> None:
        self.token_ids = sorted(token_ids)
        shown = ", ".join(map(str, self.token_ids[:20])) + (" ..." if len(self.token_ids) > 20 else "")
        super().__init__(
            f"L1NDA_FERNET_KEYS cannot decrypt token(s) {shown}: these tokens were not checked and nothing about "
            "them changed. Set L1NDA_FERNET_KEYS (or the Airflow Variable l1nda_fernet_keys) on every worker to "
            "this deployment's keys, newest first; `l1nda-sync keys check` shows which key reads which token."
        )


def load_tokens(cur: Cursor, token_ids: Sequence[int]) -> list[TokenToCheck]:
    """The tokens (and REST connections) to probe, in the order of `token_ids` (the plan's: heaviest first).

    Each stored probe comes in parts: its records as JSON text, read only when the probe needs them (an unchanged
    answer never does), and the rest (`TokenToCheck.stored_records`)."""
    cur.execute(
        f"""SELECT t.id, t.username, t.domain,
                  CASE WHEN jsonb_typeof(t.probe_cache) = 'object' THEN t.probe_cache - 'debtors' - 'companies'
                       ELSE t.probe_cache END,
                  {_STORED_RECORDS}, t.token_ciphertext, t.kind, r.scopes,
                  r.access_ciphertext, r.access_expires_at, r.generation
           FROM tokens t LEFT JOIN rest_connections r ON r.token_id = t.id
           WHERE t.id = ANY(%s)""",
        (list(token_ids),),
    )
    place = {token_id: n for n, token_id in enumerate(token_ids)}
    rows = sorted(cur.fetchall(), key=lambda row: place[row[0]])
    return [TokenToCheck(i, user, domain, head, cipher, kind, None if scopes is None else tuple(scopes),
                         stored_records=(debtors, companies, debtor_count, company_count),
                         access_read=None if generation is None else (access, expires_at, int(generation)))
            for (i, user, domain, head, debtors, companies, debtor_count, company_count, cipher, kind, scopes,
                 access, expires_at, generation) in rows]


# A stored probe's two record lists as text, and their lengths where they are lists (see `load_tokens`).
_STORED_RECORDS = ", ".join(
    [f"(t.probe_cache -> '{key}')::text" for key in ("debtors", "companies")]
    + [f"CASE WHEN jsonb_typeof(t.probe_cache -> '{key}') = 'array' "
       f"THEN jsonb_array_length(t.probe_cache -> '{key}') END" for key in ("debtors", "companies")]
)


def probe_one(
    token: TokenToCheck,
    *,
    reveal: Callable[[str], Secret],
    client: Prober,
    now: Callable[[], datetime],
    policy: StatePolicy | None = None,
    rest: RestChecking | None = None,
) -> CheckRecord:
    """Probe one token; never raises (a fault on one token never stops the others). A REST connection is probed
    through `rest` (`engine.rest_checking`); its UUIDs are resolved later, by `finish_rest`."""
    from l1nda_sync.nmbrs import Credentials
    from l1nda_sync.registry.errors import EncryptionKeyError

    policy = policy or StatePolicy()
    started = time.monotonic()
    checked_at = now()  # when the probe began: a replacement after this moment supersedes it
    if token.kind == "rest_connection":
        from l1nda_sync.engine.rest_checking import probe_connection

        return probe_connection(token, rest=rest, checked_at=checked_at,
                                started=lambda: int((time.monotonic() - started) * 1000))
    if token.ciphertext is None:  # a SOAP row always holds its secret (0007 made the column nullable for REST)
        return CheckRecord(token.id, checked_at, Outcome.UNKNOWN, None, "no secret stored", None, 0, 0, None)
    probe: dict[str, Any] | None = None
    calls = 0
    unchanged = False
    debtors = companies = None
    try:
        secret = reveal(token.ciphertext)
    except EncryptionKeyError:
        return CheckRecord(token.id, checked_at, Outcome.UNKNOWN, None, None, None, 0, 0, None, undecryptable=True)
    try:
        previous = token.previous_probe()
        result = client.probe(Credentials(token.username, secret, token.domain), previous)
        calls = result.calls
        debtors, companies = len(result.debtors), len(result.companies)
        # Unchanged = nothing to write but the check itself: a reused mapping, the same domain and the same
        # records (a fully refreshed probe is stored, so the cache learns the new mapping time). Comparing the
        # typed records costs far less than building two reaches, and most checks of a healthy token end here.
        # Answers whose bytes changed while their records did not are stored too, so that the next probe can
        # skip reading them (`answer_digest`); records read from the same bytes are the stored ones themselves.
        unchanged = (
            previous is not None
            and result.mapping_reused
            and result.domain == token.domain
            and result.answer_digests == previous.answer_digests
            and result.debtors == previous.debtors
            and result.companies == previous.companies
        )
        probe = None if unchanged else result.to_dict()
        if previous is not None and not unchanged:
            previous.read_records()  # a damaged stored list is `unknown`, never a count a drop is judged by
        outcome, code, missing, detail = Outcome.VALID, None, None, None
        if previous is not None and is_sharp_drop(len(previous.companies), companies, policy):
            outcome = Outcome.REACH_DROP
            detail = f"reach dropped from {len(previous.companies)} to {companies} companies: confirming"
    except Exception as exc:
        outcome, code, missing = outcome_of(exc)
        detail = f"{type(exc).__name__}: {exc}"[:500]
        # The client counts the requests a failed probe sent; a probe that ended but could not be judged (its
        # stored records unreadable) sent its own. Nothing of such a probe is kept: it is `unknown`.
        calls = getattr(exc, "calls", None) or calls
        probe, unchanged, debtors, companies = None, False, None, None
        if outcome is Outcome.UNKNOWN and code is None:
            log.warning("token %s: unexpected %s during probe", token.id, type(exc).__name__)
    duration_ms = int((time.monotonic() - started) * 1000)
    return CheckRecord(
        token_id=token.id, checked_at=checked_at, outcome=outcome, fault_code=code, detail=detail,
        missing_operation=missing, duration_ms=duration_ms, calls=calls,
        probe=probe, unchanged=unchanged, debtors=debtors, companies=companies,
    )


def probe_all(
    tokens: Iterable[TokenToCheck],
    *,
    reveal: Callable[[str], Secret],
    client: Prober,
    now: Callable[[], datetime],
    threads: int,
    policy: StatePolicy | None = None,
    rest: RestChecking | None = None,
) -> list[CheckRecord]:
    """Probe every token on the process's probe workers (`probe_pool`, shared with any other batch checked at
    once, first come, first served); the records in the tokens' order."""
    from l1nda_sync.engine.probe_pool import probe_pool

    tokens = list(tokens)
    if not tokens:
        return []
    return list(probe_pool(threads).map(
        lambda t: probe_one(t, reveal=reveal, client=client, now=now, policy=policy, rest=rest), tokens))


def store_checks(cur: Cursor, run_id: int | None, records: Iterable[CheckRecord]) -> dict[int, int]:
    """Insert the pending checks in one statement. An unchanged probe is stored without its (large) data.
    Returns each stored check's id by its token's id."""
    from psycopg2.extras import execute_values

    rows = [
        (
            r.token_id, run_id, r.checked_at, r.outcome.value, r.fault_code, r.detail, r.missing_operation,
            r.duration_ms, r.calls, r.debtors, r.companies, r.unchanged,
            None if (r.probe is None or r.unchanged) else json.dumps(r.probe),
        )
        for r in records
    ]
    if not rows:
        return {}
    stored = execute_values(
        cur,
        """INSERT INTO checks (token_id, run_id, checked_at, outcome, fault_code, detail, missing_operation,
                               duration_ms, calls, debtors, companies, unchanged, probe)
           VALUES %s RETURNING token_id, id""",
        rows,
        template="(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
        page_size=1000,
        fetch=True,
    )
    return {token_id: check_id for token_id, check_id in stored}
