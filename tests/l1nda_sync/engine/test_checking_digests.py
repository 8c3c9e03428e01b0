"""What a check stores when answer digests are involved (`probe_one`): a stored probe from before digests, or
answers whose bytes changed while their records did not, are stored once (so the next probe may skip reading);
byte-identical answers are an unchanged check that stores nothing. Against the simulator over HTTP."""

from __future__ import annotations

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
