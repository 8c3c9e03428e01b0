"""One company, two ids, in the check step: a REST probe's UUIDs turned into L1NDA's integer keys, then into the
same `Probe` records a SOAP probe gives, so that the apply step, reach diffs and link rules work unchanged.

For each REST debtor (first) and company of a probe (docs/rest-connections.md, "One company, two ids"):

- known and decided (`rest_entities.match` number, operator or new): its key as stored;
- never seen: `company_matching.match_debtor` / `match_company` over the candidates: only the SOAP companies (and
  their debtors) that the connection's customer's own links name (`rest_connections.customer_ref` ->
  `links.customer_ref`), as the current SOAP reach (`reach_companies` of `soap_token` rows with their
  `reach_debtors` number) shows them; stored with `rest_entities.create`: the SOAP id when matched, a negative key
  when unmatched or ambiguous. Another customer's company with the same numbers is never a candidate;
- known but still open (unmatched or ambiguous): decided again on every check of a connection that reaches it
  (the SOAP reach may have changed): a match now gives it the SOAP id (`set_match(..., match='number')`, which
  moves the REST reach rows under the old negative key); otherwise changed candidates are stored (`reopen`).

A SOAP id that another REST entity of the same kind already holds is never given twice: that match stays open
(ambiguous, with the candidates) for an operator. `_taken` is read before the writes, so two checks resolving at
once could both see the id free: the unique index on rest_entities (entity, key) refuses the second write
(`rest_entities.KeyTaken`, under a savepoint) and that entity is stored ambiguous instead.

The pure decision is `decide`; `resolve` does the I/O in the
caller's transaction (the one that stores the check, so a dry run writes nothing).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from l1nda_sync.engine.company_matching import (
    Match,
    MatchKind,
    RestCompany,
    RestDebtor,
    SoapCompany,
    SoapDebtor,
    match_company,
    match_debtor,
    number_key,
)
from l1nda_sync.nmbrs.records import Company, Debtor, Probe

if TYPE_CHECKING:
    from psycopg2.extensions import cursor as Cursor

    from l1nda_sync.nmbrs.rest.records import RestReach
    from l1nda_sync.registry.rest_entities import RestEntity, SeenEntity

ACTOR = "engine"  # matched_by of the engine's own matches
DECIDED = ("number", "operator", "new")
OPEN = ("unmatched", "ambiguous")
REST_PERIOD = "None"  # the REST probe names no wage-tax period


class Step(StrEnum):
    """What `resolve` does with one REST entity."""

    KEEP = "keep"  # its stored key stands (decided, or still open with the same candidates)
    CREATE = "create"  # first seen: store the decision
    PROMOTE = "promote"  # open until now, matched now: give it the SOAP id
    REOPEN = "reopen"  # still open, but its kind or candidates changed


@dataclass(frozen=True, slots=True)
class Decision:
    """`decide`'s answer: the step, the automatic match kind to store, the SOAP id (CREATE or PROMOTE with a
    'number' match) and the candidates."""

    step: Step
    match: str | None = None
    key: int | None = None
    candidates: tuple[int, ...] = ()


def decide(stored: RestEntity | None, match: Match, *, taken: Collection[int] = ()) -> Decision:
    """What to do with one REST entity: `stored` is its rest_entities row (None when never seen), `match` the
    matcher's verdict now, `taken` the SOAP ids other REST entities of its kind hold already. Pure."""
    if stored is not None and stored.match in DECIDED:
        return Decision(Step.KEEP)
    kind, key = match.kind.value, match.id
    if match.kind is MatchKind.NUMBER and key in taken:
        kind, key = MatchKind.AMBIGUOUS.value, None  # one SOAP id is one REST id: an operator decides
    candidates = tuple(sorted(set(match.candidates)))
    if stored is None:
        return Decision(Step.CREATE, kind, key if kind == MatchKind.NUMBER else None, candidates)
    if kind == MatchKind.NUMBER:
        return Decision(Step.PROMOTE, kind, key, candidates)
    if stored.match == kind and tuple(sorted(stored.candidates)) == candidates:
        return Decision(Step.KEEP)
    return Decision(Step.REOPEN, kind, None, candidates)


