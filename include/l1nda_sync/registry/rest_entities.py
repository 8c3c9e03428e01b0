"""L1NDA's integer keys for REST debtors and companies (`rest_entities`, docs/rest-connections.md).

Reach, links and reach events keep integer keys; a REST debtor or company (a UUID) gets one here:
- matched ('number' by the engine, 'operator' by `companies match`): the SOAP id of the same debtor or company;
- 'unmatched' / 'ambiguous': a negative key (`-nextval('rest_unmatched_keys')`), kept in the reach but never
  linkable (links.company_id > 0), with the SOAP ids an operator may choose from in `candidates`;
- 'new' (an operator said it has no SOAP counterpart): a key from `rest_only_keys` (2,000,000,000 up).

The decision is the engine's (`engine/company_matching.py`); this module stores it. An operator's match changes
the key: the reach rows of REST connections under the old key (and their reach events and cached probes) are
rewritten in the same transaction. SOAP tokens' rows are never touched (a positive old key is also a SOAP company's id).
Functions take a cursor or connection and leave the transaction to the caller.
"""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from l1nda_sync.registry import validation as v
from l1nda_sync.registry.db import fetch_one, reading
from l1nda_sync.registry.errors import Conflict, InvalidInput, NotFound

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor

ENTITIES = ("debtor", "company")
MATCHED = ("number", "operator")
OPEN = ("unmatched", "ambiguous")
MATCHES = (*MATCHED, "new", *OPEN)
REST_ONLY_FROM = 2_000_000_000  # keys of 'new' entities; a SOAP id this high is refused, never merged

_KEY_INDEX = "rest_entities_key"  # UNIQUE (entity, key): one SOAP id is one REST id

_COLUMNS = ("uuid::text, entity, key, customer_ref, number, debtor_uuid::text, debtor_number, name, match, "
            "candidates, matched_by, matched_at, first_seen, last_seen")


class KeyTaken(Conflict):
    """Another REST entity of the same kind holds this key already (found by the unique index, so also when two
    checks resolve at once). The statement was rolled back to a savepoint: the caller's transaction goes on."""

    def __init__(self, entity: str, key: int, holder: str | None = None) -> None:
        holder = holder or f"another REST {entity}"
        super().__init__("--company", f"{entity} {key} is matched to {holder} already; one SOAP id is one REST id")
        self.entity = entity
        self.key = key


@contextmanager
def _key_guard(cur: Cursor, entity: str, key: int | None) -> Iterator[None]:
    """Run one write under a savepoint; a violation of the unique (entity, key) index rolls back to it and is
    `KeyTaken`, any other error propagates."""
    from psycopg2 import errors as pg_errors

    cur.execute("SAVEPOINT rest_entity_key")
    try:
        yield
    except pg_errors.UniqueViolation as exc:
        if exc.diag.constraint_name != _KEY_INDEX:
            raise
        cur.execute("ROLLBACK TO SAVEPOINT rest_entity_key")
        cur.execute("RELEASE SAVEPOINT rest_entity_key")
        raise KeyTaken(entity, key if key is not None else 0) from None
    cur.execute("RELEASE SAVEPOINT rest_entity_key")


@dataclass(frozen=True, slots=True)
class SeenEntity:
    """A REST debtor or company as a probe found it (UUIDs and numbers as Nmbrs gave them)."""

    uuid: str
    entity: str  # 'debtor' or 'company'
    customer_ref: str
    number: str | None
    name: str | None = None
    debtor_uuid: str | None = None  # a company's debtor
    debtor_number: str | None = None


@dataclass(frozen=True, slots=True)
class RestEntity:
    """A stored REST debtor or company with its L1NDA key and how that key was decided."""

    uuid: str
    entity: str
    key: int
    customer_ref: str
    number: str | None
    debtor_uuid: str | None
    debtor_number: str | None
    name: str | None
    match: str
    candidates: tuple[int, ...]
    matched_by: str | None
    matched_at: datetime | None
    first_seen: datetime
    last_seen: datetime

    @property
    def linkable(self) -> bool:
        return self.key > 0

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> RestEntity:
        values = list(row)
        values[9] = tuple(values[9] or ())
        return cls(*values)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A SOAP company an open REST company may be: what the SOAP reach says of it."""

    company_id: int
    number: int | None
    name: str | None
    debtor_id: int | None
    debtor_number: str | None


@dataclass(frozen=True, slots=True)
class OpenEntity:
    """An unmatched or ambiguous REST company (or debtor) with its candidates, for `companies unmatched`."""

    entity: RestEntity
    candidates: tuple[Candidate, ...]
    reached_by: tuple[int, ...]  # the live REST connections that reach it


@dataclass(frozen=True, slots=True)
class KeyChange:
    """An operator's match: the entity after it, its key before, and how many reach rows moved."""

    entity: RestEntity
    old_key: int
    reach_rows: int
    reach_events: int


