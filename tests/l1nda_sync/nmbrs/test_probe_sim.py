"""Probe economy against the simulator: mapping reuse, incremental and full refreshes, domain rediscovery,
debtor-level logins. Call counts are checked in the simulator's own call log."""

from __future__ import annotations

import dataclasses

import pytest

from l1nda_sync.nmbrs import CredentialInvalid, Environment, NmbrsClient, OperationNotAllowed

from .conftest import CLIENT_DELINDE, CLIENT_VANDIJK, ENV, MASTER_ALL, MASTER_HORECA, WallClock

DAY = 86400.0


def ops(sim, username: str) -> dict[str, int]:
    return {f"{r['service']}.{r['operation']}": r["count"] for r in sim.admin.calls() if r["username"] == username}


def test_an_unchanged_token_costs_two_calls_and_reuses_the_mapping(sim, client: NmbrsClient) -> None:
    first = client.probe(MASTER_ALL.creds())
    sim.admin.clear_calls()
    again = client.probe(MASTER_ALL.creds(first.domain), first)
    assert again.calls == 2
    assert ops(sim, MASTER_ALL.username) == {"DebtorService.List_GetAll": 1, "CompanyService.List_GetAll": 1}
    assert again.mapping_reused is True
    assert again.mapping_refreshed_at == first.mapping_refreshed_at
    assert (again.debtors, again.companies, again.environment) == (first.debtors, first.companies,
                                                                   first.environment)


def test_the_mapping_is_rebuilt_when_the_refresh_interval_has_passed(sim, client: NmbrsClient,
                                                                     wall: WallClock) -> None:
    first = client.probe(MASTER_HORECA.creds())
    wall.advance(DAY - 1)
    assert client.probe(MASTER_HORECA.creds(ENV), first).mapping_reused is True
    wall.advance(1)
    sim.admin.clear_calls()
    full = client.probe(MASTER_HORECA.creds(ENV), first)
    assert full.calls == 2 * 3 + 2
    assert ops(sim, MASTER_HORECA.username) == {"DebtorService.List_GetAll": 1, "CompanyService.List_GetAll": 1,
                                                "DebtorService.Tags_Get": 3, "CompanyService.List_GetByDebtor": 3}
    assert (full.mapping_reused, full.mapping_refreshed_at) == (False, wall.now)


def test_a_zero_interval_rebuilds_every_time(sim, make_client) -> None:
    client = make_client(mapping_full_refresh=0.0)
    first = client.probe(MASTER_HORECA.creds())
    assert client.probe(MASTER_HORECA.creds(ENV), first).calls == 8


def test_a_new_debtor_costs_only_its_own_calls(sim, client: NmbrsClient) -> None:
    first = client.probe(MASTER_HORECA.creds())
    sim.admin.add_debtor(ENV, id=2100, number="D100", name="Snackbar Nieuw", tags=["Horeca"])
    sim.admin.add_company(2100, id=52100, number=2100, name="Snackbar Nieuw B.V.")
    sim.admin.clear_calls()
    probe = client.probe(MASTER_HORECA.creds(ENV), first)
    assert probe.calls == 4
    assert ops(sim, MASTER_HORECA.username) == {"DebtorService.List_GetAll": 1, "CompanyService.List_GetAll": 1,
                                                "DebtorService.Tags_Get": 1, "CompanyService.List_GetByDebtor": 1}
    assert probe.debtor_ids == {2001, 2002, 2004, 2100}
    assert {c.id: c.debtor_id for c in probe.companies}[52100] == 2100
    assert probe.debtors[-1].tags[0].name == "Horeca"
    assert probe.mapping_reused is False
    assert probe.mapping_refreshed_at == first.mapping_refreshed_at  # not a full refresh


def test_a_new_company_of_a_kept_debtor_asks_the_kept_debtors(sim, client: NmbrsClient) -> None:
    first = client.probe(MASTER_HORECA.creds())
    sim.admin.add_company(2002, id=50202, number=202, name="De Zwaan Terras B.V.")
    sim.admin.clear_calls()
    probe = client.probe(MASTER_HORECA.creds(ENV), first)
    assert probe.calls == 2 + 3
    assert ops(sim, MASTER_HORECA.username)["CompanyService.List_GetByDebtor"] == 3
    assert "DebtorService.Tags_Get" not in ops(sim, MASTER_HORECA.username)
    assert {c.id: c.debtor_id for c in probe.companies}[50202] == 2002


def test_a_lost_debtor_costs_two_calls_and_its_old_tags_stay_in_the_previous_probe(sim, client) -> None:
    first = client.probe(MASTER_HORECA.creds())
    sim.admin.set_debtor_tags(2004, remove=["Horeca"])
    sim.admin.clear_calls()
    probe = client.probe(MASTER_HORECA.creds(ENV), first)
    assert probe.calls == 2
    assert probe.debtor_ids == {2001, 2002}
    assert 50401 not in probe.company_ids
    assert {c.id: c.debtor_id for c in probe.companies} == {50101: 2001, 50102: 2001, 50201: 2002}
    assert [t.name for t in next(d for d in first.debtors if d.id == 2004).tags] == ["Horeca", "Retail"]


def test_a_move_between_kept_debtors_shows_at_the_next_full_refresh(sim, client, wall: WallClock) -> None:
    """The documented price of the 2-call probe: equal sets reuse the mapping until the interval ends."""
    first = client.probe(MASTER_HORECA.creds())
    sim.admin.move_company(50102, 2002)
    reused = client.probe(MASTER_HORECA.creds(ENV), first)
    assert {c.id: c.debtor_id for c in reused.companies}[50102] == 2001
    wall.advance(DAY)
    full = client.probe(MASTER_HORECA.creds(ENV), reused)
    assert {c.id: c.debtor_id for c in full.companies}[50102] == 2002