# -- the candidates -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Candidates:
    """What the registry knows to match a connection's entities against: SOAP reach and the customer's links."""

    customer_ref: str
    companies: tuple[SoapCompany, ...]
    debtors: tuple[SoapDebtor, ...]
    linked_companies: frozenset[int]
    linked_debtors: frozenset[int]


def load_candidates(cur: Cursor, token_id: int, reach: RestReach) -> Candidates:
    """The SOAP companies and debtors the connection's customer links (`links.customer_ref` =
    `rest_connections.customer_ref`), as the current SOAP reach shows them with the numbers `reach` names. Nothing
    outside the customer's own links is ever a candidate: another customer's company with the same numbers (every
    small customer has a company "1" under a debtor "1") is not this one, and a REST connection, preferred and
    environment-less, would take that customer's link (docs/rest-connections.md, "One company, two ids")."""
    cur.execute("SELECT customer_ref FROM rest_connections WHERE token_id = %s", (token_id,))
    row = cur.fetchone()
    customer = str(row[0]) if row is not None else ""
    cur.execute(
        """SELECT l.company_id, l.debtor_id FROM links l
           WHERE l.wanted AND upper(btrim(l.customer_ref)) = upper(btrim(%s))""",
        (customer,),
    )
    links = cur.fetchall()
    linked_companies = frozenset(int(c) for c, _ in links)
    cur.execute(
        """SELECT DISTINCT rc.debtor_id FROM reach_companies rc JOIN tokens t ON t.id = rc.token_id
           WHERE t.kind = 'soap_token' AND rc.company_id = ANY(%s) AND rc.debtor_id IS NOT NULL""",
        (sorted(linked_companies),),
    )
    linked_debtors = frozenset({int(r[0]) for r in cur.fetchall()} | {int(d) for _, d in links if d is not None})
    debtor_numbers = sorted({n for n in (number_key(d.number) for d in reach.debtors) if n is not None})
    cur.execute(
        """SELECT DISTINCT rc.company_id, rc.number, rd.number, rc.name
           FROM reach_companies rc JOIN tokens t ON t.id = rc.token_id AND t.kind = 'soap_token'
           JOIN reach_debtors rd ON rd.token_id = rc.token_id AND rd.debtor_id = rc.debtor_id
           WHERE rc.lost_at IS NULL AND t.removed_at IS NULL AND btrim(rd.number) = ANY(%s)
             AND rc.company_id = ANY(%s)""",
        (debtor_numbers, sorted(linked_companies)),
    )
    companies = tuple(SoapCompany(int(i), n, dn, name) for i, n, dn, name in cur.fetchall())
    cur.execute(
        """SELECT DISTINCT rd.debtor_id, rd.number, rd.name
           FROM reach_debtors rd JOIN tokens t ON t.id = rd.token_id AND t.kind = 'soap_token'
           WHERE rd.lost_at IS NULL AND t.removed_at IS NULL AND btrim(rd.number) = ANY(%s)
             AND rd.debtor_id = ANY(%s)""",
        (debtor_numbers, sorted(linked_debtors)),
    )
    debtors = tuple(SoapDebtor(int(i), n, name) for i, n, name in cur.fetchall())
    return Candidates(customer, companies, debtors, linked_companies, linked_debtors)


