"""An answer byte for byte the one a stored probe was read from is not read again (`answer_digest`), and that
changes no probe: for any world and any change, the probe made with the stored digests equals, field for field and
digest for digest, the one made without them. Against the simulator over HTTP; reads are counted by the
services' own counters."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l1nda_sync.nmbrs import NmbrsClient, TransientError
from l1nda_sync.nmbrs import answer_digest as digest_module
from l1nda_sync.nmbrs.answer_digest import AnswerMemo, answer_digest
from l1nda_sync.nmbrs.records import Probe

from .conftest import CLIENT_VANDIJK, ENV, MASTER_ALL, MASTER_HORECA, WallClock
from .test_probe_fanout_sim import OFFICE, creds, office, worlds

DAY = 86400.0


def reads(client: NmbrsClient) -> int:
    """Answers read so far (by the fast reader or by zeep), both services."""
    services = [client.soap_service(name) for name in ("DebtorService", "CompanyService")]
    return sum(s.fast_reads + s.zeep_reads for s in services)


def without_digests(probe: Probe) -> Probe:
    """The probe as a stored cache from before answer digests reads back."""
    data = probe.to_dict()
    del data["answer_digests"]
    return Probe.from_dict(data)


def records(probe: Probe) -> tuple[object, ...]:
    return probe.debtors, probe.companies


def every_field(probe: Probe) -> tuple[object, ...]:
    return (*dataclasses.astuple(probe), dict(probe.answer_digests))


def test_an_unchanged_token_reads_neither_answer_and_keeps_its_records(sim, client: NmbrsClient) -> None:
    first = client.probe(MASTER_ALL.creds())
    assert set(first.answer_digests) == {"debtors", "companies"}
    before = reads(client)
    again = client.probe(MASTER_ALL.creds(first.domain), first)
    assert reads(client) == before  # two calls sent, no answer read
    assert (again.calls, again.mapping_reused) == (2, True)
    assert (again.debtors, again.companies) == (first.debtors, first.companies)
    assert again.companies[0] is first.companies[0]  # the stored records themselves
    assert again.answer_digests == first.answer_digests


def test_a_changed_answer_is_read_and_gets_its_new_digest(sim, client: NmbrsClient) -> None:
    first = client.probe(MASTER_HORECA.creds())
    company = first.companies[0]
    sim.admin.end_company(company.id)
    before = reads(client)
    after = client.probe(MASTER_HORECA.creds(ENV), first)
    assert reads(client) == before + 1  # the companies' answer only
    assert company.id not in after.company_ids
    assert after.answer_digests["debtors"] == first.answer_digests["debtors"]
    assert after.answer_digests["companies"] != first.answer_digests["companies"]


def test_a_stored_probe_without_digests_reads_both_answers_and_learns_them(sim, client: NmbrsClient) -> None:
    first = client.probe(MASTER_ALL.creds())
    before = reads(client)
    again = client.probe(MASTER_ALL.creds(first.domain), without_digests(first))
    assert reads(client) == before + 2
    assert every_field(again) == every_field(client.probe(MASTER_ALL.creds(first.domain), first))


def test_digests_of_another_reader_version_never_match(sim, client: NmbrsClient,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A release that reads answers differently bumps READER_VERSION: every stored digest misses once."""
    monkeypatch.setattr(digest_module, "READER_VERSION", b"records-0")
    older = client.probe(MASTER_ALL.creds())
    monkeypatch.undo()
    before = reads(client)
    again = client.probe(MASTER_ALL.creds(older.domain), older)
    assert reads(client) == before + 2
    assert records(again) == records(older)
    assert not set(again.answer_digests.values()) & set(older.answer_digests.values())


def test_different_bytes_with_the_same_records_are_read_and_equal(sim, client: NmbrsClient) -> None:
    """Fields the WSDL does not declare change the bytes, not the records: read (tidied), never taken as known."""
    first = client.probe(MASTER_ALL.creds())
    sim.admin.inject_fault("extra_element", service="CompanyService", operation="List_GetAll", count=1)
    before = reads(client)
    odd = client.probe(MASTER_ALL.creds(first.domain), first)
    assert reads(client) == before + 1
    assert records(odd) == records(first)
    assert odd.answer_digests["companies"] != first.answer_digests["companies"]


def test_a_single_empty_list_is_read_as_what_it_says(sim, client: NmbrsClient) -> None:
    """An odd answer is never mistaken for the known one: the empty list is read (and judged upstream)."""
    first = client.probe(MASTER_ALL.creds())
    sim.admin.inject_fault("empty_list", service="CompanyService", operation="List_GetAll", count=1)
    odd = client.probe(MASTER_ALL.creds(first.domain), first)
    assert odd.companies == ()
    back = client.probe(MASTER_ALL.creds(first.domain), odd)
    assert records(back) == records(first)
    assert back.answer_digests == first.answer_digests


