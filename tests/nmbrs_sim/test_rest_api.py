"""The REST API over real HTTP: paging through debtors and companies, one world with SOAP (stable UUIDs,
numbers as strings, admin changes in both), and every error code of the facts sheet."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from nmbrs_sim.testing import RunningSim, running_simulator
from nmbrs_sim.world import derived_uuid
from tests.nmbrs_sim.conftest import CLIENT_VANDIJK, Soap
from tests.nmbrs_sim.rest_flow import (
    APP_KEY_2,
    BUSINESS_LOGIN,
    BUSINESS_PASSWORD,
    NARROW,
    NARROW_CALLBACK,
    NARROW_SECRET,
    VANDIJK_LOGIN,
    VANDIJK_PASSWORD,
    Flow,
    check,
    check_error,
)

BUSINESS_DEBTOR = "45d8ad44-ffb8-4691-87d8-7a7a5f4376e9"  # pinned in demo.yaml
MULTI, SINGLE = "multi@big.example", "single@big.example"


def big_scenario() -> dict[str, Any]:
    """45 one-company debtors (one login reaches them all: a multi-debtor consent) and one debtor with 45
    companies (a single-debtor consent)."""
    debtors = [{"id": 100 + i, "number": f"{i:03d}", "name": f"Debtor {i}",
                "companies": [{"id": 1000 + i, "number": i + 1, "name": f"Company {i}"}]} for i in range(45)]
    debtors.append({"id": 999, "number": "BIG", "name": "Big debtor",
                    "companies": [{"id": 5000 + i, "number": 100 + i, "name": f"Big {i}", "period": "Week4"}
                                  for i in range(45)]})
    return {
        "environments": [{"sub_domain": "big", "debtors": debtors, "logins": [
            {"username": MULTI, "level": "client", "company_filter": [1000 + i for i in range(45)],
             "password": "multi-pw"},
            {"username": SINGLE, "level": "client", "debtor": 999, "company_filter": [5000 + i for i in range(45)],
             "password": "single-pw", "name": "Single User"},
        ]}],
        "rest": {"clients": [{"client_id": "PartnerApp_L1NDA_demo", "client_secret": "Lx*7$demo-Secret$q9*",
                              "redirect_uris": ["http://127.0.0.1:8090/nmbrs/callback"],
                              "subscription_keys": ["30d05593229f49c18856be06ebc47b24"],
                              "scopes": ["offline_access", "company.info.read", "user.info.read"]}]},
    }


@pytest.fixture(scope="module")
def big() -> Iterator[RunningSim]:
    with running_simulator(big_scenario()) as running:
        yield running


@pytest.fixture
def flow(sim) -> Flow:
    return Flow(sim)


@pytest.fixture
def business(flow: Flow) -> str:
    return str(flow.tokens(BUSINESS_LOGIN, BUSINESS_PASSWORD)["access_token"])


def test_paging_through_a_multi_debtor_consent(big: RunningSim) -> None:
    flow = Flow(big)
    access = flow.tokens(MULTI, "multi-pw")["access_token"]
    first = flow.api("/api/debtors", access).json()
    check("getDebtors", first)
    page = first["pagination"]
    assert (page["pageNumber"], page["pageSize"], page["totalPages"], page["totalRecords"]) == (1, 20, 3, 45)
    assert page["previousPage"] is None
    assert page["nextPage"].endswith("pageNumber=2&pageSize=20")
    debtors = flow.all_pages("/api/debtors", access, "getDebtors")
    assert [d["number"] for d in debtors] == [f"{i:03d}" for i in range(45)]
    assert len({d["debtorId"] for d in debtors}) == 45
    last = flow.api("/api/debtors", access, pageNumber=3).json()
    assert len(last["data"]) == 5
    assert last["pagination"]["nextPage"] is None
    assert last["pagination"]["previousPage"].endswith("pageNumber=2&pageSize=20")
    check_error(flow.api("/api/companies", access), 403, 40306)
    companies = [c for d in debtors
                 for c in flow.all_pages(f"/api/debtors/{d['debtorId']}/companies", access, "getCompaniesByDebtor")]
    assert [c["number"] for c in companies] == [str(i + 1) for i in range(45)]
    assert all(c["debtorId"] == d["debtorId"] for c, d in zip(companies, debtors, strict=True))


def test_paging_through_companies_of_a_single_debtor_consent(big: RunningSim) -> None:
    flow = Flow(big)
    access = flow.tokens(SINGLE, "single-pw")["access_token"]
    assert len(flow.all_pages("/api/debtors", access, "getDebtors")) == 1
    companies = flow.all_pages("/api/companies", access, "getCompanies", page_size=100)
    assert len(companies) == 45
    by_debtor = flow.all_pages(f"/api/debtors/{derived_uuid('debtor', 999)}/companies", access,
                               "getCompaniesByDebtor", page_size=7)
    assert by_debtor == companies
    beyond = flow.api("/api/companies", access, pageNumber=9).json()
    assert beyond["data"] == []
    assert beyond["pagination"]["totalRecords"] == 45
    period = flow.api(f"/api/companies/{companies[0]['companyId']}/period", access).json()
    check("getCurrentPeriod", period)
    assert period["data"][0]["periodType"] == "4-weeks"


@pytest.mark.parametrize(("params", "name"), [({"pageSize": 101}, "pageSize"), ({"pageSize": 0}, "pageSize"),
                                              ({"pageNumber": 0}, "pageNumber"), ({"pageSize": "ten"}, "pageSize")])
def test_bad_paging_is_40033(flow: Flow, business: str, params: dict[str, Any], name: str) -> None:
    body = check_error(flow.api("/api/debtors", business, **params), 400, 40033)
    assert body["title"] == "Parameter_Invalid"
    assert body["invalid-params"][0]["name"] == name


def test_page_size_100_is_allowed(flow: Flow, business: str) -> None:
    assert flow.api("/api/debtors", business, pageSize=100).json()["pagination"]["pageSize"] == 100


def test_one_world_uuids_and_numbers_as_strings(sim, flow: Flow, business: str, soap: Soap) -> None:
    debtors = flow.api("/api/debtors", business).json()
    assert debtors["data"] == [{"debtorId": BUSINESS_DEBTOR, "number": "B001", "name": "Bakkerij De Graaf"}]
    companies = flow.api("/api/companies", business).json()["data"]
    assert companies == [
        {"companyId": derived_uuid("company", 60101), "number": "1", "name": "Bakkerij De Graaf B.V.",
         "debtorId": BUSINESS_DEBTOR},
        {"companyId": derived_uuid("company", 60102), "number": "2", "name": "De Graaf Winkels B.V.",
         "debtorId": BUSINESS_DEBTOR}]
    assert uuid.UUID(companies[0]["companyId"]).version == 5
    world = sim.admin.world()
    assert world["environments"][1]["debtors"][0]["uuid"] == BUSINESS_DEBTOR
    assert world["environments"][1]["debtors"][0]["companies"][0]["uuid"] == companies[0]["companyId"]
    # the same login over SOAP sees the same companies
    vandijk_rest = flow.tokens(VANDIJK_LOGIN, VANDIJK_PASSWORD)["access_token"]
    rest_numbers = [c["number"] for c in flow.api("/api/companies", vandijk_rest).json()["data"]]
    soap_numbers = [str(c.Number) for c in soap.call(CLIENT_VANDIJK, "CompanyService", "List_GetAll")]
    assert rest_numbers == soap_numbers == ["301"]


def test_admin_changes_show_in_both_protocols(sim, flow: Flow, soap: Soap) -> None:
    access = flow.tokens(VANDIJK_LOGIN, VANDIJK_PASSWORD)["access_token"]
    sim.admin.add_company(2003, id=50303, number=303, name="Van Dijk Online B.V.")
    sim.admin.update_login(VANDIJK_LOGIN, company_filter=[50301, 50303])
    sim.admin.end_company(50301)
    rest = flow.api("/api/companies", access).json()["data"]
    assert [(c["companyId"], c["number"]) for c in rest] == [(derived_uuid("company", 50303), "303")]
    soap_ids = [c.ID for c in soap.call(CLIENT_VANDIJK, "CompanyService", "List_GetAll")]
    assert soap_ids == [50303]


def test_user_info_and_period(flow: Flow, business: str) -> None:
    info = flow.api("/api/user/info", business).json()
    check("getUserInfo", info)
    assert info["data"] == [{"name": "Jan de Graaf", "email": BUSINESS_LOGIN, "language": "NL",
                             "userId": derived_uuid("login", BUSINESS_LOGIN), "debtorId": BUSINESS_DEBTOR}]
    period = flow.api(f"/api/companies/{derived_uuid('company', 60101)}/period", business).json()
    check("getCurrentPeriod", period)
    assert period["data"][0]["periodType"] == "month"


def test_the_period_follows_the_simulated_clock(sim, flow: Flow, business: str) -> None:
    sim.admin.set_clock("2027-03-01T09:00:00Z")
    token = flow.tokens(BUSINESS_LOGIN, BUSINESS_PASSWORD)["access_token"]  # issued on the new clock
    month = flow.api(f"/api/companies/{derived_uuid('company', 60101)}/period", token).json()["data"][0]
    assert month == {"period": {"year": 2027, "period": 3}, "periodType": "month", "displayPeriod": "2027-3-M"}
    weeks = flow.api(f"/api/companies/{derived_uuid('company', 60102)}/period", token).json()["data"][0]
    assert weeks["periodType"] == "4-weeks"
    assert weeks["period"] == {"year": 2027, "period": 3}


def test_40101_without_a_token_and_40102_for_a_bad_one(flow: Flow) -> None:
    body = check_error(flow.api("/api/debtors", None), 401, 40101)
    assert body["title"] == "Missing_Token"
    assert body["type"] == "authenticationError"
    check_error(flow.api("/api/debtors", "not-a-jwt"), 401, 40102)
    check_error(flow.api("/api/debtors", ""), 401, 40101)


def test_40102_once_the_access_token_expired_on_the_clock(sim, flow: Flow, business: str) -> None:
    sim.admin.advance_clock(3599)
    assert flow.api("/api/debtors", business).status_code == 200
    sim.admin.advance_clock(2)
    body = check_error(flow.api("/api/debtors", business), 401, 40102)
    assert body["title"] == "Invalid_Token"


def test_40303_for_a_missing_scope_and_a_debtor_out_of_reach(sim, flow: Flow, business: str) -> None:
    narrow = Flow(sim, NARROW, NARROW_SECRET, NARROW_CALLBACK, key="5a4b3c2d1e0f49a8b7c6d5e4f3a2b1c0")
    access = narrow.tokens(BUSINESS_LOGIN, BUSINESS_PASSWORD, scope="company.info.read")["access_token"]
    assert narrow.api("/api/debtors", access).status_code == 200
    body = check_error(narrow.api("/api/user/info", access), 403, 40303)
    assert body["title"] == "Unauthorized_AccessData"
    other_debtor = derived_uuid("debtor", 2003)
    check_error(flow.api(f"/api/debtors/{other_debtor}/companies", business), 403, 40303)
    check_error(flow.api(f"/api/companies/{derived_uuid('company', 50301)}/period", business), 403, 40303)


def test_a_token_without_company_scope_cannot_list(sim, flow: Flow) -> None:
    access = flow.tokens(BUSINESS_LOGIN, BUSINESS_PASSWORD, scope="user.info.read")["access_token"]
    check_error(flow.api("/api/debtors", access), 403, 40303)
    check_error(flow.api("/api/companies", access), 403, 40303)
    assert flow.api("/api/user/info", access).status_code == 200


def test_40304_when_the_environment_has_no_subscription(sim, flow: Flow, business: str) -> None:
    sim.admin.set_subscription("bakkerij-degraaf", False)
    body = check_error(flow.api("/api/debtors", business), 403, 40304)
    assert body["title"] == "Invalid_Subscription"
    sim.admin.set_subscription("bakkerij-degraaf", True)
    assert flow.api("/api/debtors", business).status_code == 200


def test_404_codes_for_unknown_ids_and_40033_for_a_malformed_one(flow: Flow, business: str) -> None:
    check_error(flow.api(f"/api/debtors/{uuid.uuid4()}/companies", business), 404, 40401)
    check_error(flow.api(f"/api/companies/{uuid.uuid4()}/period", business), 404, 40404)
    check_error(flow.api("/api/debtors/42/companies", business), 400, 40033)
    check_error(flow.api("/api/employees", business), 404, 40401)


def test_the_subscription_key_is_checked_first(sim, flow: Flow, business: str) -> None:
    missing = flow.api("/api/debtors", business, key=None)
    assert missing.status_code == 401
    assert "missing subscription key" in missing.json()["message"]
    wrong = flow.api("/api/debtors", None, key="0" * 32)
    assert wrong.status_code == 401
    assert "invalid subscription key" in wrong.json()["message"]
    assert flow.api("/api/debtors", business, key=APP_KEY_2).status_code == 200  # the secondary key


def test_blank_page_links_setting_answers_empty_strings_at_the_ends() -> None:
    scenario = big_scenario()
    scenario["rest"]["settings"] = {"blank_page_links": True}
    with running_simulator(scenario) as own:
        flow = Flow(own)
        access = flow.tokens(MULTI, "multi-pw")["access_token"]
        first = flow.api("/api/debtors", access).json()
        check("getDebtors", first)
        assert first["pagination"]["previousPage"] == ""
        assert len(flow.all_pages("/api/debtors", access, "getDebtors")) == 45  # stops at nextPage ""