# -- lookup and creation (the check step) --------------------------------------------------------------------
def lookup(cur: Cursor, uuids: Iterable[str]) -> dict[str, RestEntity]:
    """The stored entities of these UUIDs (lower-case text), by UUID; the ones never seen are absent."""
    wanted = sorted({str(u).lower() for u in uuids})
    if not wanted:
        return {}
    cur.execute(f"SELECT {_COLUMNS} FROM rest_entities WHERE uuid = ANY(%s::uuid[])", (wanted,))
    return {row[0]: RestEntity.from_row(row) for row in cur.fetchall()}


def get_entity(conn: Connection, uuid: str) -> RestEntity:
    with reading(conn) as cur:
        found = lookup(cur, [_uuid(uuid)]).get(_uuid(uuid))
    if found is None:
        raise NotFound("UUID", f"no REST company or debtor {uuid} is known; see `l1nda-sync companies unmatched`")
    return found


def create(cur: Cursor, seen: SeenEntity, *, match: str, key: int | None = None,
           candidates: Sequence[int] = (), actor: str | None = None) -> RestEntity:
    """Store the key of an entity seen for the first time: `key` (the SOAP id) for 'number' and 'operator';
    a negative key for 'unmatched' and 'ambiguous'; a rest-only key for 'new'. When another worker stored the
    same UUID first, its decision stands and is returned. `KeyTaken` when another entity of the kind holds `key`
    (also one stored by a concurrent check): nothing is written, the caller's transaction goes on."""
    if seen.entity not in ENTITIES or match not in MATCHES:
        raise ValueError(f"entity {seen.entity!r} / match {match!r} unknown")
    key_sql, key_arg = _key_sql(match, key)
    matched = match in (*MATCHED, "new")
    with _key_guard(cur, seen.entity, key):
        _insert(cur, seen, key_sql, key_arg, match, candidates, actor if matched else None, matched)
        row = cur.fetchone()
    if row is not None:
        return RestEntity.from_row(row)
    return lookup(cur, [seen.uuid])[_uuid(seen.uuid)]


def _insert(cur: Cursor, seen: SeenEntity, key_sql: str, key_arg: tuple[int, ...], match: str,
            candidates: Sequence[int], actor: str | None, matched: bool) -> None:
    cur.execute(
        f"""INSERT INTO rest_entities (uuid, entity, key, customer_ref, number, debtor_uuid, debtor_number, name,
                                       match, candidates, matched_by, matched_at)
            VALUES (%s, %s, {key_sql}, %s, %s, %s, %s, %s, %s, %s, %s, CASE WHEN %s THEN now() END)
            ON CONFLICT (uuid) DO NOTHING RETURNING {_COLUMNS}""",
        (_uuid(seen.uuid), seen.entity, *key_arg, seen.customer_ref, seen.number, _opt_uuid(seen.debtor_uuid),
         seen.debtor_number, seen.name, match, list(candidates), actor, matched),
    )


def _key_sql(match: str, key: int | None) -> tuple[str, tuple[int, ...]]:
    if match in OPEN:
        return "-nextval('rest_unmatched_keys')", ()
    if match == "new":
        return "nextval('rest_only_keys')", ()
    if key is None or not 0 < key < REST_ONLY_FROM:
        raise ValueError(f"a {match!r} match needs a SOAP id from 1 to {REST_ONLY_FROM - 1}, got {key!r}")
    return "%s", (key,)


