"""Paging on a big world: a multi-debtor consent over 130 debtors, one of them with 250 companies; every page is
read (pageSize 100), with `nextPage` null at the end or "" (both are seen live), and the call count is exact."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import yaml

from l1nda_sync.nmbrs.rest.client import RestClient
from nmbrs_sim.testing import RunningSim, running_simulator
from nmbrs_sim.world import derived_uuid
from tests.l1nda_sync.nmbrs.rest.conftest import DEMO, SimClock, connect, rest_app

DEBTORS = 130
BIG_DEBTOR_COMPANIES = 250
LOGIN = "payroll@big-office.example"


def big_world(blank_page_links: bool) -> dict[str, Any]:
    scenario: dict[str, Any] = yaml.safe_load(DEMO.read_text())
    debtors, company_ids = [], []
    for d in range(DEBTORS):
        count = BIG_DEBTOR_COMPANIES if d == 0 else 1
        companies = [{"id": 900_000 + d * 1000 + c, "number": c + 1, "name": f"Company {d}-{c}"} for c in range(count)]
        company_ids += [c["id"] for c in companies]
        debtors.append({"id": 80_000 + d, "number": f"X{d:04d}", "name": f"Debtor {d}", "companies": companies})
    scenario["environments"].append({
        "sub_domain": "big-office", "product": "accountant", "subscription_valid": True, "debtors": debtors,
        "logins": [{"username": LOGIN, "level": "client", "company_filter": company_ids, "password": "big-pw"}]})
    scenario["rest"]["settings"]["blank_page_links"] = blank_page_links
    return scenario


@pytest.fixture(scope="module", params=[False, True], ids=["null_links", "blank_links"])
def big(request: pytest.FixtureRequest) -> Iterator[RunningSim]:
    with running_simulator(big_world(request.param)) as running:
        yield running


def test_every_page_of_debtors_and_companies_is_read(big: RunningSim, make_client: Callable[..., RestClient]
                                                     ) -> None:
    app = rest_app(big)
    conn = connect(big, app, LOGIN, SimClock(big))
    big.admin.clear_calls()
    reach = make_client(app).probe(conn.credentials)
    assert len(reach.debtors) == DEBTORS
    assert len(reach.companies) == BIG_DEBTOR_COMPANIES + DEBTORS - 1
    assert len(reach.debtor_uuids) == DEBTORS
    assert len(reach.company_uuids) == len(reach.companies)
    first = derived_uuid("debtor", 80_000)
    assert sum(c.debtor_uuid == first for c in reach.companies) == BIG_DEBTOR_COMPANIES
    assert derived_uuid("company", 900_000 + BIG_DEBTOR_COMPANIES - 1) in reach.company_uuids  # the last page
    pages = 2 + (DEBTORS - 1) + 3  # debtors: 100 + 30; 129 one-page debtors; 250 companies in 3 pages
    assert reach.calls == pages
    assert big.admin.call_count(service="REST", operation="getDebtors") == 2
    assert big.admin.call_count(service="REST", operation="getCompaniesByDebtor") == DEBTORS + 2
    last = requests.get(f"{big.root_url}/api/debtors", params={"pageNumber": 2, "pageSize": 100}, timeout=5,
                        headers={"Authorization": f"Bearer {conn.access(False).reveal()}",
                                 "X-Subscription-Key": app.subscription_key.reveal()}).json()["pagination"]
    assert last["nextPage"] == ("" if big.simulator.rest.settings.blank_page_links else None)
