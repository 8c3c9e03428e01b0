"""The admin API: every change alters what the next SOAP call answers; reads; clear errors on bad input."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from nmbrs_sim.admin import SimAdmin, SimAdminError
from nmbrs_sim.scenario import load_scenario
from tests.nmbrs_sim.conftest import BUSINESS, CLIENT_DELINDE, CLIENT_VANDIJK, MASTER_ALL, MASTER_HORECA


def _debtor_ids(soap, who) -> list[int]:
    return [d.Id for d in soap.call(who, "DebtorService", "List_GetAll") or []]


def _company_ids(soap, who) -> list[int]:
    return [c.ID for c in soap.call(who, "CompanyService", "List_GetAll") or []]


def test_health_and_logins(sim) -> None:
    assert sim.admin.health() == {"status": "ok", "environments": 2, "logins": 5, "companies": 16}
    logins = {row["username"]: row for row in sim.admin.logins()}
    assert logins[MASTER_HORECA.username] == {
        "username": MASTER_HORECA.username, "level": "accountant", "environment": "demo-accountants",
        "token": MASTER_HORECA.token, "tag_filter": ["Horeca"], "template": "all", "deleted": False}
    assert logins[CLIENT_DELINDE.username]["level"] == "client"
    assert logins[CLIENT_DELINDE.username]["company_filter"] == [50501, 50502]
    assert logins[CLIENT_DELINDE.username]["template"]["DebtorService"] == ["Debtor_Get", "Environment_Get",
                                                                           "List_GetAll"]


def test_base_url_or_root_both_work_for_sim_admin(sim) -> None:
    admin = SimAdmin(sim.base_url)
    try:
        assert admin.health()["status"] == "ok"
    finally:
        admin.close()


def test_edit_tag_filter(sim, soap) -> None:
    sim.admin.update_login(MASTER_HORECA.username, tag_filter=["Zorg", "Bouw"])
    assert _debtor_ids(soap, MASTER_HORECA) == [2005, 2006, 2007, 2008]
    sim.admin.update_login(MASTER_HORECA.username, tag_filter="all")
    assert len(_debtor_ids(soap, MASTER_HORECA)) == 9


def test_edit_company_filter(sim, soap) -> None:
    sim.admin.update_login(CLIENT_VANDIJK.username, company_filter=[50301, 50302])
    assert _company_ids(soap, CLIENT_VANDIJK) == [50301, 50302]
    sim.admin.update_login(CLIENT_VANDIJK.username, company_filter=[])
    assert _company_ids(soap, CLIENT_VANDIJK) == []


def test_a_debtor_level_client_cannot_be_given_another_debtors_company(sim, soap) -> None:
    sim.admin.update_login(CLIENT_VANDIJK.username, company_filter=[50301, 50101])
    assert _company_ids(soap, CLIENT_VANDIJK) == [50301]  # 50101 belongs to debtor 2001


def test_edit_template(sim, soap) -> None:
    sim.admin.update_login(MASTER_ALL.username, template={"CompanyService": ["List_GetByDebtor"]})
    assert soap.fault_code(MASTER_ALL, "CompanyService", "List_GetAll") == 1002
    assert len(_debtor_ids(soap, MASTER_ALL)) == 9  # DebtorService left out: all allowed
    sim.admin.update_login(MASTER_ALL.username, template="all")
    assert len(_company_ids(soap, MASTER_ALL)) == 13


def test_add_debtor_and_company(sim, soap) -> None:
    sim.admin.add_debtor("demo-accountants", id=2010, number="D010", name="Snackbar Frituur", tags=["Horeca"])
    assert _debtor_ids(soap, MASTER_HORECA) == [2001, 2002, 2004, 2010]
    assert soap.call(MASTER_HORECA, "CompanyService", "List_GetByDebtor", DebtorId=2010) is None
    sim.admin.add_company(2010, id=51001, number=1001, name="Frituur B.V.", period="Week4", kvk="60001001")
    [company] = soap.call(MASTER_HORECA, "CompanyService", "List_GetByDebtor", DebtorId=2010)
    assert (company.ID, company.Name, company.LoonaangifteTijdvak, company.KvkNr) == (
        51001, "Frituur B.V.", "Week4", "60001001")
    assert 51001 in _company_ids(soap, MASTER_ALL)


def test_debtor_tags_add_and_remove(sim, soap) -> None:
    assert sim.admin.set_debtor_tags(2007, add=["Horeca"]) == ["Bouw", "Horeca"]
    assert 2007 in _debtor_ids(soap, MASTER_HORECA)
    assert [t.Tag for t in soap.call(MASTER_ALL, "DebtorService", "Tags_Get", DebtorId=2007)] == ["Bouw", "Horeca"]
    sim.admin.set_debtor_tags(2001, remove=["Horeca"])
    assert soap.fault_code(MASTER_HORECA, "DebtorService", "Debtor_Get", DebtorId=2001) == 1003
    assert 50101 not in _company_ids(soap, MASTER_HORECA)


def test_a_new_tag_name_becomes_a_tag_of_the_environment(sim, soap) -> None:
    sim.admin.set_debtor_tags(2009, add=["Cultuur"])
    [tag] = soap.call(MASTER_ALL, "DebtorService", "Tags_Get", DebtorId=2009)
    assert (tag.Number, tag.Tag) == (5, "Cultuur")
    sim.admin.update_login(MASTER_HORECA.username, tag_filter=["Cultuur"])
    assert _debtor_ids(soap, MASTER_HORECA) == [2009]


def test_move_company(sim, soap) -> None:
    sim.admin.move_company(50302, 2001)  # from Modehuis Van Dijk (Retail) to Brasserie Het Anker (Horeca)
    assert [c.ID for c in soap.call(MASTER_ALL, "CompanyService", "List_GetByDebtor", DebtorId=2001)] == [
        50101, 50102, 50302]
    assert 50302 in _company_ids(soap, MASTER_HORECA)
    sim.admin.move_company(50301, 2002)  # the Van Dijk client login is tied to debtor 2003: it loses the company
    assert _company_ids(soap, CLIENT_VANDIJK) == []


def test_end_and_reopen_company(sim, soap) -> None:
    sim.admin.end_company(50301)
    assert _company_ids(soap, CLIENT_VANDIJK) == []
    assert 50301 not in _company_ids(soap, MASTER_ALL)
    sim.admin.reopen_company(50301)
    assert _company_ids(soap, CLIENT_VANDIJK) == [50301]


def test_toggle_subscription(sim, soap) -> None:
    sim.admin.set_subscription("demo-accountants", False)
    assert soap.fault_code(MASTER_ALL, "DebtorService", "List_GetAll") == 1004
    sim.admin.set_subscription("demo-accountants", True)
    assert len(_debtor_ids(soap, MASTER_ALL)) == 9


def test_add_login(sim, soap) -> None:
    row = sim.admin.add_login("bakkerij-degraaf", username="new@bakkerij-degraaf.example", level="client",
                              company_filter=[60102])
    new = BUSINESS.__class__(row["username"], row["token"], "bakkerij-degraaf")
    assert _company_ids(soap, new) == [60102]


def test_reset_world_undoes_everything(sim, soap) -> None:
    sim.admin.reset_token(MASTER_ALL.username)
    sim.admin.set_debtor_tags(2001, remove=["Horeca"])
    sim.admin.set_subscription("bakkerij-degraaf", False)
    sim.admin.reset_world()
    assert len(_debtor_ids(soap, MASTER_ALL)) == 9
    assert _debtor_ids(soap, MASTER_HORECA) == [2001, 2002, 2004]
    assert _company_ids(soap, BUSINESS) == [60101, 60102]


def test_world_snapshot_is_a_valid_scenario_with_the_changes(sim) -> None:
    sim.admin.end_company(50101)
    snapshot = sim.admin.world()
    scenario = load_scenario(snapshot)
    assert scenario.world.companies[50101].ended is True
    assert len(scenario.world.logins) == 5
    sim.admin.load_world(snapshot)
    assert sim.admin.world() == snapshot


def test_call_log(sim, soap) -> None:
    soap.call(MASTER_ALL, "DebtorService", "List_GetAll")
    soap.call(MASTER_ALL, "DebtorService", "List_GetAll")
    soap.call(MASTER_HORECA, "CompanyService", "List_GetAll")
    soap.fault_code(MASTER_HORECA, "DebtorService", "Debtor_Get", DebtorId=1)
    rows = {(r["service"], r["operation"], r["username"]): r for r in sim.admin.calls()}
    row = rows[("DebtorService", "List_GetAll", MASTER_ALL.username)]
    assert (row["count"], row["faults"]) == (2, 0)
    assert row["total_seconds"] >= 0
    assert row["last_at"] > 0
    assert rows[("DebtorService", "Debtor_Get", MASTER_HORECA.username)]["faults"] == 1
    assert sim.admin.call_count() == 4
    assert sim.admin.call_count(service="DebtorService") == 3
    assert sim.admin.call_count(operation="List_GetAll") == 3
    assert sim.admin.call_count(username=MASTER_HORECA.username) == 2
    assert sim.admin.call_count(service="CompanyService", username=MASTER_ALL.username) == 0
    sim.admin.clear_calls()
    assert sim.admin.calls() == []


@pytest.mark.parametrize(("change", "status", "words"), [
    (lambda a: a.reset_token("nobody@x.example"), 404, "unknown login"),
    (lambda a: a.add_login("demo-accountants", username="n@x.example", level="client", tag_filter="all"), 400,
     "accountant logins only"),
    (lambda a: a.add_login("demo-accountants", username="n@x.example", level="accountant", company_filter=[1]),
     400, "client logins only"),
    (lambda a: a.add_login("demo-accountants", username=MASTER_ALL.username, level="accountant"), 409, "exists"),
    (lambda a: a.add_login("demo-accountants", username="nobody", level="accountant"), 400, "e-mail"),
    (lambda a: a.update_login(MASTER_HORECA.username, tag_filter=["Horecaa"]), 400, "unknown tag"),
    (lambda a: a.update_login(MASTER_HORECA.username, company_filter=[50101]), 400, "client logins only"),
    (lambda a: a.update_login(CLIENT_VANDIJK.username, tag_filter="all"), 400, "accountant logins only"),
    (lambda a: a.update_login(CLIENT_VANDIJK.username, company_filter=[60101]), 400, "not in environment"),
    (lambda a: a.update_login(MASTER_ALL.username, template={"DebtorService": ["Nope"]}), 400, "unknown operation"),
    (lambda a: a.set_operation_allowed(MASTER_ALL.username, "EmployeeService", "List", False), 404, "unknown"),
    (lambda a: a.add_debtor("nowhere", id=1, number="1", name="x"), 404, "unknown environment"),
    (lambda a: a.add_debtor("demo-accountants", id=2001, number="1", name="x"), 409, "exists already"),
    (lambda a: a.add_company(2001, id=50101, number=1, name="x"), 409, "exists already"),
    (lambda a: a.add_company(2001, id=59999, number=1, name="x", period="Monthly"), 400, "period"),
    (lambda a: a.move_company(50101, 3001), 400, "within environment"),
    (lambda a: a.end_company(1), 404, "unknown company"),
    (lambda a: a.inject_fault("explode"), 400, "kind"),
    (lambda a: a.inject_fault("http_500", username="typo@x.example"), 400, "never fire"),
    (lambda a: a.inject_fault("http_500", service="EmployeeService"), 400, "service"),
    (lambda a: a.inject_fault("http_500", service="CompanyService", operation="Tags_Get"), 400, "operation"),
    (lambda a: a.load_world({"environments": [{"sub_domain": "x", "debtors": [{"id": 0}]}]}), 400,
     "environments[0].debtors[0].id: must be >= 1"),
    (lambda a: a.inject_fault("http_500", probability=2), 400, "probability"),
    (lambda a: a.inject_fault("http_500", count=0), 400, "count"),
    (lambda a: a.inject_fault("latency"), 400, "ms is required"),
    (lambda a: a.inject_fault("http_500", ms=3), 400, "not a parameter"),
    (lambda a: a.inject_fault("code_no_wrapper", code=1234), 400, "not a known Nmbrs code"),
    (lambda a: a.inject_fault("code_no_wrapper", code=10011), 400, "4-digit"),
    (lambda a: a.inject_fault("unknown_code", code=1001), 400, "is a known Nmbrs code"),
    (lambda a: a.inject_fault("echo_token", status=99), 400, "status must be"),
    (lambda a: a.inject_fault("echo_token", code=4444), 400, "not a known Nmbrs code"),
    (lambda a: a.inject_fault("http_429", retry_after=1.5), 400, "whole seconds"),
    (lambda a: a.inject_fault("http_429", code=1001), 400, "not a parameter"),
    (lambda a: a.inject_fault("null_entry", operation="Environment_Get"), 400, "applies to"),
    (lambda a: a.inject_fault("empty_list", service="DebtorService", operation="Debtor_IsOwner"), 400, "applies to"),
    (lambda a: a.inject_fault("extra_element", operation="Debtor_IsOwner"), 400, "applies to"),
    (lambda a: a.set_latency(-1), 400, "ms must be"),
])
def test_bad_changes_get_a_clear_error_and_change_nothing(sim, soap, change, status: int, words: str) -> None:
    before = sim.admin.world()
    with pytest.raises(SimAdminError) as caught:
        change(sim.admin)
    assert caught.value.status == status
    assert words in str(caught.value)
    assert sim.admin.world() == before


def test_admin_rejects_a_body_that_is_not_json(sim) -> None:
    response = requests.post(f"{sim.root_url}/_sim/faults", data=b"{nope", timeout=10)
    assert response.status_code == 400
    assert "not JSON" in response.json()["error"]


def test_admin_and_soap_share_one_world_across_threads(sim, soap) -> None:
    """SOAP calls from worker threads while another thread flips a tag: every answer is one of the two states."""
    stop = threading.Event()

    def flip() -> int:
        flips = 0
        while not stop.is_set():
            sim.admin.set_debtor_tags(2007, add=["Horeca"])
            sim.admin.set_debtor_tags(2007, remove=["Horeca"])
            flips += 1
        return flips

    def read(_: int) -> list[int]:
        return _debtor_ids(soap, MASTER_HORECA)

    with ThreadPoolExecutor(max_workers=5) as pool:
        flipper = pool.submit(flip)
        try:
            answers = list(pool.map(read, range(120)))
        finally:
            stop.set()
        assert flipper.result() > 0
    assert {tuple(a) for a in answers} <= {(2001, 2002, 2004), (2001, 2002, 2004, 2007)}
    assert sim.simulator.calls.count(username=MASTER_HORECA.username) == 120
