"""The check `tokens add`, `tokens replace` and the customer page's token hand-over make: probe the token at Nmbrs
before it is stored. A runtime module (the customer page and `l1nda_sync.consent` use it), so it never imports the CLI.

Nmbrs refusing the token for a reason that is the token's (1001, a right switched off, no subscription) is bad
input: exit 2, nothing written. Nmbrs not answering (network, time-out, server fault) is nobody's verdict: the
token is registered 'new' with a warning and the next sync run checks it. A token Nmbrs accepted is stored as
a sync run would store that check (`record_check`): a row in `checks`, applied at once by the engine's own
apply step, so the token is `active`, its reach is known and it is next due after `check_interval_healthy`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from l1nda_sync.masking import Secret, mask
from l1nda_sync.nmbrs import Credentials, NmbrsError, Probe, get_client
from l1nda_sync.registry.errors import InvalidInput, RegistryError
from l1nda_sync.settings import Settings

if TYPE_CHECKING:
    from psycopg2.extensions import cursor as Cursor

    from l1nda_sync.engine.applying import AppliedCheck

# What to do when Nmbrs refuses a token for a reason that is the token's (exit 2, nothing written).
_REFUSALS = {
    "invalid": "Nmbrs does not accept this token ({code}): check the login e-mail and token (--username must be the "
               "login the token was made for, and the token copied whole; a reset makes the old token invalid) and "
               "--domain if given; or leave the check out with --no-check",
    "rights_missing": "Nmbrs answered {code} Unauthorized Access: the login's API user template has {operation} "
                      "switched off; switch it on in Nmbrs, then try again",
    "no_subscription": "Nmbrs answered {code}: the environment has no valid subscription; the customer must "
                       "renew it first",
    "data_not_allowed": "Nmbrs answered {code} while listing what the token reaches (the login's filter changed "
                        "under us); try again in a minute",
    "consent_revoked": "Nmbrs no longer accepts this consent (consent_revoked): the customer withdrew L1NDA's "
                       "access in Nmbrs (App Manager), or the consent expired; a REST connection is not a token, "
                       "so the customer consents again: `l1nda-sync connections start --customer REF --contact "
                       "EMAIL`, then `l1nda-sync connections finish --callback-url URL`",
}


class NmbrsUnavailable(RegistryError):
    """Nmbrs could not answer (network, time-out, server fault): not the token's fault (exit 1)."""


@dataclass(frozen=True, slots=True)
class ProbeSummary:
    """What a registration check found, as the CLI shows it: the domain, the environment, what the token reaches."""

    domain: str | None
    environment: str | None
    debtors: list[dict[str, Any]] = field(default_factory=list)
    companies: list[dict[str, Any]] = field(default_factory=list)

    def event_detail(self) -> dict[str, Any]:
        return {"checked": {"domain": self.domain, "debtors": len(self.debtors), "companies": len(self.companies)}}


def summarise(probe: Probe) -> ProbeSummary:
    data = probe.to_dict()
    environment = data.get("environment")
    if isinstance(environment, dict):
        environment = environment.get("domain") or environment.get("sub_domain")
    return ProbeSummary(
        domain=data.get("domain"), environment=environment,
        debtors=[dict(d) for d in data.get("debtors") or ()],
        companies=[dict(c) for c in data.get("companies") or ()],
    )


@dataclass(frozen=True, slots=True)
class Checked:
    """What the registration check found: Nmbrs accepted the token (`summary`, `probe`), or could not be asked
    (`warning`, `summary` None)."""

    summary: ProbeSummary | None
    probe: dict[str, Any] | None = field(default=None, repr=False)
    calls: int = 0
    duration_ms: int = 0
    warning: str | None = None

    @property
    def accepted(self) -> bool:
        return self.summary is not None

    def event_detail(self) -> dict[str, Any]:
        if self.summary is not None:
            return self.summary.event_detail()
        return {"checked": {"outcome": "transient", "detail": self.warning}}