def mark_seen(cur: Cursor, seen: Sequence[SeenEntity]) -> int:
    """Refresh what Nmbrs says of known entities (number, name, debtor, last_seen); keys stay. Returns how many
    were refreshed.

    Only the rows no other transaction holds are refreshed, locked in UUID order without waiting (SKIP LOCKED):
    check batches that reach the same entities refresh them at the same moment, and waiting on each other's rows
    in the order a join happens to visit them deadlocked two batches in the bench (PostgreSQL then aborts one
    after `deadlock_timeout`). A row skipped is being refreshed by another check of the same moment (or, should
    that one roll back, by the next check); a key or match is never written here."""
    from psycopg2.extras import execute_values

    canonical = [(_uuid(s.uuid), s) for s in seen]
    if not canonical:
        return 0
    cur.execute("""SELECT uuid::text FROM rest_entities WHERE uuid = ANY(%s::uuid[]) ORDER BY uuid
                   FOR UPDATE SKIP LOCKED""", (sorted({u for u, _ in canonical}),))
    free = {row[0] for row in cur.fetchall()}
    rows = [(u, s.number, s.name, _opt_uuid(s.debtor_uuid), s.debtor_number) for u, s in canonical if u in free]
    if not rows:
        return 0
    execute_values(
        cur,
        """UPDATE rest_entities AS e SET number = s.number, name = s.name,
               debtor_uuid = coalesce(s.debtor_uuid, e.debtor_uuid), debtor_number = coalesce(s.dnum, e.debtor_number),
               last_seen = now()
           FROM (VALUES %s) AS s(uuid, number, name, debtor_uuid, dnum) WHERE e.uuid = s.uuid""",
        rows, template="(%s::uuid, %s, %s, %s::uuid, %s)", page_size=1000,
    )
    return int(cur.rowcount)


def reopen(cur: Cursor, uuid: str, *, match: str, candidates: Sequence[int]) -> RestEntity:
    """An open entity's candidates changed (the engine decided again): keep its negative key, store the news."""
    if match not in OPEN:
        raise ValueError(f"reopen takes 'unmatched' or 'ambiguous', not {match!r}")
    cur.execute(f"""UPDATE rest_entities SET match = %s, candidates = %s WHERE uuid = %s AND match IN %s
                    RETURNING {_COLUMNS}""", (match, list(candidates), _uuid(uuid), OPEN))
    row = cur.fetchone()
    if row is None:
        raise NotFound("UUID", f"no open REST entity {uuid}")
    return RestEntity.from_row(row)


# -- an operator's decision ----------------------------------------------------------------------------------
def set_match(cur: Cursor, uuid: str, *, company_id: int | None = None, new: bool = False, actor: str,
              match: str = "operator", force: bool = False) -> KeyChange:
    """Give an entity its key for good: the SOAP id `company_id` (match 'operator', or 'number' when the engine
    calls it), or a rest-only key (`new`). The REST connections' reach rows and reach events under the old key
    move to the new one in the caller's transaction. Refuses a key another REST entity of the same kind has
    (`KeyTaken`, also when a concurrent check stored it after the look-up: the unique index decides). The SOAP id
    must be a candidate (`is_candidate`: the same debtor number, within the customer) unless `force`."""
    if (company_id is None) == (not new):
        raise InvalidInput("--company", "give either --company ID (the SOAP company it is) or --new, not both")
    cur.execute(f"SELECT {_COLUMNS} FROM rest_entities WHERE uuid = %s FOR UPDATE", (_uuid(uuid),))
    row = cur.fetchone()
    if row is None:
        raise NotFound("UUID", f"no REST company or debtor {uuid} is known; see `l1nda-sync companies unmatched`")
    current = RestEntity.from_row(row)
    if company_id is not None:
        key = _soap_key(cur, current, company_id, force=force or match != "operator")
        with _key_guard(cur, current.entity, key):
            cur.execute(f"""UPDATE rest_entities SET key = %s, match = %s, matched_by = %s, matched_at = now()
                            WHERE uuid = %s RETURNING {_COLUMNS}""", (key, match, actor, current.uuid))
            updated_row = fetch_one(cur)
    elif current.match == "new":
        raise Conflict("--new", f"{current.entity} {current.uuid} has its own key {current.key} already")
    else:
        cur.execute(f"""UPDATE rest_entities SET key = nextval('rest_only_keys'), match = 'new', matched_by = %s,
                            matched_at = now() WHERE uuid = %s RETURNING {_COLUMNS}""", (actor, current.uuid))
        updated_row = fetch_one(cur)
    updated = RestEntity.from_row(updated_row)
    rows, events = _rewrite_reach(cur, current.entity, current.key, updated.key)
    return KeyChange(updated, current.key, rows, events)


