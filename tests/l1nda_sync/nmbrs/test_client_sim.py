"""The client against the simulator over HTTP: what each operation and a first probe return."""

from __future__ import annotations

import pytest

from l1nda_sync.nmbrs import Company, Debtor, DebtorTag, Environment, NmbrsClient, Probe
from l1nda_sync.nmbrs.errors import DataNotAllowed

from .conftest import BUSINESS, CLIENT_DELINDE, CLIENT_VANDIJK, ENV, MASTER_ALL, MASTER_HORECA

HORECA = DebtorTag(1, "Horeca", "#E4572E")
RETAIL = DebtorTag(2, "Retail", "#17BEBB")


def test_a_first_probe_of_a_master_finds_every_debtor_company_and_tag(sim, client: NmbrsClient) -> None:
    probe = client.probe(MASTER_ALL.creds())
    assert probe.environment == Environment("demo-accountants.nmbrs.nl", ENV)
    assert probe.domain == ENV
    assert [d.id for d in probe.debtors] == list(range(2001, 2010))
    assert probe.debtors[3] == Debtor(2004, "D004", "Fietsenwinkel Snel", (HORECA, RETAIL))
    assert probe.debtors[8].tags == ()  # Tags_Get of an untagged debtor: an empty result is an empty tuple
    assert len(probe.companies) == 13  # 50503 is ended: nobody sees it
    assert 50503 not in probe.company_ids
    assert Company(50102, 102, "Het Anker Catering B.V.", "Week4", "60000102", 2001) in probe.companies
    assert Company(50201, 201, "Café De Zwaan V.O.F.", "Month", None, 2002) in probe.companies
    assert all(c.debtor_id is not None for c in probe.companies)
    assert (probe.mapping_reused, probe.is_owner) == (False, None)
    # 2N + 3: Environment_Get, both List_GetAll, Tags_Get and List_GetByDebtor per debtor
    assert probe.calls == 2 * 9 + 3 == sim.admin.call_count(username=MASTER_ALL.username)
    assert client.calls_made == probe.calls


def test_a_tag_filtered_master_reaches_only_its_debtors(client: NmbrsClient) -> None:
    probe = client.probe(MASTER_HORECA.creds())
    assert probe.debtor_ids == {2001, 2002, 2004}
    assert {(c.id, c.debtor_id) for c in probe.companies} == {(50101, 2001), (50102, 2001), (50201, 2002),
                                                               (50401, 2004)}


def test_a_client_login_reaches_its_filtered_company(client: NmbrsClient) -> None:
    probe = client.probe(CLIENT_VANDIJK.creds())
    assert [d.id for d in probe.debtors] == [2003]
    assert [(c.id, c.debtor_id) for c in probe.companies] == [(50301, 2003)]
    assert probe.calls == 5


def test_a_login_without_tags_get_is_probed_without_tags(sim, client: NmbrsClient) -> None:
    probe = client.probe(CLIENT_DELINDE.creds())
    assert probe.debtors == (Debtor(2005, "D005", "Thuiszorg De Linde", ()),)
    assert {(c.id, c.debtor_id) for c in probe.companies} == {(50501, 2005), (50502, 2005)}
    assert sim.admin.call_count(username=CLIENT_DELINDE.username, operation="Tags_Get") == 1


def test_a_business_login_lives_in_its_own_environment(client: NmbrsClient) -> None:
    probe = client.probe(BUSINESS.creds())
    assert probe.domain == "bakkerij-degraaf"
    assert [(c.id, c.debtor_id, c.kvk) for c in probe.companies] == [(60101, 3001, "70000101"),
                                                                     (60102, 3001, "70000102")]


def test_a_login_that_reaches_nothing_gets_empty_tuples(sim, client: NmbrsClient) -> None:
    sim.admin.update_login(CLIENT_VANDIJK.username, company_filter=[])
    probe = client.probe(CLIENT_VANDIJK.creds())
    assert (probe.debtors, probe.companies) == ((), ())
    assert client.companies(CLIENT_VANDIJK.creds(ENV)) == ()


def test_the_single_operations(sim, client: NmbrsClient) -> None:
    creds = MASTER_HORECA.creds(ENV)
    assert client.environment(creds) == Environment("demo-accountants.nmbrs.nl", ENV)
    assert [d.id for d in client.debtors(creds)] == [2001, 2002, 2004]
    assert client.debtor_tags(creds, 2004) == (HORECA, RETAIL)
    assert [c.id for c in client.companies(creds)] == [50101, 50102, 50201, 50401]
    assert [(c.id, c.debtor_id) for c in client.companies_by_debtor(creds, 2001)] == [(50101, 2001),
                                                                                     (50102, 2001)]
    assert client.is_owner(creds) is True
    assert client.is_owner(CLIENT_VANDIJK.creds(ENV)) is False
    # no domain given: it is discovered first (one Environment_Get more)
    sim.admin.clear_calls()
    assert [d.id for d in client.debtors(MASTER_HORECA.creds())] == [2001, 2002, 2004]
    assert sim.admin.call_count(operation="Environment_Get") == 1


def test_a_debtor_outside_the_reach_is_data_not_allowed_naming_it(sim, client: NmbrsClient) -> None:
    with pytest.raises(DataNotAllowed) as caught:
        client.companies_by_debtor(MASTER_HORECA.creds(ENV), 2007)
    error = caught.value
    assert (error.code, error.data_id, error.outcome) == (1003, 2007, "data_not_allowed")
    assert "CompanyService.List_GetByDebtor" in str(error)
    assert "2007" in str(error)
    assert sim.admin.call_count(operation="List_GetByDebtor") == 1  # never retried


def test_a_probe_survives_its_own_json(client: NmbrsClient) -> None:
    import json

    probe = client.probe(MASTER_HORECA.creds())
    assert Probe.from_dict(json.loads(json.dumps(probe.to_dict()))) == probe
