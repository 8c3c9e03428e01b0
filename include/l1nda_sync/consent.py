"""Finishing a customer's consent to L1NDA's Nmbrs REST app: read the callback, exchange the code, probe once,
store the connection; shared by `l1nda-sync connections finish` and the customer page's callback.

What is the customer's or the operator's to fix (a denied consent, a spent or expired code, a missing scope, no
subscription, a withdrawn consent) is `ConsentRefused` (an InvalidInput naming --callback-url, with a short `code`
the customer page shows), nothing written. L1NDA's own app refused (`invalid_client`) is configuration
(ConfigError). Nmbrs not answering is NmbrsUnavailable, also with nothing written. No message holds a code,
verifier or token.

`activate` and `reconcile_customer` are what the customer page adds after storing: the probe applied as a check
at once (the connection is active and its reach known, as `tokens add` does for a token) and the customer's
links brought in line, so the page can say which links activate.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from l1nda_sync.nmbrs.errors import (
    AuthorizationError,
    ConsentDenied,
    ConsentRevoked,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    NmbrsError,
)
from l1nda_sync.registry import db
from l1nda_sync.registry.connections import CALLBACK_FIELD, START_AGAIN, ConnectionStore, Consent, state_hash
from l1nda_sync.registry.errors import ConfigError, InvalidInput
from l1nda_sync.token_check import NmbrsUnavailable

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor

    from l1nda_sync.engine.applying import AppliedCheck
    from l1nda_sync.engine.link_rules import LinkChange
    from l1nda_sync.nmbrs.rest.config import RestApp
    from l1nda_sync.nmbrs.rest.oauth import Callback, Grant
    from l1nda_sync.nmbrs.rest.records import RestReach
    from l1nda_sync.registry.connections import Authorization, SavedConnection
    from l1nda_sync.settings import Settings

__all__ = ["ConsentRefused", "Finished", "Reached", "abandon", "activate", "exchange", "finish", "probe",
           "read_callback", "reconcile_customer", "start_again", "state_problem"]

_REFUSALS = {
    "rights_missing": "the consent lacks scope {operation}, which listing the customer's companies needs; ask the "
                      "customer to consent again and allow it. ",
    "no_subscription": "Nmbrs answered {code}: the customer's environment has no valid subscription; the customer "
                       "must renew it, then consent again. ",
    "consent_revoked": "Nmbrs no longer accepts this consent (consent_revoked): the customer withdrew L1NDA's "
                       "access in Nmbrs (App Manager) or the consent expired before it was finished. ",
    "invalid": "Nmbrs refused the new access token. ",
    "data_not_allowed": "Nmbrs refused a debtor the consent itself listed (the user's rights changed?). ",
}
# The customer page's error code for each refusal of the probe.
_PROBE_CODES = {"rights_missing": "invalid_scope", "no_subscription": "no_subscription", "consent_revoked": "denied",
                "invalid": "denied", "data_not_allowed": "denied"}


class ConsentRefused(InvalidInput):
    """A consent that cannot be finished for a reason the customer or operator can fix; `code` is the page's
    error code: denied, invalid_scope, code_reused, bad_state, expired, no_subscription."""

    def __init__(self, code: str, message: str, field: str = CALLBACK_FIELD) -> None:
        super().__init__(field, message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Reached:
    """What the new connection reaches, with who consented: as the probe saw it (UUIDs and numbers)."""

    user_id: str
    user_email: str
    debtors: list[dict[str, Any]] = field(default_factory=list)
    companies: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0
    reach: RestReach | None = field(default=None, repr=False, compare=False)

    @property
    def debtor_ids(self) -> tuple[str, ...]:
        return tuple(str(d["uuid"]) for d in self.debtors)

    @classmethod
    def of(cls, reach: RestReach) -> Reached:
        """From the probe's records; the consenting user is required (scope user.info.read)."""
        user = reach.user
        if user is None or not user.user_id or not user.email:
            raise ConsentRefused("invalid_scope", "the consent did not grant user.info.read, so Nmbrs does not say "
                                                  "who consented (L1NDA keeps one connection per user); ask the "
                                                  "customer to consent again and allow it. Nothing was written.")
        data = reach.to_dict()
        return cls(user.user_id, user.email, data["debtors"], data["companies"], reach.calls, reach)


def start_again(authorization: Authorization) -> str:
    """What to do after a failed finish, as a command for the same customer, contact and language (and label)."""
    argv = ["l1nda-sync", "connections", "start", "--customer", authorization.customer_ref, "--contact",
            authorization.contact, "--language", authorization.language]
    if authorization.label:
        argv += ["--label", authorization.label]
    return f"start a new consent with `{shlex.join(argv)}` and send the customer the new link"