def refuse_after_soap_end(settings: Settings, now: datetime | None = None) -> None:
    """Once Nmbrs ended SOAP (setting soap_end) a SOAP token can neither be checked nor used: InvalidInput."""
    now = now or datetime.now(UTC)
    if settings.soap_over(now):
        raise InvalidInput("token", f"Nmbrs ended its SOAP API on {settings.soap_end:%Y-%m-%d %H:%M %Z} (setting "
                                    "soap_end): a SOAP token can no longer be checked or used; connect the customer "
                                    "through REST instead (`l1nda-sync invite --purpose rest` or `l1nda-sync "
                                    "connections start`); nothing was written")


def check_token(settings: Settings, username: str, token: Secret, domain: str | None) -> Checked:
    """Probe once. A refusal that is the token's fault raises InvalidInput; an outage gives a warning."""
    started = time.monotonic()
    try:
        probe = _probe(settings, username, token, domain)
    except NmbrsUnavailable as exc:
        return Checked(None, warning=str(exc), duration_ms=int((time.monotonic() - started) * 1000))
    duration_ms = int((time.monotonic() - started) * 1000)
    return Checked(summarise(probe), probe.to_dict(), calls=probe.calls, duration_ms=duration_ms)


def probe_token(settings: Settings, username: str, token: Secret, domain: str | None) -> ProbeSummary:
    """Probe once. A refusal that is the token's fault raises InvalidInput; an outage NmbrsUnavailable."""
    return summarise(_probe(settings, username, token, domain))


def _probe(settings: Settings, username: str, token: Secret, domain: str | None) -> Probe:
    refuse_after_soap_end(settings)  # no SOAP call after soap_end, whoever asks
    try:
        return get_client(settings).probe(Credentials(username, token, domain))
    except NmbrsError as exc:
        text = str(exc).replace(token.reveal(), mask(token.reveal()))  # belt and braces: never echo a token
        text = text if len(text) <= 300 else text[:300] + "…"
        outcome = getattr(exc, "outcome", None)
        if outcome in _REFUSALS:
            operation = ".".join(p for p in (getattr(exc, "service", None), getattr(exc, "operation", None)) if p)
            message = _REFUSALS[outcome].format(code=getattr(exc, "code", None) or "", operation=operation or
                                                "an operation")
            raise InvalidInput("token", f"{message}; nothing was written ({text})") from None
        raise NmbrsUnavailable(f"Nmbrs could not be asked ({text})") from None


def record_check(cur: Cursor, token_id: int, checked: Checked, settings: Settings) -> AppliedCheck | None:
    """Store the registration check of an accepted token as a sync run would, and apply it at once.

    Inside the caller's transaction (the one that added or replaced the token): a pending `checks` row, then the
    engine's `apply_check` (state new -> active, last_valid_at, next check after check_interval_healthy, reach
    and reach events) and the same alert and webhook hooks a run calls. Its time is the transaction's, so it is
    never older than the replacement it follows. Returns the engine's AppliedCheck (None if nothing applied).
    """
    from l1nda_sync.engine.applying import apply_check
    from l1nda_sync.engine.checking import CheckRecord, store_checks
    from l1nda_sync.engine.token_state import Outcome, StatePolicy
    from l1nda_sync.pipeline import compose_hooks

    assert checked.summary is not None
    assert checked.probe is not None
    cur.execute("SELECT now()")
    at: datetime = _one(cur)
    record = CheckRecord(
        token_id=token_id, checked_at=at, outcome=Outcome.VALID, fault_code=None, detail="registration check",
        missing_operation=None, duration_ms=checked.duration_ms, calls=checked.calls, probe=checked.probe,
        debtors=len(checked.summary.debtors), companies=len(checked.summary.companies),
    )
    check_id = store_checks(cur, None, [record])[token_id]
    applied = apply_check(cur, check_id, policy=StatePolicy.from_settings(settings), breaker_open=False, now=at,
                          run_id=None)
    if applied is not None:
        compose_hooks(settings).token_applied(cur, applied, run_id=None, now=at)
    return applied


def _one(cur: Cursor) -> Any:
    """The one value of a statement that always answers one row."""
    row = cur.fetchone()
    assert row is not None
    return row[0]
