"""One company, two ids: which SOAP company (or debtor) a company (or debtor) seen through REST is. Pure, no DB.

SOAP and REST name the same company with different ids (an integer, a UUID) and neither carries the other's.
The join is the numbers: a REST company is the SOAP company with the same debtor number and company number
(compared as strings after stripping surrounding whitespace) within the same customer; a REST debtor is the SOAP
debtor with the same debtor number. When several SOAP records share those numbers, the customer's links decide
(the one the customer links), then the exact name (ignoring case and spaces). Anything else is left to an
operator: `unmatched` when no candidate has the numbers, `ambiguous` (with every candidate's id) when the tie
stands. Nothing here ever guesses, and the candidates' order never decides anything.

The caller passes the candidates of one customer only: the SOAP companies (and debtors) that the customer's own
links name, never the whole SOAP reach. Numbers are only unique within a customer (every small customer has a
company "1" under a debtor "1"), so a candidate from another customer's reach would match the wrong company. The
result does not depend on how many times a candidate is listed (one company reached by several tokens) or in
which order.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum


class MatchKind(StrEnum):
    """How a REST record was matched (`rest_entities.match` for the automatic outcomes)."""

    NUMBER = "number"  # exactly one SOAP record with the same numbers (after the tie-breaks)
    UNMATCHED = "unmatched"  # no SOAP record has the numbers (or the REST record has none)
    AMBIGUOUS = "ambiguous"  # several have them and neither the links nor the name tell them apart


class DecidedBy(StrEnum):
    """What picked the one candidate of a `number` match."""

    NUMBERS = "numbers"  # the only candidate with the numbers
    LINKS = "links"  # the only one of them the customer links
    NAME = "name"  # the only one (of those) with the same name


@dataclass(frozen=True, slots=True)
class RestCompany:
    """A company as a REST connection sees it: its UUID, its number and its debtor's number (strings)."""

    uuid: str
    number: str | None
    debtor_number: str | None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class RestDebtor:
    """A debtor as a REST connection sees it."""

    uuid: str
    number: str | None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class SoapCompany:
    """A company in the customer's SOAP reach: its id, its number (an int in SOAP) and its debtor's number."""

    id: int
    number: int | str | None
    debtor_number: str | None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class SoapDebtor:
    """A debtor in the customer's SOAP reach."""

    id: int
    number: str | None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """The decision for one REST record: the SOAP id (only for `number`), and the ids that had its numbers."""

    kind: MatchKind
    id: int | None = None
    candidates: tuple[int, ...] = ()  # every SOAP id with the same numbers, ascending (for the operator)
    decided_by: DecidedBy | None = None

    @property
    def matched(self) -> bool:
        return self.kind is MatchKind.NUMBER


def number_key(value: int | str | None) -> str | None:
    """A number as compared: its string with surrounding whitespace removed; None when there is none."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def name_key(value: str | None) -> str | None:
    """A name as compared for a tie-break: without whitespace and case; None when there is none."""
    if value is None:
        return None
    text = "".join(value.split()).casefold()
    return text or None


def _only(ids: Collection[int]) -> int | None:
    return next(iter(ids)) if len(ids) == 1 else None


def _decide(equal: dict[int, str | None], name: str | None, customer_links: Collection[int]) -> Match:
    """Among `equal` (id -> name key of every candidate with the same numbers): one, or the tie-breaks."""
    ids = tuple(sorted(equal))
    if not ids:
        return Match(MatchKind.UNMATCHED)
    if (only := _only(ids)) is not None:
        return Match(MatchKind.NUMBER, only, ids, DecidedBy.NUMBERS)
    linked = [i for i in ids if i in customer_links]
    if (only := _only(linked)) is not None:
        return Match(MatchKind.NUMBER, only, ids, DecidedBy.LINKS)
    pool = linked or ids  # several linked: the name chooses among those only
    wanted = name_key(name)
    named = [i for i in pool if wanted is not None and equal[i] == wanted]
    if (only := _only(named)) is not None:
        return Match(MatchKind.NUMBER, only, ids, DecidedBy.NAME)
    return Match(MatchKind.AMBIGUOUS, None, ids)


def _equal_by_id(pairs: Iterable[tuple[int, bool, str | None]]) -> dict[int, str | None]:
    """id -> name key of the candidates whose numbers are equal. A candidate listed several times (reached by
    several tokens) counts once; should its listings disagree on the name, it has none to break a tie with."""
    out: dict[int, str | None] = {}
    for cid, equal, name in pairs:
        if not equal:
            continue
        if cid in out and out[cid] != name:
            out[cid] = None
        else:
            out.setdefault(cid, name)
    return out


def match_company(
    rest: RestCompany, candidates: Iterable[SoapCompany], customer_links: Collection[int] = ()
) -> Match:
    """The SOAP company that `rest` is, among one customer's SOAP companies (those its links name);
    `customer_links` holds the ids of the companies the customer has links for."""
    number, debtor = number_key(rest.number), number_key(rest.debtor_number)
    if number is None or debtor is None:
        return Match(MatchKind.UNMATCHED)
    equal = _equal_by_id(
        (c.id, number_key(c.number) == number and number_key(c.debtor_number) == debtor, name_key(c.name))
        for c in candidates
    )
    return _decide(equal, rest.name, customer_links)


def match_debtor(rest: RestDebtor, candidates: Iterable[SoapDebtor], customer_links: Collection[int] = ()) -> Match:
    """The SOAP debtor that `rest` is, among one customer's SOAP debtors (by debtor number); `customer_links`
    holds the ids of the debtors the customer's links are under."""
    number = number_key(rest.number)
    if number is None:
        return Match(MatchKind.UNMATCHED)
    equal = _equal_by_id((d.id, number_key(d.number) == number, name_key(d.name)) for d in candidates)
    return _decide(equal, rest.name, customer_links)
