"""Finishing a consent for `connections finish`: read the callback, exchange the code, probe once.

What is the customer's or the operator's to fix (a denied consent, a spent or expired code, a missing scope, no
subscription, a withdrawn consent) is bad input: InvalidInput naming --callback-url, exit 2, nothing written.
L1NDA's own app refused (`invalid_client`) is configuration (exit 1). Nmbrs not answering is NmbrsUnavailable
(exit 1), also with nothing written. No message holds a code, verifier or token.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from l1nda_sync.cli.checking import NmbrsUnavailable
from l1nda_sync.nmbrs.errors import (
    AuthorizationError,
    ConsentDenied,
    ConsentRevoked,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    NmbrsError,
)
from l1nda_sync.registry.connections import CALLBACK_FIELD, START_AGAIN
from l1nda_sync.registry.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    from l1nda_sync.nmbrs.rest.config import RestApp
    from l1nda_sync.nmbrs.rest.oauth import Callback, Grant
    from l1nda_sync.nmbrs.rest.records import RestReach
    from l1nda_sync.registry.connections import Authorization
    from l1nda_sync.settings import Settings

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


@dataclass(frozen=True, slots=True)
class Reached:
    """What the new connection reaches, with who consented: as the probe saw it (UUIDs and numbers)."""

    user_id: str
    user_email: str
    debtors: list[dict[str, Any]] = field(default_factory=list)
    companies: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0

    @property
    def debtor_ids(self) -> tuple[str, ...]:
        return tuple(str(d["uuid"]) for d in self.debtors)

    @classmethod
    def of(cls, reach: RestReach) -> Reached:
        """From the probe's records; the consenting user is required (scope user.info.read)."""
        user = reach.user
        if user is None or not user.user_id or not user.email:
            raise InvalidInput(CALLBACK_FIELD, "the consent did not grant user.info.read, so Nmbrs does not say who "
                                               "consented (L1NDA keeps one connection per user); ask the customer to "
                                               "consent again and allow it. Nothing was written.")
        data = reach.to_dict()
        return cls(user.user_id, user.email, data["debtors"], data["companies"], reach.calls)


def start_again(authorization: Authorization) -> str:
    """What to do after a failed finish, as a command for the same customer, contact and language (and label)."""
    argv = ["l1nda-sync", "connections", "start", "--customer", authorization.customer_ref, "--contact",
            authorization.contact, "--language", authorization.language]
    if authorization.label:
        argv += ["--label", authorization.label]
    return f"start a new consent with `{shlex.join(argv)}` and send the customer the new link"


def read_callback(url: str) -> Callback:
    """The callback URL as Nmbrs sent it; a denied consent or an error answer is InvalidInput."""
    from l1nda_sync.nmbrs.rest.oauth import parse_callback

    try:
        return parse_callback(url)
    except ValueError as exc:
        raise InvalidInput(CALLBACK_FIELD, str(exc)) from None
    except ConsentDenied:
        raise InvalidInput(CALLBACK_FIELD, "the customer denied the consent in Nmbrs (access_denied); nothing was "
                                           "written. When they want to connect after all, " + START_AGAIN) from None
    except InvalidScope as exc:
        why = exc.description or "invalid_scope"
        raise InvalidInput(CALLBACK_FIELD, f"Nmbrs refused the scopes L1NDA asked for ({why}); check "
                                           "L1NDA_NMBRS_REST_SCOPES against the app's scopes in "
                                           "Nmbrs' developer portal; nothing was written") from None
    except AuthorizationError as exc:
        raise InvalidInput(CALLBACK_FIELD, f"Nmbrs answered the consent with an error ({exc.error}); nothing was "
                                           "written; " + START_AGAIN) from None


def exchange(app: RestApp, code: str, verifier: str) -> Grant:
    """The first grant for a callback's code."""
    from l1nda_sync.nmbrs.rest.oauth import exchange_code

    try:
        return exchange_code(app, code, verifier, now=datetime.now(UTC))
    except InvalidGrant:
        raise InvalidInput(CALLBACK_FIELD, "Nmbrs refused the code: it was used already or is older than 5 "
                                           "minutes (a code is single use and short-lived); nothing was written; "
                                           + START_AGAIN) from None
    except InvalidClient as exc:
        raise ConfigError(f"Nmbrs refused L1NDA's own app: {exc}; nothing was written") from None
    except AuthorizationError as exc:
        raise InvalidInput(CALLBACK_FIELD, f"Nmbrs refused the code ({exc.error}); nothing was written; "
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
        raise InvalidInput(CALLBACK_FIELD, _REFUSALS["consent_revoked"] + f"Nothing was written ({str(exc)[:200]}); "
                           + again) from None
    except NmbrsError as exc:
        message = _REFUSALS.get(getattr(exc, "outcome", ""))
        if message is None:
            raise NmbrsUnavailable(f"Nmbrs could not be asked what the connection reaches ({str(exc)[:300]}); "
                                   "nothing was written; " + again) from None
        text = message.format(operation=getattr(exc, "operation", None) or "?", code=getattr(exc, "code", None) or "")
        raise InvalidInput(CALLBACK_FIELD, text + "Nothing was written.") from None
    return Reached.of(reach), latest_grant


def abandon(app: RestApp, grant: Grant, failure: BaseException, again: str) -> InvalidInput:
    """After the code was exchanged, finishing failed (the probe, the store, the commit): nothing is written, so
    the grant is revoked at Nmbrs (no orphan grant with L1NDA's app) and the operator is told plainly that this
    consent is spent: a new consent link is needed. The error to raise (exit 2)."""
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
    return InvalidInput(CALLBACK_FIELD, f"finishing the consent failed after its code was exchanged ({why}); "
                                        f"nothing was written and {revoked}. This consent is used up and cannot "
                                        f"be finished again: {again}")