def _soap_key(cur: Cursor, current: RestEntity, company_id: int, *, force: bool = False) -> int:
    key = v.positive_id(company_id, "--company")
    if key >= REST_ONLY_FROM:
        raise InvalidInput("--company", f"{key} is in L1NDA's range of REST-only keys (from {REST_ONLY_FROM}); a SOAP "
                                        "id that high is never merged: use --new, or check the id")
    cur.execute("SELECT uuid::text FROM rest_entities WHERE entity = %s AND key = %s AND uuid <> %s",
                (current.entity, key, current.uuid))
    other = cur.fetchone()
    if other is not None:
        raise KeyTaken(current.entity, key, f"REST {current.entity} {other[0]}")
    if current.entity == "company" and key not in current.candidates and not _known_company(cur, key):
        raise InvalidInput("--company", f"no SOAP token reaches company {key} and no link names it; give the SOAP "
                                        "company id (see the candidates in `l1nda-sync companies unmatched`)")
    if not force and not is_candidate(cur, current, key):
        raise InvalidInput("--company", f"SOAP {current.entity} {key} is no candidate for REST {current.entity} "
                                        f"{current.uuid}: it is not under debtor number {current.debtor_number or '?'}"
                                        f" in customer {current.customer_ref}'s reach; check the id (see the "
                                        "candidates in `l1nda-sync companies unmatched`), or give --force if you "
                                        "are sure")
    return key


def is_candidate(cur: Cursor, entity: RestEntity, key: int) -> bool:
    """Whether SOAP id `key` may be `entity`: one of its stored candidates, or (a company) a SOAP company under the
    same debtor number that the customer's links name, or (a debtor) a SOAP debtor with the same number."""
    if key in entity.candidates:
        return True
    if entity.entity == "debtor":
        cur.execute("""SELECT EXISTS (SELECT 1 FROM reach_debtors rd JOIN tokens t ON t.id = rd.token_id
                                      WHERE t.kind = 'soap_token' AND rd.debtor_id = %s
                                        AND btrim(rd.number) = btrim(%s))""", (key, entity.number))
        return bool(fetch_one(cur)[0])
    cur.execute("""SELECT EXISTS (SELECT 1 FROM reach_companies rc JOIN tokens t ON t.id = rc.token_id
                                  JOIN reach_debtors rd ON rd.token_id = rc.token_id AND rd.debtor_id = rc.debtor_id
                                  JOIN links l ON l.company_id = rc.company_id AND l.wanted
                                   AND upper(btrim(l.customer_ref)) = upper(btrim(%s))
                                  WHERE t.kind = 'soap_token' AND rc.company_id = %s
                                    AND btrim(rd.number) = btrim(%s))""",
                (entity.customer_ref, key, entity.debtor_number))
    return bool(fetch_one(cur)[0])


def _known_company(cur: Cursor, company_id: int) -> bool:
    cur.execute("""SELECT EXISTS (SELECT 1 FROM reach_companies rc JOIN tokens t ON t.id = rc.token_id
                                  WHERE rc.company_id = %s AND t.kind = 'soap_token')
                       OR EXISTS (SELECT 1 FROM links WHERE company_id = %s)""", (company_id, company_id))
    return bool(fetch_one(cur)[0])


_REST_TOKENS = "SELECT id FROM tokens WHERE kind = 'rest_connection'"


def _rewrite_reach(cur: Cursor, entity: str, old: int, new: int) -> tuple[int, int]:
    """Move the REST connections' reach rows and reach events from key `old` to `new`."""
    if old == new:
        return 0, 0
    if entity == "company":
        cur.execute(f"""UPDATE reach_companies SET company_id = %s
                        WHERE company_id = %s AND token_id IN ({_REST_TOKENS})""", (new, old))
        rows = int(cur.rowcount)
    else:
        cur.execute(f"UPDATE reach_debtors SET debtor_id = %s WHERE debtor_id = %s AND token_id IN ({_REST_TOKENS})",
                    (new, old))
        rows = int(cur.rowcount)
        cur.execute(f"UPDATE reach_companies SET debtor_id = %s WHERE debtor_id = %s AND token_id IN ({_REST_TOKENS})",
                    (new, old))
        cur.execute(f"""UPDATE reach_events SET debtor_id = %s WHERE debtor_id = %s
                        AND token_id IN ({_REST_TOKENS})""", (new, old))
    cur.execute(f"""UPDATE reach_events SET entity_id = %s WHERE entity = %s AND entity_id = %s
                    AND token_id IN ({_REST_TOKENS})""", (new, entity, old))
    events = int(cur.rowcount)
    _rewrite_probe_caches(cur, entity, old, new)
    return rows, events


