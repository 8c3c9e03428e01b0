"""The access rules of shared/NMBRS_API.md: 1001 (authentication), 1002 (template), 1003 (reach), 1004
(subscription), and what each kind of login sees."""

from __future__ import annotations

import dataclasses

import pytest

from tests.nmbrs_sim.conftest import (
    BUSINESS,
    CLIENT_DELINDE,
    CLIENT_VANDIJK,
    MASTER_ALL,
    MASTER_HORECA,
    post,
    raw_fault,
)

ALL_OPERATIONS = [
    ("DebtorService", "Environment_Get", {}),
    ("DebtorService", "List_GetAll", {}),
    ("DebtorService", "Debtor_Get", {"DebtorId": 2001}),
    ("DebtorService", "Tags_Get", {"DebtorId": 2001}),
    ("DebtorService", "Debtor_IsOwner", {}),
    ("CompanyService", "List_GetAll", {}),
    ("CompanyService", "List_GetByDebtor", {"DebtorId": 2001}),
]
DOMAIN_OPERATIONS = [op for op in ALL_OPERATIONS if op[1] != "Environment_Get"]


@pytest.mark.parametrize(("service", "operation", "params"), ALL_OPERATIONS)
def test_1001_unknown_user_or_wrong_token(soap, service: str, operation: str, params: dict) -> None:
    assert soap.fault_code(dataclasses.replace(MASTER_ALL, token="0" * 32), service, operation, **params) == 1001
    assert soap.fault_code(dataclasses.replace(MASTER_ALL, username="nobody@x.example"), service, operation,
                           **params) == 1001


def test_1001_after_token_reset_and_the_new_token_works(sim, soap) -> None:
    new = sim.admin.reset_token(MASTER_ALL.username)
    assert len(new) == 32
    assert new != MASTER_ALL.token
    assert soap.fault_code(MASTER_ALL, "DebtorService", "List_GetAll") == 1001
    assert soap.fault_code(MASTER_ALL, "DebtorService", "Environment_Get") == 1001
    renewed = dataclasses.replace(MASTER_ALL, token=new)
    assert len(soap.call(renewed, "DebtorService", "List_GetAll")) == 9


def test_1001_for_a_deleted_login_until_restored(sim, soap) -> None:
    sim.admin.delete_login(CLIENT_VANDIJK.username)
    assert soap.fault_code(CLIENT_VANDIJK, "CompanyService", "List_GetAll") == 1001
    sim.admin.restore_login(CLIENT_VANDIJK.username)
    assert [c.ID for c in soap.call(CLIENT_VANDIJK, "CompanyService", "List_GetAll")] == [50301]


@pytest.mark.parametrize(("service", "operation", "params"), DOMAIN_OPERATIONS)
def test_1001_for_a_wrong_domain(soap, service: str, operation: str, params: dict) -> None:
    assert soap.fault_code(dataclasses.replace(MASTER_ALL, domain="bakkerij-degraaf"), service, operation,
                           **params) == 1001
    assert soap.fault_code(dataclasses.replace(MASTER_ALL, domain="demo-accountants.nmbrs.nl"), service, operation,
                           **params) == 1001


def test_domain_is_case_insensitive_like_a_host_name(soap) -> None:
    assert len(soap.call(dataclasses.replace(MASTER_ALL, domain="Demo-Accountants"), "DebtorService",
                         "List_GetAll")) == 9


def test_missing_domain_is_rejected_by_default_and_accepted_by_setting(sim, soap) -> None:
    no_domain = dataclasses.replace(MASTER_ALL, domain=None)
    assert soap.fault_code(no_domain, "DebtorService", "List_GetAll") == 1001
    assert raw_fault(post(sim, "DebtorService", "List_GetAll", no_domain)).nmbrs_code == 1001
    sim.admin.set_accept_missing_domain(True)
    assert len(soap.call(no_domain, "DebtorService", "List_GetAll")) == 9
    assert sim.admin.settings() == {"accept_missing_domain": True}


def test_environment_get_needs_no_domain(soap) -> None:
    assert soap.call(dataclasses.replace(BUSINESS, domain=None), "DebtorService", "Environment_Get").SubDomain == \
        "bakkerij-degraaf"