def read_callback(url: str) -> Callback:
    """The callback URL as Nmbrs sent it; a denied consent or an error answer is ConsentRefused."""
    from l1nda_sync.nmbrs.rest.oauth import parse_callback

    try:
        return parse_callback(url)
    except ValueError as exc:
        raise ConsentRefused("bad_state", str(exc)) from None
    except ConsentDenied:
        raise ConsentRefused("denied", "the customer denied the consent in Nmbrs (access_denied); nothing was "
                                       "written. When they want to connect after all, " + START_AGAIN) from None
    except InvalidScope as exc:
        why = exc.description or "invalid_scope"
        raise ConsentRefused("invalid_scope", f"Nmbrs refused the scopes L1NDA asked for ({why}); check "
                                              "L1NDA_NMBRS_REST_SCOPES against the app's scopes in "
                                              "Nmbrs' developer portal; nothing was written") from None
    except AuthorizationError as exc:
        raise ConsentRefused("denied", f"Nmbrs answered the consent with an error ({exc.error}); nothing was "
                                       "written; " + START_AGAIN) from None


def state_problem(cur: Cursor, state: str | None, now: datetime) -> ConsentRefused | None:
    """Why a callback's state cannot be taken (unknown: bad_state, taken: code_reused, expired), else None."""
    if not state:
        return ConsentRefused("bad_state", "has no state parameter: copy the whole address the browser was sent to "
                                           "after the consent")
    cur.execute("SELECT used_at IS NOT NULL, expires_at <= %s FROM rest_authorizations WHERE state_hash = %s",
                (now, state_hash(state)))
    row = cur.fetchone()
    if row is None:
        return ConsentRefused("bad_state", "its state matches no consent started here; " + START_AGAIN)
    if row[0]:
        return ConsentRefused("code_reused", "this consent was finished already; a callback is used once")
    if row[1]:
        return ConsentRefused("expired", "this consent expired before it was finished; " + START_AGAIN)
    return None


def exchange(app: RestApp, code: str, verifier: str) -> Grant:
    """The first grant for a callback's code."""
    from l1nda_sync.nmbrs.rest.oauth import exchange_code

    try:
        return exchange_code(app, code, verifier, now=datetime.now(UTC))
    except InvalidGrant:
        raise ConsentRefused("code_reused", "Nmbrs refused the code: it was used already or is older than 5 "
                                            "minutes (a code is single use and short-lived); nothing was written; "
                             + START_AGAIN) from None
    except InvalidClient as exc:
        raise ConfigError(f"Nmbrs refused L1NDA's own app: {exc}; nothing was written") from None
    except AuthorizationError as exc:
        raise ConsentRefused("denied", f"Nmbrs refused the code ({exc.error}); nothing was written; "
                             + START_AGAIN) from None
    except NmbrsError as exc:
        raise NmbrsUnavailable(f"Nmbrs' identity server could not be asked ({str(exc)[:300]}); nothing was written. "
                               "The code may be spent already: if finishing again says so, " + START_AGAIN) from None


def probe(settings: Settings, app: RestApp, grant: Grant, *, again: str = START_AGAIN,
          latest: list[Grant] | None = None) -> tuple[Reached, Grant]:
    """Probe the new connection once (all debtors, then each debtor's companies, and who consented). Returns what
    it reaches and the grant to store (a refresh during the probe rotates it). `again` says how to start over
    (`start_again` of the consent being finished); `latest` receives the newest grant even when the probe fails."""
    from l1nda_sync.nmbrs.rest.client import probe_grant

    try:
        reach, latest_grant = probe_grant(settings, app, grant, latest=latest)
    except ConsentRevoked as exc:
        raise ConsentRefused("denied", _REFUSALS["consent_revoked"] + f"Nothing was written ({str(exc)[:200]}); "
                             + again) from None
    except NmbrsError as exc:
        outcome = getattr(exc, "outcome", "")
        message = _REFUSALS.get(outcome)
        if message is None:
            raise NmbrsUnavailable(f"Nmbrs could not be asked what the connection reaches ({str(exc)[:300]}); "
                                   "nothing was written; " + again) from None
        text = message.format(operation=getattr(exc, "operation", None) or "?", code=getattr(exc, "code", None) or "")
        raise ConsentRefused(_PROBE_CODES.get(outcome, "denied"), text + "Nothing was written.") from None
    return Reached.of(reach), latest_grant


def abandon(app: RestApp, grant: Grant, failure: BaseException, again: str) -> InvalidInput:
    """After the code was exchanged, finishing failed (the probe, the store, the commit): nothing is written, so
    the grant is revoked at Nmbrs (no orphan grant with L1NDA's app) and the operator is told plainly that this
    consent is spent: a new consent link is needed. The error to raise (exit 2); it keeps the failure's `code`."""
    from l1nda_sync.nmbrs.rest.oauth import revoke

    why = str(failure).strip().splitlines()[0][:300] if str(failure).strip() else type(failure).__name__
    revoked = "its grant was revoked at Nmbrs"
    if grant.refresh_token is None:
        revoked = "it holds no refresh token to revoke"
    else:
        try:
            revoke(app, grant.refresh_token)
        except NmbrsError as exc:
            revoked = (f"revoking its grant at Nmbrs failed too ({str(exc)[:200]}); the customer may remove "
                       "L1NDA in Nmbrs' App Manager")
    return ConsentRefused(getattr(failure, "code", "failed"),
                          f"finishing the consent failed after its code was exchanged ({why}); nothing was written "
                          f"and {revoked}. This consent is used up and cannot be finished again: {again}")