def load_candidates_many(cur: Cursor, wanted: Sequence[tuple[int, RestReach]]) -> dict[int, Candidates]:
    """`load_candidates` of many connections (token id, reach) with six statements for them all: each connection's
    candidates are the rows of the batch's reads that its own customer's links and debtor numbers select."""
    ids = sorted({token_id for token_id, _ in wanted})
    cur.execute("SELECT token_id, customer_ref, upper(btrim(customer_ref)) FROM rest_connections "
                "WHERE token_id = ANY(%s)", (ids,))
    customer = {int(t): (str(ref), str(key)) for t, ref, key in cur.fetchall()}
    keys = sorted({customer.get(t, ("", ""))[1] for t in ids})  # no row: customer "" (as `load_candidates`)
    cur.execute("""SELECT upper(btrim(l.customer_ref)), l.company_id, l.debtor_id FROM links l
                   WHERE l.wanted AND upper(btrim(l.customer_ref)) = ANY(%s)""", (keys,))
    links: dict[str, list[tuple[int, int | None]]] = {}
    for key, company, debtor in cur.fetchall():
        links.setdefault(str(key), []).append((int(company), None if debtor is None else int(debtor)))
    every_company = sorted({c for rows in links.values() for c, _ in rows})
    cur.execute(
        """SELECT DISTINCT rc.company_id, rc.debtor_id FROM reach_companies rc JOIN tokens t ON t.id = rc.token_id
           WHERE t.kind = 'soap_token' AND rc.company_id = ANY(%s) AND rc.debtor_id IS NOT NULL""",
        (every_company,),
    )
    debtors_of: dict[int, set[int]] = {}
    for company, debtor in cur.fetchall():
        debtors_of.setdefault(int(company), set()).add(int(debtor))
    scope: dict[int, tuple[str, frozenset[int], frozenset[int], frozenset[str]]] = {}
    for token_id, reach in wanted:
        ref, key = customer.get(token_id, ("", ""))
        rows = links.get(key, [])
        companies = frozenset(c for c, _ in rows)
        debtors = frozenset({d for c in companies for d in debtors_of.get(c, ())}
                            | {d for _, d in rows if d is not None})
        numbers = frozenset(n for n in (number_key(d.number) for d in reach.debtors) if n is not None)
        scope[token_id] = (ref, companies, debtors, numbers)
    every_number = sorted({n for _, _, _, numbers in scope.values() for n in numbers})
    cur.execute(
        """SELECT DISTINCT rc.company_id, rc.number, rd.number, rc.name, btrim(rd.number)
           FROM reach_companies rc JOIN tokens t ON t.id = rc.token_id AND t.kind = 'soap_token'
           JOIN reach_debtors rd ON rd.token_id = rc.token_id AND rd.debtor_id = rc.debtor_id
           WHERE rc.lost_at IS NULL AND t.removed_at IS NULL AND btrim(rd.number) = ANY(%s)
             AND rc.company_id = ANY(%s)""",
        (every_number, every_company),
    )
    company_rows = [(SoapCompany(int(i), n, dn, name), int(i), str(key)) for i, n, dn, name, key in cur.fetchall()]
    cur.execute(
        """SELECT DISTINCT rd.debtor_id, rd.number, rd.name, btrim(rd.number)
           FROM reach_debtors rd JOIN tokens t ON t.id = rd.token_id AND t.kind = 'soap_token'
           WHERE rd.lost_at IS NULL AND t.removed_at IS NULL AND btrim(rd.number) = ANY(%s)
             AND rd.debtor_id = ANY(%s)""",
        (every_number, sorted({d for _, _, debtors, _ in scope.values() for d in debtors})),
    )
    debtor_rows = [(SoapDebtor(int(i), n, name), int(i), str(key)) for i, n, name, key in cur.fetchall()]
    return {
        token_id: Candidates(
            ref,
            tuple(c for c, i, key in company_rows if i in companies and key in numbers),
            tuple(d for d, i, key in debtor_rows if i in debtors and key in numbers),
            companies, debtors)
        for token_id, (ref, companies, debtors, numbers) in scope.items()
    }


# -- resolution (I/O in the caller's transaction) -------------------------------------------------------------
def resolve(cur: Cursor, token_id: int, reach: RestReach, *, at: datetime) -> Probe:
    """The probe of a REST connection with L1NDA keys, every entity of `reach` stored in rest_entities. When every
    one is known and decided (a connection's usual check), the candidates are not even read."""
    from l1nda_sync.registry import rest_entities as store

    known = store.lookup(cur, _uuids(reach))
    store.mark_seen(cur, [_seen_of(e, reach) for e in known.values()])
    if len(known) == len(reach.debtors) + len(reach.companies) and all(e.match in DECIDED for e in known.values()):
        return build_probe(reach, {u: e.key for u, e in known.items()}, at=at)
    found = load_candidates(cur, token_id, reach)
    taken = _taken(cur)
    keys: dict[str, int] = {}
    for seen, verdict in _verdicts(reach, found):
        keys[seen.uuid] = _apply(cur, seen, known.get(seen.uuid), verdict, taken.setdefault(seen.entity, set()))
    return build_probe(reach, keys, at=at)


