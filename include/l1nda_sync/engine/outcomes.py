"""Turning what the Nmbrs client returned or raised into the engine's plain records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from l1nda_sync.engine.reach import CompanyView, DebtorView, Reach
from l1nda_sync.engine.token_state import Outcome


def outcome_of(error: BaseException) -> tuple[Outcome, int | None, str | None]:
    """(outcome, fault code, missing operation) for an exception raised by a probe.

    Anything that is not an NmbrsError (a bug, a decryption failure) is `unknown`: the token's state stays
    and the run goes on with the other tokens.
    """
    from l1nda_sync.nmbrs.errors import NmbrsError, OperationNotAllowed

    if isinstance(error, NmbrsError):
        missing = None
        if isinstance(error, OperationNotAllowed):
            missing = f"{error.service}.{error.operation}" if error.service else error.operation
        return Outcome(error.outcome), error.code, missing
    return Outcome.UNKNOWN, None, None


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
