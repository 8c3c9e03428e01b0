"""Turning what the Nmbrs client returned or raised into the engine's plain records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from l1nda_sync.engine.reach import CompanyView, DebtorView, Reach
from l1nda_sync.engine.token_state import Outcome


def outcome_of(error: BaseException) -> tuple[Outcome, int | None, str | None]:
    """(outcome, fault code, missing operation) for an exception raised by a probe (SOAP or REST).

    The client's classes name their outcome (`NmbrsError.outcome`): SOAP's 1001 `invalid`, 1002
    `rights_missing`, 1004 `no_subscription`; REST's withdrawn or expired consent `consent_revoked`, a missing
    scope `rights_missing` whose missing operation is the scope, 40304 `no_subscription`, 42908 (throttled) and
    42909 (quota) `transient`. Anything that is not an NmbrsError (a bug, a decryption failure), or names an
    outcome the engine does not know, is `unknown`: the token's state stays and the run goes on with the others.
    """
    from l1nda_sync.nmbrs.errors import NmbrsError

    if not isinstance(error, NmbrsError):
        return Outcome.UNKNOWN, None, None
    try:
        outcome = Outcome(error.outcome)
    except ValueError:
        return Outcome.UNKNOWN, error.code, None
    return outcome, error.code, _missing_operation(error) if outcome is Outcome.RIGHTS_MISSING else None


def _missing_operation(error: BaseException) -> str | None:
    """What a rights-missing refusal lacks: a REST scope (`scope`), else SOAP's `Service.Operation`."""
    scope = getattr(error, "scope", None)
    if isinstance(scope, str) and scope:
        return scope
    service, operation = getattr(error, "service", None), getattr(error, "operation", None)
    return f"{service}.{operation}" if service else operation


def reach_from_probe(probe: Mapping[str, Any] | None) -> Reach:
    """The Reach held in a stored probe (`Probe.to_dict()`), or an empty one."""
    if not probe:
        return Reach()
    debtors = [
        DebtorView(
            int(d["id"]),
            d.get("number"),
            d.get("name"),
            frozenset(t.get("name") or str(t.get("number")) for t in d.get("tags") or ()),
        )
        for d in probe.get("debtors") or ()
    ]
    companies = [
        CompanyView(int(c["id"]), c.get("debtor_id"), c.get("number"), c.get("name"))
        for c in probe.get("companies") or ()
    ]
    return Reach.of(debtors, companies)
