"""Fault injection reaches REST and identity calls (by path, service/operation and login); the call log
records them; no secret ends up in the simulator's logs."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from nmbrs_sim.admin import SimAdminError
from tests.nmbrs_sim.conftest import MASTER_ALL, Soap
from tests.nmbrs_sim.rest_flow import (
    APP_SECRET,
    BUSINESS_LOGIN,
    BUSINESS_PASSWORD,
    VANDIJK_LOGIN,
    VANDIJK_PASSWORD,
    Flow,
    check_error,
)


@pytest.fixture
def flow(sim) -> Flow:
    return Flow(sim)


@pytest.fixture
def business(flow: Flow) -> str:
    return str(flow.tokens(BUSINESS_LOGIN, BUSINESS_PASSWORD)["access_token"])


def test_too_many_calls_with_and_without_retry_after(sim, flow: Flow, business: str) -> None:
    sim.admin.inject_fault("too_many_calls", path="/api/debtors", count=1)
    plain = flow.api("/api/debtors", business)
    body = check_error(plain, 429, 42908)
    assert body["title"] == "Too_Many_Calls"
    assert body["type"] == "throttlingError"
    assert "Retry-After" not in plain.headers
    sim.admin.inject_fault("too_many_calls", path="/api/debtors", count=1, retry_after=7)
    with_header = flow.api("/api/debtors", business)
    check_error(with_header, 429, 42908)
    assert with_header.headers["Retry-After"] == "7"
    assert flow.api("/api/debtors", business).status_code == 200  # count used up


def test_a_rest_answer_is_made_when_its_request_arrives_and_sent_when_the_latency_has_passed(
        sim, flow: Flow, business: str) -> None:
    """A company ended while a call waits out its latency is still in that call's answer, not in the next one's:
    REST answers are made at arrival and held, as SOAP answers are (the simulator's own work hides inside the
    latency instead of queueing after it)."""
    sim.admin.set_latency(400)
    sim.admin.clear_calls()
    with ThreadPoolExecutor(max_workers=1) as pool:
        started = time.monotonic()
        waiting = pool.submit(flow.api, "/api/companies", business)
        while sim.admin.call_count(operation="getCompanies") == 0:
            assert not waiting.done()
        sim.admin.end_company(60102)
        held = waiting.result()
    assert time.monotonic() - started >= 0.4
    sim.admin.set_latency(0)
    assert [c["number"] for c in held.json()["data"]] == ["1", "2"]
    assert [c["number"] for c in flow.api("/api/companies", business).json()["data"]] == ["1"]


def test_quota_exceeded_by_operation(sim, flow: Flow, business: str) -> None:
    sim.admin.inject_fault("quota_exceeded", service="REST", operation="getCompanies")
    check_error(flow.api("/api/companies", business), 429, 42909)
    assert flow.api("/api/debtors", business).status_code == 200


@pytest.mark.parametrize(("kind", "status"), [("http_500", 500), ("http_502", 502), ("http_503", 503),
                                              ("http_403_html", 403)])
def test_html_error_pages_on_rest_and_identity(sim, flow: Flow, business: str, kind: str, status: int) -> None:
    sim.admin.inject_fault(kind, path="/api/", count=1)
    page = flow.api("/api/debtors", business)
    assert page.status_code == status
    assert page.headers["Content-Type"].startswith("text/html")
    sim.admin.inject_fault(kind, path="/connect/token", count=1)
    token = flow.refresh("whatever")
    assert token.status_code == status
    assert "<html" in token.text


def test_faults_target_one_login(sim, flow: Flow, business: str) -> None:
    vandijk = flow.tokens(VANDIJK_LOGIN, VANDIJK_PASSWORD)["access_token"]
    sim.admin.inject_fault("http_503", username=VANDIJK_LOGIN, service="REST")
    assert flow.api("/api/debtors", vandijk).status_code == 503
    assert flow.api("/api/debtors", business).status_code == 200


def test_identity_faults_target_the_login_behind_a_refresh_token(sim, flow: Flow) -> None:
    tokens = flow.tokens(BUSINESS_LOGIN, BUSINESS_PASSWORD)
    vandijk = flow.tokens(VANDIJK_LOGIN, VANDIJK_PASSWORD)
    sim.admin.inject_fault("http_502", username=BUSINESS_LOGIN, service="Identity", operation="token")
    assert flow.refresh(tokens["refresh_token"]).status_code == 502
    assert flow.refresh(vandijk["refresh_token"]).status_code == 200
    sim.admin.clear_faults()
    assert flow.refresh(tokens["refresh_token"]).status_code == 200  # the failed call used nothing up


def test_authorize_page_faults_by_path(sim, flow: Flow) -> None:
    sim.admin.inject_fault("too_many_calls", path="/connect/authorize", count=1, retry_after=2)
    page = requests.get(f"{sim.root_url}/connect/authorize", params=flow.authorize_params(), timeout=10)
    assert page.status_code == 429
    assert page.headers["Retry-After"] == "2"


def test_reset_and_hang(sim, flow: Flow, business: str) -> None:
    sim.admin.inject_fault("reset", path="/api/debtors", count=1)
    with pytest.raises(requests.ConnectionError):
        flow.api("/api/debtors", business)
    sim.admin.inject_fault("hang", path="/connect/token", count=1)
    with pytest.raises(requests.ReadTimeout):
        requests.post(f"{sim.root_url}/connect/token", data={"grant_type": "refresh_token"}, timeout=0.3)
    assert flow.api("/api/debtors", business).status_code == 200


def test_latency_by_path(sim, flow: Flow, business: str) -> None:
    sim.admin.inject_fault("latency", path="/api/companies", ms=250, count=1)
    started = time.perf_counter()
    assert flow.api("/api/debtors", business).status_code == 200
    fast = time.perf_counter() - started
    started = time.perf_counter()
    assert flow.api("/api/companies", business).status_code == 200
    slow = time.perf_counter() - started
    assert slow >= 0.25 > fast


def test_soap_only_and_rest_only_kinds_stay_on_their_side(sim, flow: Flow, business: str, soap: Soap) -> None:
    sim.admin.inject_fault("malformed")  # SOAP-only: never fires on REST
    sim.admin.inject_fault("quota_exceeded")  # REST-only: never fires on SOAP
    assert flow.api("/api/debtors", business).status_code == 429
    sim.admin.clear_faults()
    sim.admin.inject_fault("quota_exceeded")
    assert len(soap.call(MASTER_ALL, "DebtorService", "List_GetAll")) == 9
    with pytest.raises(SimAdminError) as caught:
        sim.admin.inject_fault("quota_exceeded", service="DebtorService")
    assert caught.value.status == 400
    with pytest.raises(SimAdminError):
        sim.admin.inject_fault("http_500", path="api/debtors")  # a path prefix starts with '/'


def test_the_call_log_records_rest_and_identity_calls(sim, flow: Flow, business: str) -> None:
    sim.admin.clear_calls()
    flow.api("/api/debtors", business)
    flow.api("/api/debtors", business, pageSize=500)
    flow.api("/api/companies", business)
    assert sim.admin.call_count(service="REST", operation="getDebtors", username=BUSINESS_LOGIN) == 2
    rows = {(r["service"], r["operation"]): r for r in sim.admin.calls()}
    assert rows[("REST", "getDebtors")]["faults"] == 1  # the 400
    assert rows[("REST", "getCompanies")]["count"] == 1
    flow.tokens(VANDIJK_LOGIN, VANDIJK_PASSWORD)
    assert sim.admin.call_count(service="Identity", operation="token", username=VANDIJK_LOGIN) == 1
    assert sim.admin.call_count(service="Identity", operation="authorize") == 2  # page and form POST


def test_no_secret_reaches_logs_call_log_or_consent_list(sim, flow: Flow, caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    caplog.set_level(logging.DEBUG)
    code = flow.code(BUSINESS_LOGIN, BUSINESS_PASSWORD)
    tokens = flow.exchange(code).json()
    rotated = flow.refresh(tokens["refresh_token"]).json()
    flow.refresh(tokens["refresh_token"])  # a failing reuse
    secrets_seen = [code, tokens["refresh_token"], rotated["refresh_token"], tokens["access_token"], APP_SECRET,
                    BUSINESS_PASSWORD]
    logged = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    published = str(sim.admin.calls()) + str(sim.admin.consents())
    for secret in secrets_seen:
        assert secret not in logged
        assert secret not in published
    assert "live_refresh_tokens" in published