def _rewrite_probe_caches(cur: Cursor, entity: str, old: int, new: int) -> int:
    """Rewrite key `old` to `new` in the REST connections' cached probes (tokens.probe_cache), so that the next
    apply compares the new reach with the same keys (else it would record 'gained new' and 'lost old'). The
    records stay sorted by id, as `rest_resolution.build_probe` gives them."""
    import json

    field = "companies" if entity == "company" else "debtors"
    cur.execute("""SELECT id, probe_cache FROM tokens
                   WHERE kind = 'rest_connection' AND probe_cache IS NOT NULL
                     AND (jsonb_path_exists(probe_cache, '$.companies[*] ? (@.id == $k || @.debtor_id == $k)', %s)
                          OR jsonb_path_exists(probe_cache, '$.debtors[*] ? (@.id == $k)', %s))
                   ORDER BY id FOR UPDATE""", (json.dumps({"k": old}), json.dumps({"k": old})))
    changed = 0
    for token_id, cache in cur.fetchall():
        data = dict(cache)
        records = [dict(r) for r in data.get(field) or ()]
        for r in records:
            if r.get("id") == old:
                r["id"] = new
        data[field] = sorted(records, key=lambda r: int(r.get("id") or 0))
        if entity == "debtor":
            data["companies"] = [{**c, "debtor_id": new} if c.get("debtor_id") == old else c
                                 for c in data.get("companies") or ()]
        cur.execute("UPDATE tokens SET probe_cache = %s::jsonb WHERE id = %s", (json.dumps(data), token_id))
        changed += 1
    return changed


# -- what an operator must decide -----------------------------------------------------------------------------
def list_open(conn: Connection, *, customer_ref: str | None = None, entity: str = "company") -> list[OpenEntity]:
    """Unmatched and ambiguous REST entities, oldest first, each with its candidates as the SOAP reach shows them
    and the live REST connections that reach it."""
    with reading(conn) as cur:
        cur.execute(f"""SELECT {_COLUMNS} FROM rest_entities WHERE match IN %s AND entity = %s
                        AND (%s::text IS NULL OR customer_ref = %s) ORDER BY first_seen, uuid""",
                    (OPEN, entity, customer_ref, customer_ref))
        found = [RestEntity.from_row(r) for r in cur.fetchall()]
        return [OpenEntity(e, _candidates(cur, e.candidates), _reached_by(cur, e)) for e in found]


def _candidates(cur: Cursor, ids: Sequence[int]) -> tuple[Candidate, ...]:
    if not ids:
        return ()
    cur.execute(
        """SELECT DISTINCT ON (rc.company_id) rc.company_id, rc.number, rc.name, rc.debtor_id, rd.number
           FROM reach_companies rc JOIN tokens t ON t.id = rc.token_id AND t.kind = 'soap_token'
           LEFT JOIN reach_debtors rd ON rd.token_id = rc.token_id AND rd.debtor_id = rc.debtor_id
           WHERE rc.company_id = ANY(%s)
           ORDER BY rc.company_id, rc.lost_at IS NOT NULL, rc.last_seen DESC""",
        (list(ids),),
    )
    known = {row[0]: Candidate(*row) for row in cur.fetchall()}
    return tuple(known.get(i, Candidate(i, None, None, None, None)) for i in ids)


def _reached_by(cur: Cursor, entity: RestEntity) -> tuple[int, ...]:
    table, column = ("reach_companies", "company_id") if entity.entity == "company" else ("reach_debtors", "debtor_id")
    cur.execute(f"""SELECT r.token_id FROM {table} r JOIN tokens t ON t.id = r.token_id
                    WHERE r.{column} = %s AND r.lost_at IS NULL AND t.kind = 'rest_connection'
                      AND t.removed_at IS NULL ORDER BY 1""", (entity.key,))
    return tuple(int(r[0]) for r in cur.fetchall())


def _uuid(value: str) -> str:
    try:
        return str(uuid_module.UUID(str(value).strip()))
    except ValueError:
        raise InvalidInput("UUID", f"{str(value)[:40]!r} is not a UUID; give the REST id as `companies unmatched` "
                                   "shows it") from None


def _opt_uuid(value: str | None) -> str | None:
    return None if value is None else _uuid(value)
