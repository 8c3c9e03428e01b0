"""Fault strings -> the error hierarchy: the code is read from `---> NNNN:` or a leading `NNNN:`, never from the
wording; HTTP answers without a SOAP fault -> transient or unknown by status."""

from __future__ import annotations

import pickle

import pytest

from l1nda_sync.nmbrs.errors import (
    CredentialInvalid,
    DataNotAllowed,
    MalformedAnswer,
    NmbrsError,
    NoSubscription,
    OperationNotAllowed,
    TransientError,
    UnknownNmbrsError,
    error_for_fault,
    error_for_http,
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
        ("1001: Invalid Authentication", 1001),  # the code without the .NET wrapper
        ("  1002 : Unauthorized Access", 1002),
        ("Error 1001: Invalid Authentication", None),  # a number inside the text is no code
        ("10011: five digits", None),
        ("---> 100: short", None),
        ("", None),
        (None, None),
    ],
)
def test_fault_code_is_read_from_the_arrow_or_a_leading_code(text, code) -> None:
    assert fault_code(text) == code


def test_fault_text_is_what_follows_the_code() -> None:
    assert fault_text(WRAP.format(code=1004, text="Disabled, no valid subscription")) == \
        "Disabled, no valid subscription"
    assert fault_text("  plain text  ") == "plain text"
    assert fault_text("1001: Invalid Authentication") == "Invalid Authentication"


@pytest.mark.parametrize(("code", "cls"), [(1001, CredentialInvalid), (1002, OperationNotAllowed),
                                           (1004, NoSubscription), (9999, TransientError)])
def test_a_leading_code_without_the_wrapper_maps_like_the_wrapped_one(code, cls) -> None:
    error = error_for_fault(f"{code}: Some Text", service="DebtorService", operation="List_GetAll")
    assert type(error) is cls
    assert error.code == code


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (500, TransientError, True), (502, TransientError, True), (503, TransientError, True),
        (504, TransientError, True), (408, TransientError, True), (429, TransientError, True),
        (403, TransientError, False),  # a proxy's or WAF's page: transient, not hammered within the call
        (400, UnknownNmbrsError, False), (404, UnknownNmbrsError, False), (415, UnknownNmbrsError, False),
    ],
)
def test_http_statuses_without_a_soap_fault(status, cls, retryable) -> None:
    error = error_for_http(status, f"HTTP {status} without a SOAP fault", service="CompanyService",
                           operation="List_GetAll", retry_after=2.0)
    assert type(error) is cls
    assert error.retryable is retryable
    assert (error.service, error.operation, error.retry_after) == ("CompanyService", "List_GetAll", 2.0)
    assert str(error).startswith("CompanyService.List_GetAll: ")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert (copy.retryable, copy.retry_after) == (retryable, 2.0)


def test_a_malformed_answer_is_transient() -> None:
    error = MalformedAnswer("no result", service="DebtorService", operation="List_GetAll")
    assert isinstance(error, TransientError)
    assert (error.outcome, error.retryable) == ("transient", True)


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
