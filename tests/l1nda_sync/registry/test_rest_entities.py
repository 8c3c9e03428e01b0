"""L1NDA keys for REST debtors and companies: negative keys for open ones, rest-only keys, an operator's match
rewriting the REST reach under the old key (and never a SOAP token's rows)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from l1nda_sync.engine import rest_resolution
from l1nda_sync.nmbrs.rest.records import RestCompany, RestDebtor, RestReach
from l1nda_sync.registry import db, rest_entities
from l1nda_sync.registry.errors import Conflict, InvalidInput
from l1nda_sync.registry.rest_entities import SeenEntity

DEBTOR = str(uuid.uuid4())
AT = datetime(2027, 3, 1, 9, tzinfo=UTC)


@pytest.fixture
def conn(registry_url: str) -> Iterator[db.Connection]:
    c = db.connect(registry_url)
    yield c
    c.close()


def company(number: str = "101", name: str = "Anker B.V.") -> SeenEntity:
    return SeenEntity(str(uuid.uuid4()), "company", "CUST", number, name, DEBTOR, "D001")


def token(cur: db.Cursor, kind: str, label: str) -> int:
    cur.execute("""INSERT INTO tokens (kind, label, level, username, token_ciphertext, fingerprint)
                   VALUES (%s, %s, 'debtor', 'u@x.nl', CASE WHEN %s = 'soap_token' THEN 'c' END, %s) RETURNING id""",
                (kind, label, kind, label))
    return int(cur.fetchone()[0])


@pytest.fixture
def world(conn: db.Connection) -> dict[str, int]:
    """A SOAP token reaching companies 50101 and 50102 of debtor 2001 (D001), and a REST connection."""
    with db.transaction(conn) as cur:
        soap, rest = token(cur, "soap_token", "soap"), token(cur, "rest_connection", "rest")
        cur.execute("INSERT INTO rest_connections (token_id, customer_ref, user_id, user_email) "
                    "VALUES (%s, 'CUST', %s, 'u@x.nl')", (rest, str(uuid.uuid4())))
        cur.execute("INSERT INTO reach_debtors (token_id, debtor_id, number) VALUES (%s, 2001, 'D001')", (soap,))
        cur.execute("""INSERT INTO reach_companies (token_id, company_id, debtor_id, number, name)
                       VALUES (%s, 50101, 2001, 101, 'Anker B.V.'), (%s, 50102, 2001, 101, 'Anker Catering')""",
                    (soap, soap))
    return {"soap": soap, "rest": rest}


def test_keys_by_decision(conn: db.Connection) -> None:
    with db.transaction(conn) as cur:
        matched = rest_entities.create(cur, company(), match="number", key=50101)
        open_one = rest_entities.create(cur, company(), match="unmatched")
        ambiguous = rest_entities.create(cur, company(), match="ambiguous", candidates=[50101, 50102])
        own = rest_entities.create(cur, company(), match="new", actor="op")
        again = rest_entities.create(cur, SeenEntity(open_one.uuid, "company", "CUST", "9", None, DEBTOR),
                                     match="number", key=7)  # another worker stored it first: its decision stands
        found = rest_entities.lookup(cur, [matched.uuid.upper(), own.uuid, str(uuid.uuid4())])
    assert matched.key == 50101
    assert matched.linkable
    assert matched.matched_at is not None
    assert open_one.key < 0
    assert ambiguous.key < 0
    assert not ambiguous.linkable
    assert ambiguous.candidates == (50101, 50102)
    assert own.key >= 2_000_000_000
    assert again == open_one
    assert set(found) == {matched.uuid, own.uuid}
    with pytest.raises(ValueError, match="SOAP id"), db.transaction(conn) as cur:
        rest_entities.create(cur, company(), match="number", key=2_000_000_001)


def test_an_operator_match_moves_the_rest_reach_and_leaves_soap_rows_alone(conn: db.Connection,
                                                                          world: dict[str, int]) -> None:
    seen = company()
    with db.transaction(conn) as cur:
        open_one = rest_entities.create(cur, seen, match="ambiguous", candidates=[50101, 50102])
        cur.execute("INSERT INTO reach_companies (token_id, company_id, number) VALUES (%s, %s, 101)",
                    (world["rest"], open_one.key))
        cur.execute("INSERT INTO reach_events (token_id, change, entity, entity_id) VALUES (%s, 'gained', "
                    "'company', %s)", (world["rest"], open_one.key))
    listed = rest_entities.list_open(conn)
    assert [o.entity.uuid for o in listed] == [open_one.uuid]
    assert [(c.company_id, c.number, c.debtor_number) for c in listed[0].candidates] == [
        (50101, 101, "D001"), (50102, 101, "D001")]
    assert listed[0].reached_by == (world["rest"],)
    with db.transaction(conn) as cur:
        change = rest_entities.set_match(cur, open_one.uuid, company_id=50102, actor="cli:op")
    assert (change.old_key, change.entity.key, change.entity.match, change.entity.matched_by) == (
        open_one.key, 50102, "operator", "cli:op")
    assert (change.reach_rows, change.reach_events) == (1, 1)
    with db.reading(conn) as cur:
        cur.execute("SELECT token_id, company_id FROM reach_companies ORDER BY token_id, company_id")
        assert cur.fetchall() == [(world["soap"], 50101), (world["soap"], 50102), (world["rest"], 50102)]
        cur.execute("SELECT entity_id FROM reach_events")
        assert cur.fetchall() == [(50102,)]
    assert rest_entities.list_open(conn) == []


def test_a_match_is_refused_when_the_key_is_taken_or_unknown_or_too_high(conn: db.Connection,
                                                                        world: dict[str, int]) -> None:
    with db.transaction(conn) as cur:
        rest_entities.create(cur, company(), match="number", key=50101)
        open_one = rest_entities.create(cur, company(), match="unmatched")
    for company_id, error, field in ((50101, Conflict, "--company"), (777, InvalidInput, "--company"),
                                     (2_000_000_005, InvalidInput, "--company")):
        with pytest.raises(error) as refused, db.transaction(conn) as cur:
            rest_entities.set_match(cur, open_one.uuid, company_id=company_id, actor="op")
        assert refused.value.field == field
    with db.transaction(conn) as cur:
        own = rest_entities.set_match(cur, open_one.uuid, new=True, actor="op")
    assert own.entity.key >= 2_000_000_000
    assert own.entity.match == "new"
    with pytest.raises(InvalidInput, match="not a UUID"), db.transaction(conn) as cur:
        rest_entities.set_match(cur, "nope", new=True, actor="op")


def test_a_debtor_match_rewrites_the_rest_debtor_rows_and_the_companies_debtor(conn: db.Connection,
                                                                             world: dict[str, int]) -> None:
    with db.transaction(conn) as cur:
        debtor = rest_entities.create(cur, SeenEntity(DEBTOR, "debtor", "CUST", "D001", "Anker"), match="unmatched")
        cur.execute("INSERT INTO reach_debtors (token_id, debtor_id, number) VALUES (%s, %s, 'D001')",
                    (world["rest"], debtor.key))
        cur.execute("INSERT INTO reach_companies (token_id, company_id, debtor_id) VALUES (%s, -99, %s)",
                    (world["rest"], debtor.key))
        rest_entities.set_match(cur, DEBTOR, company_id=2001, actor="op")
        cur.execute("SELECT token_id, debtor_id FROM reach_debtors ORDER BY token_id")
        assert cur.fetchall() == [(world["soap"], 2001), (world["rest"], 2001)]
        cur.execute("SELECT debtor_id FROM reach_companies WHERE token_id = %s", (world["rest"],))
        assert cur.fetchall() == [(2001,)]


# -- one SOAP id is one REST id, also when two checks resolve at once --------------------------------------------
def test_the_unique_index_refuses_a_second_uuid_on_one_key_and_the_transaction_goes_on(conn: db.Connection) -> None:
    with db.transaction(conn) as cur:
        first = rest_entities.create(cur, company(), match="number", key=50101)
        with pytest.raises(rest_entities.KeyTaken):
            rest_entities.create(cur, company(), match="number", key=50101)
        open_one = rest_entities.create(cur, company(), match="unmatched")  # the transaction is still usable
    with db.transaction(conn) as cur:
        found = rest_entities.lookup(cur, [first.uuid, open_one.uuid])
        cur.execute("SELECT count(*) FROM rest_entities WHERE entity = 'company' AND key = 50101")
        assert cur.fetchone()[0] == 1
    assert found[first.uuid].key == 50101
    assert found[open_one.uuid].key < 0


def reach_of_anker() -> RestReach:
    debtor = str(uuid.uuid4())
    return RestReach((RestDebtor(debtor, "D001", "Anker"),),
                     (RestCompany(str(uuid.uuid4()), "101", "Anker B.V.", debtor),), None, 2)


def test_a_check_that_read_the_soap_id_as_free_before_another_check_took_it_stores_it_ambiguous(
        conn: db.Connection, world: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Two checks resolve at once: both read `_taken` before either wrote (simulated: the second's read is stale).
    The unique index refuses the second UUID on 50101; it is stored ambiguous, and the check goes on."""
    with db.transaction(conn) as cur:
        cur.execute("INSERT INTO links (customer_ref, company_id, state) VALUES ('CUST', 50101, 'pending')")
        first = rest_resolution.resolve(cur, world["rest"], reach_of_anker(), at=AT)
    monkeypatch.setattr(rest_resolution, "_taken", lambda cur: {})
    with db.transaction(conn) as cur:
        second = rest_resolution.resolve(cur, world["rest"], reach_of_anker(), at=AT)
        cur.execute("SELECT match, count(*) FROM rest_entities WHERE entity = 'company' GROUP BY 1 ORDER BY 1")
        matches = cur.fetchall()
    assert [c.id for c in first.companies] == [50101]
    assert second.companies[0].id < 0
    assert matches == [("ambiguous", 1), ("number", 1)]


