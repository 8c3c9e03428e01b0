"""A stored probe read in parts (`Probe.from_stored`): the same probe `from_dict` reads from the whole, its record
lists read only when something needs the records, with `from_dict`'s errors when they are read."""

from __future__ import annotations

import dataclasses
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l1nda_sync.nmbrs import Company, Debtor, DebtorTag, Environment, Probe
from l1nda_sync.nmbrs.records import StoredRecords

UNREADABLE = '[{"name": "no id"}]'  # a list whose record cannot be read: raises only when read

names = st.none() | st.text(max_size=8)
tags = st.builds(DebtorTag, st.integers(0, 99), names, names)
debtors = st.builds(Debtor, st.integers(1, 10**6), names, names, st.lists(tags, max_size=2).map(tuple))
companies = st.builds(Company, st.integers(1, 10**6), st.integers(0, 10**4), names,
                      st.sampled_from(["None", "Month", "Week4"]), names, st.none() | st.integers(1, 10**6))
probes = st.builds(
    Probe, st.none() | st.builds(Environment, st.text(min_size=1, max_size=8), st.text(min_size=1, max_size=8)),
    st.text(max_size=8), st.lists(debtors, max_size=6).map(tuple), st.lists(companies, max_size=6).map(tuple),
    st.integers(0, 50), st.datetimes(timezones=st.just(UTC)), st.booleans(), st.none() | st.booleans(),
    st.dictionaries(st.sampled_from(["debtors", "companies"]), st.text(min_size=1, max_size=8)),
)


def in_parts(stored: dict[str, Any]) -> Probe:
    """As `load_tokens` reads it: the head, each list as JSON text (None: no key), and the lists' lengths."""
    head = {key: value for key, value in stored.items() if key not in ("debtors", "companies")}
    text = {key: json.dumps(stored[key]) if key in stored else None for key in ("debtors", "companies")}
    count = {key: len(stored[key]) if isinstance(stored.get(key), list) else None for key in ("debtors", "companies")}
    return Probe.from_stored(head, text["debtors"], text["companies"], debtor_count=count["debtors"],
                             company_count=count["companies"])


@settings(max_examples=150, deadline=None)
@given(probes)
def test_a_probe_read_in_parts_is_the_probe_read_whole(probe: Probe) -> None:
    stored = json.loads(json.dumps(probe.to_dict()))
    whole, parts = Probe.from_dict(stored), in_parts(stored)
    assert (len(parts.debtors), len(parts.companies)) == (len(probe.debtors), len(probe.companies))
    assert parts == whole
    assert (parts.debtors, parts.companies) == (probe.debtors, probe.companies)
    assert parts.to_dict() == whole.to_dict()
    assert parts.answer_digests == whole.answer_digests


@pytest.mark.parametrize("stored", [{}, {"domain": "demo"}, {"debtors": None, "companies": []},
                                    {"debtors": [{"id": 5}], "mapping_refreshed_at": "2026-12-01T10:00:00"}])
def test_missing_or_empty_lists_read_as_from_dict_reads_them(stored: dict[str, Any]) -> None:
    assert in_parts(stored) == Probe.from_dict(stored)


def test_the_count_answers_len_and_a_list_equals_itself_without_being_read() -> None:
    probe = Probe.from_stored({"domain": "demo"}, UNREADABLE, "[]", debtor_count=1, company_count=0)
    assert len(probe.debtors) == 1
    assert probe.debtors == probe.debtors
    assert dataclasses.replace(probe, calls=3).debtors is probe.debtors
    assert "not read" in repr(probe)
    with pytest.raises(ValueError, match=r"a stored probe is not readable .*drop it"):
        list(probe.debtors)


DEEP = "[" * 200_000 + "]" * 200_000  # nested deeper than the JSON parser goes


@pytest.mark.parametrize(("debtors_text", "companies_text"), [
    (UNREADABLE, None), (None, '[{"id": "x"}]'), ('"text"', None), ("{not json", None), ("[1, 2]", None),
    (None, DEEP)])
def test_an_unreadable_list_is_from_dicts_value_error_when_it_is_read(debtors_text: str | None,
                                                                        companies_text: str | None) -> None:
    probe = Probe.from_stored({"domain": "demo"}, debtors_text, companies_text)
    with pytest.raises(ValueError, match="a stored probe is not readable"):
        _ = probe.debtors == () and probe.companies == ()
    if debtors_text != "{not json" and companies_text != DEEP:
        with pytest.raises(ValueError, match="a stored probe is not readable"):
            Probe.from_dict({"debtors": json.loads(debtors_text or "null"),
                             "companies": json.loads(companies_text or "null")})


@pytest.mark.parametrize("head", [[], "text", 3, None])
def test_a_head_that_is_not_an_object_is_a_value_error(head: Any) -> None:
    with pytest.raises(ValueError, match="must be a JSON object"):
        Probe.from_stored(head, None, None)


def test_read_records_compare_and_hash_as_the_tuple() -> None:
    probe = Probe.from_stored({}, None, json.dumps([{"id": 1, "number": 7, "name": "A", "period": "Month",
                                                     "kvk": None, "debtor_id": 2}]), company_count=1)
    records = probe.companies
    assert isinstance(records, StoredRecords)
    expected = (Company(1, 7, "A", "Month", None, 2),)
    assert records == expected
    assert expected == records
    assert records != ()
    assert records != [expected[0]]  # a tuple, as the records it stands for
    assert hash(records) == hash(expected)
    assert records[0] == expected[0]
    assert records[:1] == expected
    assert repr(records) == repr(expected)


def test_threads_reading_one_list_at_once_all_read_the_records() -> None:
    text = json.dumps([{"id": n, "number": n, "period": "Month"} for n in range(2000)])
    for _ in range(20):
        probe = Probe.from_stored({}, None, text, company_count=2000)
        start = threading.Barrier(8)

        def read(p: Probe = probe, b: threading.Barrier = start) -> int:
            b.wait()
            return len(tuple(p.companies))

        with ThreadPoolExecutor(max_workers=8) as pool:
            assert list(pool.map(lambda _: read(), range(8))) == [2000] * 8