def test_a_stale_remembered_domain_is_rediscovered_once(sim, client: NmbrsClient) -> None:
    first = client.probe(MASTER_HORECA.creds())
    moved = dataclasses.replace(first, domain="old-office", environment=Environment("old-office.nmbrs.nl",
                                                                                    "old-office"))
    sim.admin.clear_calls()
    probe = client.probe(MASTER_HORECA.creds("old-office"), moved)
    assert probe.domain == ENV
    assert probe.environment == first.environment
    assert (probe.debtors, probe.companies) == (first.debtors, first.companies)
    counts = ops(sim, MASTER_HORECA.username)
    assert counts["DebtorService.Environment_Get"] == 1
    assert counts["DebtorService.List_GetAll"] == 2  # the 1001 and its one repeat
    assert probe.mapping_reused is False  # another domain: everything is asked again
    assert probe.calls == 1 + 2 + 1 + 2 * 3


def test_a_revoked_token_with_a_remembered_domain_is_judged_after_one_rediscovery(sim, client) -> None:
    first = client.probe(MASTER_HORECA.creds())
    sim.admin.reset_token(MASTER_HORECA.username)
    sim.admin.clear_calls()
    with pytest.raises(CredentialInvalid):
        client.probe(MASTER_HORECA.creds(ENV), first)
    assert ops(sim, MASTER_HORECA.username) == {"DebtorService.List_GetAll": 1, "DebtorService.Environment_Get": 1}


def test_a_revoked_token_without_a_domain_costs_one_call(sim, client) -> None:
    sim.admin.reset_token(MASTER_HORECA.username)
    with pytest.raises(CredentialInvalid):
        client.probe(MASTER_HORECA.creds())
    assert ops(sim, MASTER_HORECA.username) == {"DebtorService.Environment_Get": 1}


def test_a_client_login_that_may_not_list_debtors_still_finds_its_companies(sim, client) -> None:
    sim.admin.set_operation_allowed(CLIENT_VANDIJK.username, "DebtorService", "List_GetAll", False)
    first = client.probe(CLIENT_VANDIJK.creds())
    assert first.debtors == ()
    assert [(c.id, c.debtor_id) for c in first.companies] == [(50301, None)]
    assert (first.is_owner, first.calls) == (False, 4)
    sim.admin.clear_calls()
    again = client.probe(CLIENT_VANDIJK.creds(ENV), first)
    assert again.calls == 2
    assert "DebtorService.Debtor_IsOwner" not in ops(sim, CLIENT_VANDIJK.username)
    assert (again.companies, again.mapping_reused, again.is_owner) == (first.companies, True, False)


def test_a_master_that_may_not_list_debtors_gets_the_1002(sim, client) -> None:
    sim.admin.set_operation_allowed(MASTER_HORECA.username, "DebtorService", "List_GetAll", False)
    with pytest.raises(OperationNotAllowed) as caught:
        client.probe(MASTER_HORECA.creds())
    assert (caught.value.service, caught.value.operation) == ("DebtorService", "List_GetAll")
    assert ops(sim, MASTER_HORECA.username)["DebtorService.Debtor_IsOwner"] == 1


def test_a_client_that_may_ask_neither_gets_the_1002_for_list_getall(sim, client) -> None:
    # de Linde's template has no Debtor_IsOwner; switching List_GetAll off leaves nothing to tell its level by
    sim.admin.set_operation_allowed(CLIENT_DELINDE.username, "DebtorService", "List_GetAll", False)
    with pytest.raises(OperationNotAllowed) as caught:
        client.probe(CLIENT_DELINDE.creds())
    assert caught.value.operation == "List_GetAll"


def test_a_master_without_list_getbydebtor_gets_its_1002(sim, client) -> None:
    sim.admin.set_operation_allowed(MASTER_HORECA.username, "CompanyService", "List_GetByDebtor", False)
    with pytest.raises(OperationNotAllowed) as caught:
        client.probe(MASTER_HORECA.creds())
    assert (caught.value.service, caught.value.operation) == ("CompanyService", "List_GetByDebtor")


def test_a_transient_fault_inside_a_probe_is_retried_and_counted(sim, client) -> None:
    sim.admin.inject_fault("fault_1006", username=MASTER_HORECA.username, operation="Tags_Get", count=2)
    probe = client.probe(MASTER_HORECA.creds())
    assert probe.calls == 2 * 3 + 3 + 2
    assert sim.admin.call_count(username=MASTER_HORECA.username) == probe.calls


def test_a_failed_probe_tells_how_many_calls_it_sent(sim, make_client) -> None:
    sim.admin.set_operation_allowed(MASTER_HORECA.username, "CompanyService", "List_GetByDebtor", False)
    with pytest.raises(OperationNotAllowed) as caught:
        make_client(nmbrs_per_login_concurrency=1).probe(MASTER_HORECA.creds())
    assert caught.value.calls == sim.admin.call_count(username=MASTER_HORECA.username) == 1 + 1 + 3 + 1 + 1


def test_a_failed_fanned_out_probe_counts_the_calls_that_were_in_flight(sim, make_client) -> None:
    sim.admin.set_operation_allowed(MASTER_HORECA.username, "CompanyService", "List_GetByDebtor", False)
    with pytest.raises(OperationNotAllowed) as caught:
        make_client(nmbrs_per_login_concurrency=4).probe(MASTER_HORECA.creds())
    sent = sim.admin.call_count(username=MASTER_HORECA.username)
    assert caught.value.calls == sent
    assert 1 + 1 + 3 + 1 + 1 <= sent <= 1 + 1 + 3 + 3 + 1  # the 3 debtors' List_GetByDebtor may all be in flight
