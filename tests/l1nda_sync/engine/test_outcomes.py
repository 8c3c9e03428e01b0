"""The client's error classes, SOAP and REST, as the engine's outcomes (`engine.outcomes.outcome_of`)."""

from __future__ import annotations

import pytest

from l1nda_sync.engine.outcomes import outcome_of
from l1nda_sync.engine.token_state import Outcome
from l1nda_sync.nmbrs import errors

WRAP = "Server was unable to process request. ---> "


@pytest.mark.parametrize(
    ("error", "outcome", "code", "missing"),
    [
        # SOAP, as before
        (errors.error_for_fault(WRAP + "1001: Invalid Authentication", service="DebtorService",
                                operation="List_GetAll"), Outcome.INVALID, 1001, None),
        (errors.error_for_fault(WRAP + "1002: Operation not allowed", service="CompanyService",
                                operation="List_GetAll"), Outcome.RIGHTS_MISSING, 1002, "CompanyService.List_GetAll"),
        (errors.OperationNotAllowed("1002", code=1002, operation="List_GetAll"), Outcome.RIGHTS_MISSING, 1002,
         "List_GetAll"),
        (errors.error_for_fault(WRAP + "1004: No valid subscription", service="DebtorService",
                                operation="List_GetAll"), Outcome.NO_SUBSCRIPTION, 1004, None),
        (errors.TransientError("time-out"), Outcome.TRANSIENT, None, None),
        (errors.UnknownNmbrsError("odd", code=1234), Outcome.UNKNOWN, 1234, None),
        # REST
        (errors.ConsentRevoked("401 40102 after a refresh", code=40102), Outcome.CONSENT_REVOKED, 40102, None),
        (errors.ConsentRevoked("invalid_grant nobody explains"), Outcome.CONSENT_REVOKED, None, None),
        (errors.ScopeMissing("403 40303", scope="company.info.read", code=40303), Outcome.RIGHTS_MISSING, 40303,
         "company.info.read"),
        (errors.ScopeMissing("403 40303", scope="company.info.read", code=40303, service="GET /api/debtors"),
         Outcome.RIGHTS_MISSING, 40303, "company.info.read"),
        (errors.NoSubscription("403 40304 Invalid_Subscription", code=40304), Outcome.NO_SUBSCRIPTION, 40304, None),
        (errors.Throttled("429 42908 Too_Many_Calls", code=42908), Outcome.TRANSIENT, 42908, None),
        (errors.QuotaExceeded("429 42909 Quota_Exceeded", code=42909), Outcome.TRANSIENT, 42909, None),
        # not the client's
        (RuntimeError("a bug"), Outcome.UNKNOWN, None, None),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_outcome_of(error: BaseException, outcome: Outcome, code: int | None, missing: str | None) -> None:
    assert outcome_of(error) == (outcome, code, missing)


def test_an_outcome_the_engine_does_not_know_is_unknown() -> None:
    class Future(errors.NmbrsError):
        outcome = "something_new"

    assert outcome_of(Future("?", code=7)) == (Outcome.UNKNOWN, 7, None)


def test_every_outcome_the_client_names_is_one_the_engine_knows() -> None:
    known = {o.value for o in Outcome}
    classes = [errors.NmbrsError]
    seen = []
    while classes:
        cls = classes.pop()
        seen.append(cls)
        classes.extend(cls.__subclasses__())
    assert {c.outcome for c in seen if c.__module__ == errors.__name__} <= known


def test_the_breaker_counts_withdrawn_consents_as_their_own_class() -> None:
    from l1nda_sync.engine.breaker import failure_class, is_news, judge

    assert failure_class(Outcome.CONSENT_REVOKED) == "consent_revoked"
    assert not is_news("revoked", Outcome.CONSENT_REVOKED), "a revoked connection's refusal is no news"
    assert not is_news("rejected", Outcome.CONSENT_REVOKED)
    assert is_news("active", Outcome.CONSENT_REVOKED)
    assert is_news("invalid", Outcome.CONSENT_REVOKED)
    verdict = judge([Outcome.CONSENT_REVOKED] * 3 + [Outcome.VALID])
    assert verdict.tripped, "an identity server refusing everyone is a provider incident"
    assert verdict.failure == "consent_revoked"
