"""`load_tokens` reads each stored probe in parts (its record lists as JSON text, read only when needed): on
PostgreSQL, every shape a `tokens.probe_cache` can hold gives the probe `Probe.from_dict` gives for the whole,
or the same ValueError (a falsy cache is none, as it always was), and a damaged cache never fails the batch's
load."""

from __future__ import annotations

import json
from typing import Any

from l1nda_sync.engine.checking import TokenToCheck, load_tokens
from l1nda_sync.nmbrs import Probe
from l1nda_sync.registry import db

DEBTORS = [{"id": 5, "number": "D5", "name": "Five", "tags": [{"number": 1, "name": "L1NDA", "color": "red"}]},
           {"id": 6, "number": None, "name": None, "tags": []}]
COMPANIES = [{"id": 9, "number": 1009, "name": "Nine", "period": "Month", "kvk": None, "debtor_id": 5}]
FULL = {"environment": {"domain": "demo.nmbrs.nl", "sub_domain": "demo"}, "domain": "demo", "debtors": DEBTORS,
        "companies": COMPANIES, "calls": 2, "mapping_refreshed_at": "2026-12-01T10:00:00+00:00",
        "mapping_reused": True, "is_owner": None, "answer_digests": {"debtors": "d" * 32, "companies": "c" * 32}}

SHAPES: dict[str, Any] = {
    "full": FULL,
    "no cache": None,
    "empty object": {},
    "records only": {"debtors": DEBTORS, "companies": COMPANIES},
    "no record keys": {"domain": "demo"},
    "null lists": {**FULL, "debtors": None, "companies": None},
    "a list that is an object": {**FULL, "debtors": {"id": 5}},
    "a list of scalars": {**FULL, "companies": [1, 2]},
    "a record without an id": {**FULL, "debtors": [{"name": "no id"}]},
    "a list as the cache": [FULL],
    "a scalar as the cache": "text",
    "a number as the cache": 7,
    "an empty list as the cache": [],
    "zero as the cache": 0,
    "an empty string as the cache": "",
    "false as the cache": False,
    "JSON null as the cache": "JSON null",
}


def _stored(cur: db.Cursor, label: str, cache: Any) -> int:
    cur.execute("""INSERT INTO tokens (label, level, username, token_ciphertext, fingerprint, state, next_check_at,
                                       probe_cache)
                   VALUES (%s, 'accountant', 'u@x.nl', 'c', %s, 'active', now(), %s::jsonb) RETURNING id""",
                (label, label, None if cache is None else "null" if cache == "JSON null" else json.dumps(cache)))
    return int(cur.fetchone()[0])


def _read(read: Any) -> Any:
    """What reading gives: the probe's plain data, or the error's text."""
    try:
        probe = read()
        return None if probe is None else probe.to_dict()
    except ValueError as exc:
        return f"ValueError: {exc}"


def test_every_stored_shape_reads_as_the_whole_reads(conn: db.Connection) -> None:
    with conn, conn.cursor() as cur:
        ids = {name: _stored(cur, name, cache) for name, cache in SHAPES.items()}
    with conn, conn.cursor() as cur:
        loaded = {token.id: token for token in load_tokens(cur, list(ids.values()))}
    assert set(loaded) == set(ids.values())  # no shape fails the load
    for name, cache in SHAPES.items():
        cache = None if cache == "JSON null" else cache  # psycopg2 reads a JSON null as None
        whole = TokenToCheck(ids[name], "u@x.nl", None, cache, "c")  # as the cache was read before: whole
        assert _read(loaded[ids[name]].previous_probe) == _read(whole.previous_probe), name


def test_the_records_come_as_text_and_counts_not_as_records(conn: db.Connection) -> None:
    with conn, conn.cursor() as cur:
        token_id = _stored(cur, "full", FULL)
        (token,) = load_tokens(cur, [token_id])
    assert token.probe_cache is not None
    assert "debtors" not in token.probe_cache
    assert "companies" not in token.probe_cache
    assert token.stored_records is not None
    debtors, companies, debtor_count, company_count = token.stored_records
    assert (json.loads(debtors or ""), json.loads(companies or "")) == (DEBTORS, COMPANIES)
    assert (debtor_count, company_count) == (2, 1)
    probe = token.previous_probe()
    assert isinstance(probe, Probe)
    assert "not read" in repr(probe.debtors)
    assert (len(probe.debtors), len(probe.companies)) == (2, 1)
    assert "not read" in repr(probe.debtors)  # counting read nothing
    assert probe.debtor_ids == {5, 6}