def _verdicts(reach: RestReach, found: Candidates) -> Iterator[tuple[SeenEntity, Match]]:
    """Each entity of `reach` as seen now, with the matcher's verdict over `found`: debtors first, then companies
    (a company is matched with its debtor's number)."""
    from l1nda_sync.registry.rest_entities import SeenEntity

    debtor_of = {d.uuid: d for d in reach.debtors}
    for d in reach.debtors:
        yield (SeenEntity(d.uuid, "debtor", found.customer_ref, d.number, d.name),
               match_debtor(RestDebtor(d.uuid, d.number, d.name), found.debtors, found.linked_debtors))
    for c in reach.companies:
        owner = debtor_of.get(c.debtor_uuid)
        debtor_number = owner.number if owner is not None else None
        yield (SeenEntity(c.uuid, "company", found.customer_ref, c.number, c.name, c.debtor_uuid, debtor_number),
               match_company(RestCompany(c.uuid, c.number, debtor_number, c.name), found.companies,
                             found.linked_companies))


def resolve_known(cur: Cursor, probes: Sequence[tuple[int, RestReach, datetime]]) -> dict[int, Probe]:
    """`resolve` for many connections at once (token id, reach, when it was seen), with a constant number of
    statements for them all: the probes of those whose every entity is known and either decided (a connection's
    usual check) or still open and kept as it is (its candidates unchanged), by token id. The others (an entity
    never seen, a decision to store) are absent, for `resolve`. Their entities are refreshed once each, in UUID
    order."""
    from l1nda_sync.registry import rest_entities as store

    known = store.lookup(cur, [u for _, reach, _ in probes for u in _uuids(reach)])
    settled: dict[int, Probe] = {}
    seen: dict[str, SeenEntity] = {}
    still_open: list[tuple[int, RestReach, datetime, dict[str, RestEntity]]] = []
    left: set[str] = set()  # the UUIDs of the connections left to `resolve`, which may write them

    def settle(token_id: int, reach: RestReach, at: datetime, entities: dict[str, RestEntity]) -> None:
        settled[token_id] = build_probe(reach, {u: e.key for u, e in entities.items()}, at=at)
        seen.update((e.uuid, _seen_of(e, reach)) for e in entities.values())

    for token_id, reach, at in probes:
        found = {u: known.get(u) for u in _uuids(reach)}
        entities = {u: e for u, e in found.items() if e is not None}
        if len(entities) < len(found):
            left.update(found)  # never seen: `resolve` stores it
            continue
        if all(e.match in DECIDED for e in entities.values()):
            settle(token_id, reach, at, entities)
        else:
            still_open.append((token_id, reach, at, entities))
    if still_open:  # decided again on every check: kept as they are unless their candidates changed
        candidates = load_candidates_many(cur, [(token_id, reach) for token_id, reach, _, _ in still_open])
        taken = _taken(cur)
        kept = []
        for item in still_open:
            if _all_kept(item[1], item[3], candidates[item[0]], taken):
                kept.append(item)
            else:
                left.update(_uuids(item[1]))
        for token_id, reach, at, entities in _apart_from(kept, left):
            settle(token_id, reach, at, entities)
    store.mark_seen(cur, [seen[u] for u in sorted(seen)])
    return settled


def _apart_from(kept: list[tuple[int, RestReach, datetime, dict[str, RestEntity]]], left: set[str]
                ) -> list[tuple[int, RestReach, datetime, dict[str, RestEntity]]]:
    """The kept connections that share no open entity with a connection left to `resolve`. `resolve` may store a
    new decision for an open entity (a promotion under another customer's links), which a connection reaching it
    too must then see, as it would one by one; a decided entity is never rewritten, so sharing one is safe. Each
    connection dropped here goes to `resolve` as well, so the UUIDs it reaches join `left` until nothing moves."""
    settled = list(kept)
    moved = True
    while moved:
        moved = False
        for item in list(settled):
            if any(e.match not in DECIDED and u in left for u, e in item[3].items()):
                settled.remove(item)
                left.update(_uuids(item[1]))
                moved = True
    return settled


def _all_kept(reach: RestReach, stored: Mapping[str, RestEntity], found: Candidates,
              taken: Mapping[str, set[int]]) -> bool:
    """Whether `resolve` would keep every entity of `reach` as stored (`decide` KEEP), writing nothing. The SOAP
    ids taken are read before any other connection of the batch writes: as they only grow, a keep here is a keep
    after those writes too, and anything else is left to `resolve`."""
    return all(decide(stored[seen.uuid], verdict, taken=taken.get(seen.entity, set())).step is Step.KEEP
               for seen, verdict in _verdicts(reach, found))