def test_an_undeclared_header_is_ignored_as_by_asmx(sim) -> None:
    """AuthHeader on an operation that declares AuthHeaderWithDomain is not read: no credentials, 1001."""
    response = post(sim, "DebtorService", "List_GetAll", MASTER_ALL, header="AuthHeader")
    assert response.status_code == 500
    assert raw_fault(response).nmbrs_code == 1001
    response = post(sim, "DebtorService", "Environment_Get", MASTER_ALL, header="AuthHeaderWithDomain")
    assert raw_fault(response).nmbrs_code == 1001
    assert raw_fault(post(sim, "DebtorService", "List_GetAll", None)).nmbrs_code == 1001  # no header at all


def test_1002_when_the_template_switches_an_operation_off(sim, soap) -> None:
    assert soap.fault_code(CLIENT_DELINDE, "DebtorService", "Tags_Get", DebtorId=2005) == 1002
    assert soap.fault_code(CLIENT_DELINDE, "DebtorService", "Debtor_IsOwner") == 1002
    assert [d.Id for d in soap.call(CLIENT_DELINDE, "DebtorService", "List_GetAll")] == [2005]
    sim.admin.set_operation_allowed(MASTER_ALL.username, "CompanyService", "List_GetByDebtor", False)
    assert soap.fault_code(MASTER_ALL, "CompanyService", "List_GetByDebtor", DebtorId=2001) == 1002
    assert len(soap.call(MASTER_ALL, "CompanyService", "List_GetAll")) == 13  # only that one is off
    sim.admin.set_operation_allowed(MASTER_ALL.username, "CompanyService", "List_GetByDebtor", True)
    assert len(soap.call(MASTER_ALL, "CompanyService", "List_GetByDebtor", DebtorId=2001)) == 2


@pytest.mark.parametrize("operation", ["Debtor_Get", "Tags_Get"])
def test_1003_for_debtors_out_of_reach_or_unknown(soap, operation: str) -> None:
    assert soap.fault_code(MASTER_HORECA, "DebtorService", operation, DebtorId=2003) == 1003  # Retail only
    assert soap.fault_code(MASTER_ALL, "DebtorService", operation, DebtorId=999999) == 1003  # no such debtor
    assert soap.fault_code(MASTER_ALL, "DebtorService", operation, DebtorId=3001) == 1003  # other environment
    assert soap.fault_code(CLIENT_VANDIJK, "DebtorService", operation, DebtorId=2001) == 1003


def test_1003_for_list_by_debtor_out_of_reach(soap) -> None:
    assert soap.fault_code(MASTER_HORECA, "CompanyService", "List_GetByDebtor", DebtorId=2007) == 1003
    assert soap.fault_code(MASTER_ALL, "CompanyService", "List_GetByDebtor", DebtorId=0) == 1003
    assert soap.fault_code(CLIENT_VANDIJK, "CompanyService", "List_GetByDebtor", DebtorId=2005) == 1003


def test_a_client_sees_only_the_ticked_companies_of_its_debtor(soap) -> None:
    by_debtor = soap.call(CLIENT_DELINDE, "CompanyService", "List_GetByDebtor", DebtorId=2005)
    assert [c.ID for c in by_debtor] == [50501, 50502]  # 50503 is ended


@pytest.mark.parametrize(("service", "operation", "params"), ALL_OPERATIONS)
def test_1004_without_a_valid_subscription(sim, soap, service: str, operation: str, params: dict) -> None:
    sim.admin.set_subscription("demo-accountants", False)
    assert soap.fault_code(MASTER_ALL, service, operation, **params) == 1004
    # authentication comes first: a wrong token is still 1001
    assert soap.fault_code(dataclasses.replace(MASTER_ALL, token="f" * 32), service, operation, **params) == 1001
    # other environments are untouched
    assert soap.call(BUSINESS, "DebtorService", "Environment_Get").SubDomain == "bakkerij-degraaf"


def test_subscription_comes_before_the_template(sim, soap) -> None:
    sim.admin.set_subscription("demo-accountants", False)
    assert soap.fault_code(CLIENT_DELINDE, "DebtorService", "Tags_Get", DebtorId=2005) == 1004


def test_debtor_is_owner_is_true_for_masters_only(soap) -> None:
    assert soap.call(MASTER_ALL, "DebtorService", "Debtor_IsOwner") is True
    assert soap.call(MASTER_HORECA, "DebtorService", "Debtor_IsOwner") is True
    assert soap.call(BUSINESS, "DebtorService", "Debtor_IsOwner") is False
