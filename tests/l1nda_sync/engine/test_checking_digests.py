"""What a check stores when answer digests are involved (`probe_one`): a stored probe from before digests, or
answers whose bytes changed while their records did not, are stored once (so the next probe may skip reading);
byte-identical answers are an unchanged check that stores nothing. Against the simulator over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from l1nda_sync.engine.checking import CheckRecord, TokenToCheck, probe_one
from l1nda_sync.engine.token_state import Outcome
from l1nda_sync.masking import Secret
from l1nda_sync.nmbrs import NmbrsClient
from l1nda_sync.nmbrs.limits import CallGate
from l1nda_sync.settings import Settings
from nmbrs_sim.testing import RunningSim

USER, TOKEN, ENV = "master-all@demo-accountants.example", "3f1c0e7a9b2d4c6e8f0a1b2c3d4e5f60", "demo-accountants"


@pytest.fixture
def client(sim: RunningSim, tmp_path: Path) -> Iterator[NmbrsClient]:
    made = NmbrsClient(settings=Settings(nmbrs_base_url=sim.base_url, nmbrs_wsdl_cache_dir=str(tmp_path)),
                       gate=CallGate(10_000, 8))
    yield made
    made.close()


def check(client: NmbrsClient, cache: dict | None) -> CheckRecord:
    token = TokenToCheck(1, USER, ENV if cache else None, cache, TOKEN)
    return probe_one(token, reveal=Secret, client=client, now=lambda: datetime.now(UTC))


def test_a_probe_stored_before_digests_is_stored_once_then_unchanged(sim: RunningSim, client: NmbrsClient) -> None:
    first = check(client, None)
    assert first.probe is not None
    older = {key: value for key, value in first.probe.items() if key != "answer_digests"}
    learned = check(client, older)
    assert (learned.outcome, learned.unchanged) == (Outcome.VALID, False)
    assert learned.probe is not None
    assert learned.probe["answer_digests"] == first.probe["answer_digests"]
    assert (learned.probe["debtors"], learned.probe["companies"]) == (older["debtors"], older["companies"])
    again = check(client, learned.probe)
    assert (again.outcome, again.unchanged, again.probe) == (Outcome.VALID, True, None)
    assert (again.debtors, again.companies) == (learned.debtors, learned.companies)


def test_new_bytes_with_the_same_records_are_stored_without_a_reach_change(sim: RunningSim,
                                                                           client: NmbrsClient) -> None:
    first = check(client, None)
    assert first.probe is not None
    sim.admin.inject_fault("extra_element", service="DebtorService", operation="List_GetAll", count=1)
    odd = check(client, first.probe)
    assert (odd.outcome, odd.unchanged) == (Outcome.VALID, False)
    assert odd.probe is not None
    assert (odd.probe["debtors"], odd.probe["companies"]) == (first.probe["debtors"], first.probe["companies"])
    back = check(client, odd.probe)  # the usual bytes again: read, and stored under their digest again
    assert back.probe is not None
    assert back.probe["answer_digests"] == first.probe["answer_digests"]
    assert check(client, back.probe).unchanged is True


def in_parts(cache: dict, *, debtors: str | None = None, companies: str | None = None) -> TokenToCheck:
    """The token as `load_tokens` reads it: the stored records as text (these texts, when given) and counts."""
    head = {key: value for key, value in cache.items() if key not in ("debtors", "companies")}
    records = (debtors or json.dumps(cache["debtors"]), companies or json.dumps(cache["companies"]),
               len(cache["debtors"]), len(cache["companies"]))
    return TokenToCheck(1, USER, ENV, head, TOKEN, stored_records=records)


def test_an_unchanged_check_never_reads_the_stored_records(sim: RunningSim, client: NmbrsClient) -> None:
    first = check(client, None)
    stored = check(client, first.probe).probe or first.probe  # stored under its digests
    assert stored is not None
    assert stored["debtors"]
    assert stored["companies"]
    damaged = in_parts(stored, debtors='[{"name": "no id"}]', companies="{not json")  # raises when read
    now = lambda: datetime.now(UTC)  # noqa: E731
    unchanged = probe_one(damaged, reveal=Secret, client=client, now=now)
    assert (unchanged.outcome, unchanged.unchanged, unchanged.probe) == (Outcome.VALID, True, None)
    assert (unchanged.debtors, unchanged.companies) == (len(stored["debtors"]), len(stored["companies"]))
    # New bytes must be compared with the stored records: now they are read, and a damaged list is the
    # `unknown` an unreadable stored probe always was (the state stays), never a change of reach.
    sim.admin.inject_fault("extra_element", service="DebtorService", operation="List_GetAll", count=1)
    read = probe_one(damaged, reveal=Secret, client=client, now=now)
    assert read.outcome is Outcome.UNKNOWN
    assert "a stored probe is not readable" in (read.detail or "")
    intact = probe_one(in_parts(stored), reveal=Secret, client=client, now=now)
    assert (intact.outcome, intact.unchanged) == (Outcome.VALID, True)


def test_a_changed_check_is_judged_against_the_stored_records_not_their_count(sim: RunningSim,
                                                                              client: NmbrsClient) -> None:
    """No answer is reused when the daily refresh is due (or the stored probe has no digests): nothing in the probe
    reads the stored records, yet the reach is judged against them. A damaged list must then be the `unknown` it
    is when read whole, never a drop judged by the count of records that cannot be read."""
    first = check(client, None)
    assert first.probe is not None
    stored = {key: value for key, value in first.probe.items() if key != "answer_digests"}
    stored["mapping_refreshed_at"] = "2020-01-01T00:00:00+00:00"
    stored["companies"] = [{"name": "damaged, no id"}] * (10 * len(stored["companies"]))
    now = lambda: datetime.now(UTC)  # noqa: E731
    whole = probe_one(TokenToCheck(1, USER, ENV, stored, TOKEN), reveal=Secret, client=client, now=now)
    parts = probe_one(in_parts(stored), reveal=Secret, client=client, now=now)
    assert whole.outcome is Outcome.UNKNOWN
    assert (parts.outcome, parts.detail) == (whole.outcome, whole.detail)
    assert "a stored probe is not readable" in (parts.detail or "")
    # Nothing of the probe that could not be judged is kept, but the requests it sent are counted.
    assert (parts.probe, parts.unchanged, parts.debtors, parts.companies) == (None, False, None, None)
    assert parts.calls >= 2


def test_stored_records_the_probe_itself_cannot_read_count_the_requests_it_sent(sim: RunningSim,
                                                                                 client: NmbrsClient) -> None:
    """The debtors' answer is unchanged but the companies' is not: the probe reuses the stored debtors, reads them,
    and cannot. The check is `unknown`, as when read whole, and counts the requests it did send."""
    first = check(client, None)
    stored = check(client, first.probe).probe or first.probe
    assert stored is not None
    sim.admin.inject_fault("extra_element", service="CompanyService", operation="List_GetAll", count=1)
    now = lambda: datetime.now(UTC)  # noqa: E731
    damaged = probe_one(in_parts(stored, debtors='[{"name": "no id"}]'), reveal=Secret, client=client, now=now)
    assert damaged.outcome is Outcome.UNKNOWN
    assert "a stored probe is not readable" in (damaged.detail or "")
    assert (damaged.probe, damaged.debtors, damaged.companies) == (None, None, None)
    assert damaged.calls == 2