def test_a_new_wsdl_makes_the_stored_digests_miss(sim, make_client, tmp_path: Path) -> None:
    """Nmbrs added KvkNr to Company before: read by a WSDL without it, the field is dropped. Once the cached WSDL
    is the new one, the same bytes must be read again (into records with the KvkNr), not taken as known."""
    url = f"{sim.base_url}CompanyService.asmx?WSDL"
    field = '<s:element minOccurs="0" maxOccurs="1" name="KvkNr" type="s:string" />'
    current = requests.get(url, timeout=10).text
    assert field in current
    older = make_client(nmbrs_wsdl_cache_dir=str(tmp_path / "older"))
    cached = older.wsdl_cache.path_for(url)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(current.replace(field, ""))
    first = older.probe(MASTER_ALL.creds())
    assert all(c.kvk is None for c in first.companies)

    newer = make_client(nmbrs_wsdl_cache_dir=str(tmp_path / "newer"))
    again = newer.probe(MASTER_ALL.creds(first.domain), first)
    assert any(c.kvk for c in again.companies)
    assert every_field(again) == every_field(newer.probe(MASTER_ALL.creds(first.domain), without_digests(first)))
    assert again.answer_digests["companies"] != first.answer_digests["companies"]
    assert again.answer_digests["debtors"] == first.answer_digests["debtors"]  # DebtorService's WSDL is the same


def test_a_retried_call_judges_only_its_last_answer(sim, client: NmbrsClient) -> None:
    first = client.probe(MASTER_ALL.creds())
    sim.admin.inject_fault("http_503", service="DebtorService", operation="List_GetAll", count=1)
    before = reads(client)
    again = client.probe(MASTER_ALL.creds(first.domain), first)
    assert (reads(client), again.calls) == (before, 3)
    assert (again.debtors, again.answer_digests) == (first.debtors, first.answer_digests)


def test_a_failed_call_leaves_no_digest(sim, client: NmbrsClient) -> None:
    first = client.probe(MASTER_ALL.creds())
    sim.admin.inject_fault("http_503", service="DebtorService", operation="List_GetAll")
    memo = AnswerMemo(first.answer_digests["debtors"])
    with pytest.raises(TransientError):
        client.call(MASTER_ALL.creds(), ENV, "DebtorService", "List_GetAll", None, memo)
    assert (memo.digest, memo.same) == (None, False)


def test_a_customer_login_without_debtors_keeps_its_companies_digest(sim, client: NmbrsClient) -> None:
    sim.admin.set_operation_allowed(CLIENT_VANDIJK.username, "DebtorService", "List_GetAll", False)
    first = client.probe(CLIENT_VANDIJK.creds())
    assert set(first.answer_digests) == {"companies"}
    before = reads(client)
    again = client.probe(CLIENT_VANDIJK.creds(first.domain), first)
    assert reads(client) == before  # the debtors' 1002 is a fault (not counted); the companies' answer is known
    assert (records(again), again.mapping_reused) == (records(first), True)
    assert again.answer_digests == first.answer_digests


def test_the_digest_is_of_the_bytes_and_the_reader_version() -> None:
    assert answer_digest(b"<a/>") == answer_digest(b"<a/>")
    assert answer_digest(b"<a/>") != answer_digest(b"<a />")
    assert len(answer_digest(b"")) == 32


@pytest.mark.parametrize("stored", [None, "x", ["a"], {"debtors": 1, "companies": "ab"}])
def test_unreadable_stored_digests_are_none(stored: object) -> None:
    probe = Probe.from_dict({"domain": ENV, "debtors": [], "companies": [], "answer_digests": stored})
    assert dict(probe.answer_digests) == ({"companies": "ab"} if isinstance(stored, dict) else {})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=worlds, after=worlds, n=st.integers(0, 3), refresh=st.booleans())
def test_any_world_and_change_give_the_probe_made_without_digests(sim, make_client, wall: WallClock, before,
                                                                  after, n: int, refresh: bool) -> None:
    with_digests, without = make_client(), make_client()
    sim.admin.load_world(office(before, masters=4))
    first = with_digests.probe(creds(n))
    assert every_field(first) == every_field(without.probe(creds(n)))
    sim.admin.load_world(office(after, masters=4))
    if refresh:
        wall.advance(DAY)
    expected = without.probe(creds(n, OFFICE), without_digests(first))
    assert every_field(with_digests.probe(creds(n, OFFICE), first)) == every_field(expected)


def test_a_prepared_call_never_shows_its_token(sim, client: NmbrsClient) -> None:
    """The envelope carries the token; the request's repr, str and headers do not."""
    request = client.soap_service("DebtorService").prepare(
        "List_GetAll", "AuthHeaderWithDomain", {"Username": MASTER_ALL.username, "Token": MASTER_ALL.token,
                                                "Domain": ENV}, {})
    assert MASTER_ALL.token.encode() in request.body
    for shown in (repr(request), str(request), repr(dict(request.headers))):
        assert MASTER_ALL.token[-8:] not in shown
