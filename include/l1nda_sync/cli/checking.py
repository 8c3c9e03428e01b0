"""`--check`: probe a token at Nmbrs before it is stored, and say what it reaches (or why Nmbrs refused it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from l1nda_sync.masking import Secret, mask
from l1nda_sync.nmbrs import Credentials, NmbrsError, get_client
from l1nda_sync.registry.errors import InvalidInput, RegistryError
from l1nda_sync.settings import Settings

# What to do when Nmbrs refuses a token for a reason that is the token's (exit 2, nothing written).
_REFUSALS = {
    "invalid": "Nmbrs answered {code} Invalid Authentication: the login e-mail, the token or the domain is wrong, "
               "or the token was reset; check --username and --domain and copy the token again",
    "rights_missing": "Nmbrs answered {code} Unauthorized Access: the login's API user template has {operation} "
                      "switched off; switch it on in Nmbrs, then try again",
    "no_subscription": "Nmbrs answered {code}: the environment has no valid subscription; the customer must "
                       "renew it first",
    "data_not_allowed": "Nmbrs answered {code} while listing what the token reaches (the login's filter changed "
                        "under us); try again in a minute",
}


class NmbrsUnavailable(RegistryError):
    """Nmbrs could not answer (network, time-out, server fault): not the token's fault (exit 1)."""


@dataclass(frozen=True, slots=True)
class ProbeSummary:
    domain: str | None
    environment: str | None
    debtors: list[dict[str, Any]] = field(default_factory=list)
    companies: list[dict[str, Any]] = field(default_factory=list)

    def event_detail(self) -> dict[str, Any]:
        return {"checked": {"domain": self.domain, "debtors": len(self.debtors), "companies": len(self.companies)}}


def _plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def summarise(probe: Any) -> ProbeSummary:
    data = _plain(probe)
    if not isinstance(data, dict):
        data = {"domain": getattr(probe, "domain", None), "environment": getattr(probe, "environment", None),
                "debtors": [_plain(d) for d in getattr(probe, "debtors", ()) or ()],
                "companies": [_plain(c) for c in getattr(probe, "companies", ()) or ()]}
    environment = data.get("environment")
    if isinstance(environment, dict):
        environment = environment.get("domain") or environment.get("sub_domain")
    return ProbeSummary(
        domain=data.get("domain"), environment=environment,
        debtors=[dict(_plain(d)) for d in data.get("debtors") or ()],
        companies=[dict(_plain(c)) for c in data.get("companies") or ()],
    )


def probe_token(settings: Settings, username: str, token: Secret, domain: str | None) -> ProbeSummary:
    """Probe once. A refusal that is the token's fault raises InvalidInput; an outage NmbrsUnavailable."""
    try:
        probe = get_client(settings).probe(Credentials(username, token, domain))
    except NmbrsError as exc:
        text = str(exc).replace(token.reveal(), mask(token.reveal()))  # belt and braces: never echo a token
        text = text if len(text) <= 300 else text[:300] + "…"
        outcome = getattr(exc, "outcome", None)
        if outcome in _REFUSALS:
            operation = ".".join(p for p in (getattr(exc, "service", None), getattr(exc, "operation", None)) if p)
            message = _REFUSALS[outcome].format(code=getattr(exc, "code", None) or "", operation=operation or
                                                "an operation")
            raise InvalidInput("token", f"{message}; nothing was written ({text})") from None
        raise NmbrsUnavailable(f"Nmbrs could not be asked ({text}); nothing was written: try again later, or leave "
                               "--check out and let the next sync run check the token") from None
    return summarise(probe)