@dataclass(frozen=True, slots=True)
class Finished:
    """A finished consent: the stored connection and what it reaches."""

    saved: SavedConnection
    reached: Reached
    authorization: Authorization


# Called inside the finishing transaction: after the authorization is taken (before the code is exchanged), and
# after the connection is saved (before the commit). Raising rolls everything back.
Taken = Callable[["Cursor", "Authorization"], None]
Saved = Callable[["Cursor", "Authorization", "SavedConnection", Reached], None]


def finish(conn: Connection, settings: Settings, app: RestApp, callback: Callback, *, actor: str,
           taken: Taken | None = None, saved: Saved | None = None) -> Finished:
    """Take the callback's started consent, exchange its code, probe the grant and store the connection, all in
    one transaction (or none of it). Once the code was exchanged, a failure revokes the grant (`abandon`)."""
    store = ConnectionStore.from_settings(settings)
    from l1nda_sync.registry.tokens import TokenStore

    TokenStore(store.cipher).refuse_foreign_keys(conn, action="stored")
    latest: list[Grant] = []  # the newest grant once the code is exchanged: revoked when finishing fails after
    again = START_AGAIN
    try:
        with db.transaction(conn) as cur:  # taken, exchanged, probed and stored, or none of it
            authorization = store.take_authorization(conn, callback.state)
            again = start_again(authorization)
            if taken is not None:
                taken(cur, authorization)
            assert callback.code is not None  # parse_callback raised for an answer without one
            grant = exchange(app, callback.code, authorization.code_verifier)
            latest.append(grant)
            reached, grant = probe(settings, app, grant, again=again, latest=latest)
            latest.append(grant)
            consent = Consent(app.client_id, reached.user_id, reached.user_email, reached.debtor_ids, grant)
            made = store.save_connection(conn, authorization, consent, actor=actor)
            if saved is not None:
                saved(cur, authorization, made, reached)
    except BaseException as failure:  # also an interrupt (Ctrl-C in `connections finish`): no orphan grant
        if not latest:
            raise  # nothing was exchanged: the consent can still be finished (or its own error says why not)
        refused = abandon(app, latest[-1], failure, again)
        if not isinstance(failure, Exception):
            failure.add_note(refused.message)
            raise
        raise refused from None
    return Finished(made, reached, authorization)


def activate(cur: Cursor, settings: Settings, token_id: int, reached: Reached, now: datetime) -> AppliedCheck | None:
    """Store the consent's probe as the connection's first check and apply it at once (in the caller's
    transaction), as a sync run would: the connection is active, its UUIDs have L1NDA keys, its reach is known."""
    from l1nda_sync.engine.applying import apply_check
    from l1nda_sync.engine.checking import CheckRecord, store_checks
    from l1nda_sync.engine.rest_resolution import resolve
    from l1nda_sync.engine.token_state import Outcome, StatePolicy
    from l1nda_sync.pipeline import compose_hooks
    from l1nda_sync.registry import locks

    assert reached.reach is not None
    locks.lock_rest_entity_writes(cur)  # as a check batch that stores entities: writers never wait on each other's rows
    resolved = resolve(cur, token_id, reached.reach, at=now)
    record = CheckRecord(token_id=token_id, checked_at=now, outcome=Outcome.VALID, fault_code=None,
                         detail="consent check", missing_operation=None, duration_ms=0, calls=reached.calls,
                         probe=resolved.to_dict(), debtors=len(resolved.debtors), companies=len(resolved.companies))
    check_id = store_checks(cur, None, [record])[token_id]
    applied = apply_check(cur, check_id, policy=StatePolicy.from_settings(settings), breaker_open=False, now=now,
                          run_id=None)
    if applied is not None:
        compose_hooks(settings).token_applied(cur, applied, run_id=None, now=now)
    return applied


def reconcile_customer(cur: Cursor, settings: Settings, customer_ref: str, now: datetime) -> list[LinkChange]:
    """Bring one customer's links in line now (in the caller's transaction), judging the circuit breaker as a run
    does (a tripped kind moves nothing); the alert and webhook hooks run as in a sync run."""
    from datetime import timedelta

    from l1nda_sync.engine.applying import judge_recent_by_kind
    from l1nda_sync.engine.reconciling import reconcile_all
    from l1nda_sync.pipeline import compose_hooks

    breakers = judge_recent_by_kind(cur, now=now, window=timedelta(seconds=settings.breaker_window),
                                    share=settings.breaker_share)
    return reconcile_all(cur, now=lambda: now, breaker_open=breakers.frozen, hooks=compose_hooks(settings),
                         customer_ref=customer_ref)
