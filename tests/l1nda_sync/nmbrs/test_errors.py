"""Fault strings -> the error hierarchy: the code is read from `---> NNNN:`, never from the wording."""

from __future__ import annotations

import pickle

import pytest

from l1nda_sync.nmbrs.errors import (
    CredentialInvalid,
    DataNotAllowed,
    NmbrsError,
    NoSubscription,
    OperationNotAllowed,
    TransientError,
    UnknownNmbrsError,
    error_for_fault,
    fault_code,
    fault_text,
)

WRAP = "Server was unable to process request. ---> {code}: {text}"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Server was unable to process request. ---> 1001: Invalid Authentication", 1001),
        ("Server was unable to process request.--->9999:Unknown", 9999),
        ("--->   2004: whatever the wording", 2004),
        ("Kan verzoek niet verwerken. ---> 1002: Geen toegang", 1002),  # wording in another language
        ("Server was unable to process request. ---> Object reference not set", None),
        ("1001: Invalid Authentication", None),  # no arrow: not the Nmbrs form
        ("---> 100: short", None),
        ("", None),
        (None, None),
    ],
)
def test_fault_code_is_read_from_the_arrow_form(text, code) -> None:
    assert fault_code(text) == code


def test_fault_text_is_what_follows_the_code() -> None:
    assert fault_text(WRAP.format(code=1004, text="Disabled, no valid subscription")) == \
        "Disabled, no valid subscription"
    assert fault_text("  plain text  ") == "plain text"


@pytest.mark.parametrize(
    ("code", "cls", "outcome", "retryable"),
    [
        (1001, CredentialInvalid, "invalid", False),
        (1002, OperationNotAllowed, "rights_missing", False),
        (1003, DataNotAllowed, "data_not_allowed", False),
        (2003, DataNotAllowed, "data_not_allowed", False),
        (2004, DataNotAllowed, "data_not_allowed", False),
        (2009, DataNotAllowed, "data_not_allowed", False),
        (1004, NoSubscription, "no_subscription", False),
        (1006, TransientError, "transient", True),
        (9999, TransientError, "transient", True),
        (1005, UnknownNmbrsError, "unknown", False),
        (3001, UnknownNmbrsError, "unknown", False),
    ],
)
def test_each_code_maps_to_its_class(code, cls, outcome, retryable) -> None:
    error = error_for_fault(WRAP.format(code=code, text="Some Text"), service="DebtorService",
                            operation="Tags_Get", params={"DebtorId": 2003})
    assert type(error) is cls
    assert isinstance(error, NmbrsError)
    assert (error.code, error.outcome, error.retryable) == (code, outcome, retryable)
    assert (error.service, error.operation) == ("DebtorService", "Tags_Get")
    assert "DebtorService.Tags_Get" in str(error)
    assert str(code) in str(error)


def test_the_wording_does_not_decide_the_class() -> None:
    error = error_for_fault(WRAP.format(code=1002, text="Invalid Authentication"), service="CompanyService",
                            operation="List_GetAll")
    assert isinstance(error, OperationNotAllowed)


def test_operation_not_allowed_names_service_and_operation() -> None:
    error = error_for_fault(WRAP.format(code=1002, text="Unauthorized Access"), service="CompanyService",
                            operation="List_GetByDebtor", params={"DebtorId": 7})
    assert "CompanyService.List_GetByDebtor" in str(error)
    assert "switched off" in str(error)


@pytest.mark.parametrize(("code", "kind"), [(1003, "debtor"), (2003, "employee"), (2004, "company"),
                                            (2009, "debtor")])
def test_data_not_allowed_names_the_id(code, kind) -> None:
    error = error_for_fault(WRAP.format(code=code, text="Unauthorized Access"), service="CompanyService",
                            operation="List_GetByDebtor", params={"DebtorId": 2003})
    assert isinstance(error, DataNotAllowed)
    assert error.data_id == 2003
    assert error.data_kind == kind
    assert f"{kind} 2003" in str(error)


def test_unknown_keeps_code_and_text() -> None:
    coded = error_for_fault(WRAP.format(code=4321, text="Something new"), service="DebtorService",
                            operation="List_GetAll")
    assert (coded.code, coded.text) == (4321, "Something new")
    assert "4321 Something new" in str(coded)
    plain = error_for_fault("Unable to handle request without a valid action parameter.", service="DebtorService",
                            operation="List_GetAll")
    assert isinstance(plain, UnknownNmbrsError)
    assert plain.code is None
    assert "valid action parameter" in str(plain)


def test_errors_survive_pickling_with_their_fields() -> None:
    error = error_for_fault(WRAP.format(code=2004, text="Unauthorized Access"), service="CompanyService",
                            operation="List_GetByDebtor", params={"DebtorId": 9})
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(copy) is DataNotAllowed
    assert (copy.code, copy.service, copy.operation, copy.data_id, str(copy)) == \
        (error.code, error.service, error.operation, error.data_id, str(error))
    assert "DataNotAllowed(code=2004" in repr(copy)