def test_a_promotion_onto_a_key_taken_meanwhile_stays_open(conn: db.Connection, world: dict[str, int],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    reach = reach_of_anker()
    with db.transaction(conn) as cur:
        waiting = rest_resolution.resolve(cur, world["rest"], reach, at=AT)  # no link yet: unmatched
        cur.execute("INSERT INTO links (customer_ref, company_id, state) VALUES ('CUST', 50101, 'pending')")
        rest_entities.create(cur, company(), match="operator", key=50101, actor="op")
    assert waiting.companies[0].id < 0
    monkeypatch.setattr(rest_resolution, "_taken", lambda cur: {})
    with db.transaction(conn) as cur:
        again = rest_resolution.resolve(cur, world["rest"], reach, at=AT)
        stored = rest_entities.lookup(cur, [reach.companies[0].uuid])[reach.companies[0].uuid]
    assert again.companies[0].id == waiting.companies[0].id
    assert (stored.match, stored.candidates) == ("ambiguous", (50101,))


def test_a_match_rewrites_the_connections_cached_probe_so_the_next_apply_sees_no_change(
        conn: db.Connection, world: dict[str, int]) -> None:
    """The cached probe (tokens.probe_cache) is what the next check is compared with: left with the old negative
    keys, an unchanged reach would be recorded as 'gained 50102' and 'lost -N'."""
    from l1nda_sync.nmbrs.records import Probe

    reach = reach_of_anker()
    debtor_uuid, company_uuid = reach.debtors[0].uuid, reach.companies[0].uuid
    with db.transaction(conn) as cur:
        debtor = rest_entities.create(cur, SeenEntity(debtor_uuid, "debtor", "CUST", "D001", "Anker"),
                                      match="unmatched")
        company_row = rest_entities.create(cur, SeenEntity(company_uuid, "company", "CUST", "101", "Anker B.V.",
                                                           debtor_uuid, "D001"), match="ambiguous",
                                           candidates=[50101, 50102])
        before = rest_resolution.build_probe(reach, {debtor_uuid: debtor.key, company_uuid: company_row.key}, at=AT)
        cur.execute("UPDATE tokens SET probe_cache = %s::jsonb WHERE id = %s",
                    (json.dumps(before.to_dict()), world["rest"]))
        rest_entities.set_match(cur, company_uuid, company_id=50102, actor="op")
        rest_entities.set_match(cur, debtor_uuid, company_id=2001, actor="op")
        cur.execute("SELECT probe_cache FROM tokens WHERE id = %s", (world["rest"],))
        cached = Probe.from_dict(cur.fetchone()[0])
        cur.execute("SELECT probe_cache FROM tokens WHERE id = %s", (world["soap"],))
        soap_cache = cur.fetchone()[0]
    now = rest_resolution.build_probe(reach, {debtor_uuid: 2001, company_uuid: 50102}, at=AT)
    assert [(c.id, c.debtor_id) for c in cached.companies] == [(50102, 2001)]
    assert [d.id for d in cached.debtors] == [2001]
    assert rest_resolution.same_reach(now, cached), "no phantom 'gained 50102' / 'lost -N' at the next apply"
    assert soap_cache is None