def _uuids(reach: RestReach) -> list[str]:
    return [*(d.uuid for d in reach.debtors), *(c.uuid for c in reach.companies)]


def _taken(cur: Cursor) -> dict[str, set[int]]:
    """SOAP ids held by REST entities, by kind, so that one SOAP id is never given to two UUIDs. An entity that
    asks holds none itself (only open ones are decided again)."""
    cur.execute("SELECT DISTINCT entity, key FROM rest_entities WHERE match IN ('number', 'operator')")
    taken: dict[str, set[int]] = {}
    for entity, key in cur.fetchall():
        taken.setdefault(str(entity), set()).add(int(key))
    return taken


def _apply(cur: Cursor, seen: SeenEntity, stored: RestEntity | None, verdict: Match, taken: set[int]) -> int:
    from l1nda_sync.registry import rest_entities as store

    decision = decide(stored, verdict, taken=taken)
    if decision.step is Step.KEEP and stored is not None:
        return stored.key
    if decision.step is Step.CREATE:
        assert decision.match is not None
        try:
            created = store.create(cur, seen, match=decision.match, key=decision.key,
                                   candidates=decision.candidates, actor=ACTOR)
        except store.KeyTaken as taken_now:  # a concurrent check gave that SOAP id to another UUID first
            taken.add(taken_now.key)
            created = store.create(cur, seen, match="ambiguous", candidates=decision.candidates, actor=ACTOR)
        if created.match == "number":
            taken.add(created.key)
        return created.key
    if decision.step is Step.PROMOTE:
        assert decision.key is not None
        try:
            change = store.set_match(cur, seen.uuid, company_id=decision.key, actor=ACTOR, match="number")
        except store.KeyTaken as taken_now:  # idem: it stays open, ambiguous, for an operator
            taken.add(taken_now.key)
            return store.reopen(cur, seen.uuid, match="ambiguous", candidates=decision.candidates).key
        taken.add(change.entity.key)
        return change.entity.key
    assert decision.match is not None
    return store.reopen(cur, seen.uuid, match=decision.match, candidates=decision.candidates).key


def _seen_of(entity: RestEntity, reach: RestReach) -> SeenEntity:
    """What this probe says of a known entity (to refresh its number, name and last_seen; its key stays)."""
    from l1nda_sync.registry.rest_entities import SeenEntity

    if entity.entity == "debtor":
        d = next(x for x in reach.debtors if x.uuid == entity.uuid)
        return SeenEntity(d.uuid, "debtor", entity.customer_ref, d.number, d.name)
    c = next(x for x in reach.companies if x.uuid == entity.uuid)
    owner = next((x for x in reach.debtors if x.uuid == c.debtor_uuid), None)
    return SeenEntity(c.uuid, "company", entity.customer_ref, c.number, c.name, c.debtor_uuid,
                      owner.number if owner is not None else None)


# -- the records ----------------------------------------------------------------------------------------------
def company_number(value: str | None) -> int:
    """A REST company number as the SOAP records hold it (an integer); 0 when it is not one."""
    text = number_key(value)
    return int(text) if text is not None and text.isdigit() and len(text) < 10 else 0


def build_probe(reach: RestReach, keys: Mapping[str, int], *, at: datetime) -> Probe:
    """The `Probe` a SOAP probe of the same reach would give, with L1NDA keys for the UUIDs. Pure."""
    debtors = tuple(sorted((Debtor(keys[d.uuid], d.number, d.name) for d in reach.debtors), key=lambda d: d.id))
    companies = tuple(sorted(
        (Company(keys[c.uuid], company_number(c.number), c.name, REST_PERIOD, None, keys.get(c.debtor_uuid))
         for c in reach.companies), key=lambda c: c.id))
    return Probe(environment=None, domain="", debtors=debtors, companies=companies, calls=reach.calls,
                 mapping_refreshed_at=at, mapping_reused=True, is_owner=None)


def same_reach(probe: Probe, previous: Probe | None) -> bool:
    """Nothing to write but the check itself: the same debtors and companies as the stored probe."""
    return previous is not None and probe.debtors == previous.debtors and probe.companies == previous.companies

