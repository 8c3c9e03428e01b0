"""Which SOAP company a REST company is: table-driven cases and properties (never a guess, never by order)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l1nda_sync.engine.company_matching import (
    DecidedBy,
    Match,
    MatchKind,
    RestCompany,
    RestDebtor,
    SoapCompany,
    SoapDebtor,
    match_company,
    match_debtor,
    name_key,
    number_key,
)

REST = RestCompany("7f0c2f8e-0000-4000-8000-000000000001", "3", "D-100", "Bakkerij de Vries")


def soap(cid: int, number: int | str | None = 3, debtor: str | None = "D-100", name: str | None = "Other BV"
         ) -> SoapCompany:
    return SoapCompany(cid, number, debtor, name)


@pytest.mark.parametrize(
    ("rest", "candidates", "links", "expected"),
    [
        pytest.param(REST, [soap(11)], (), Match(MatchKind.NUMBER, 11, (11,), DecidedBy.NUMBERS), id="exact"),
        pytest.param(REST, [soap(11, number=" 3 "), soap(12, number=4)], (),
                     Match(MatchKind.NUMBER, 11, (11,), DecidedBy.NUMBERS), id="numbers-stripped"),
        pytest.param(REST, [soap(11, debtor=" D-100\t")], (),
                     Match(MatchKind.NUMBER, 11, (11,), DecidedBy.NUMBERS), id="debtor-number-stripped"),
        pytest.param(REST, [soap(11), soap(11)], (), Match(MatchKind.NUMBER, 11, (11,), DecidedBy.NUMBERS),
                     id="one-company-reached-by-two-tokens"),
        pytest.param(REST, [], (), Match(MatchKind.UNMATCHED), id="no-candidates"),
        pytest.param(REST, [soap(11, number=4)], (), Match(MatchKind.UNMATCHED), id="other-number"),
        pytest.param(REST, [soap(11, debtor="D-101")], (), Match(MatchKind.UNMATCHED), id="other-debtor"),
        pytest.param(REST, [soap(11, number="03")], (), Match(MatchKind.UNMATCHED), id="leading-zero-is-not-equal"),
        pytest.param(REST, [soap(11, number=4, name="Bakkerij de Vries")], (), Match(MatchKind.UNMATCHED),
                     id="name-alone-never-matches"),
        pytest.param(RestCompany("u", None, "D-100", "x"), [soap(11, number=None)], (),
                     Match(MatchKind.UNMATCHED), id="no-number-never-matches"),
        pytest.param(RestCompany("u", "3", "  ", "x"), [soap(11, debtor=" ")], (),
                     Match(MatchKind.UNMATCHED), id="blank-debtor-number-never-matches"),
        pytest.param(REST, [soap(11), soap(12)], (12,), Match(MatchKind.NUMBER, 12, (11, 12), DecidedBy.LINKS),
                     id="links-decide"),
        pytest.param(REST, [soap(11), soap(12, name="BAKKERIJ  de vries ")], (),
                     Match(MatchKind.NUMBER, 12, (11, 12), DecidedBy.NAME), id="name-decides-case-and-space"),
        pytest.param(REST, [soap(11, name="Bakkerij de Vries"), soap(12), soap(13, name="Bakkerij de Vries")],
                     (11, 12), Match(MatchKind.NUMBER, 11, (11, 12, 13), DecidedBy.NAME),
                     id="name-decides-among-the-linked"),
        pytest.param(REST, [soap(11), soap(12)], (), Match(MatchKind.AMBIGUOUS, None, (11, 12)), id="ambiguous"),
        pytest.param(REST, [soap(12), soap(11)], (11, 12), Match(MatchKind.AMBIGUOUS, None, (11, 12)),
                     id="both-linked-no-name"),
        pytest.param(REST, [soap(11, name="Bakkerij de Vries"), soap(12, name="bakkerij de vries")], (),
                     Match(MatchKind.AMBIGUOUS, None, (11, 12)), id="same-name-twice"),
        pytest.param(REST, [soap(11, name="Bakkerij de Vries"), soap(11, name="Renamed"), soap(12)], (),
                     Match(MatchKind.AMBIGUOUS, None, (11, 12)), id="disagreeing-names-break-no-tie"),
        pytest.param(RestCompany("u", "3", "D-100", None), [soap(11, name=None), soap(12, name=None)], (),
                     Match(MatchKind.AMBIGUOUS, None, (11, 12)), id="no-names"),
    ],
)
def test_match_company(rest: RestCompany, candidates: list[SoapCompany], links: tuple[int, ...],
                       expected: Match) -> None:
    assert match_company(rest, candidates, links) == expected


@pytest.mark.parametrize(
    ("rest", "candidates", "links", "expected"),
    [
        pytest.param(RestDebtor("u", "D-100", "A"), [SoapDebtor(5, "D-100", "B")], (),
                     Match(MatchKind.NUMBER, 5, (5,), DecidedBy.NUMBERS), id="exact"),
        pytest.param(RestDebtor("u", " 100 ", "A"), [SoapDebtor(5, "100")], (),
                     Match(MatchKind.NUMBER, 5, (5,), DecidedBy.NUMBERS), id="stripped"),
        pytest.param(RestDebtor("u", "D-100", "A"), [SoapDebtor(5, "D-101", "A")], (), Match(MatchKind.UNMATCHED),
                     id="other-number"),
        pytest.param(RestDebtor("u", None, "A"), [SoapDebtor(5, None, "A")], (), Match(MatchKind.UNMATCHED),
                     id="no-number"),
        pytest.param(RestDebtor("u", "1", "A"), [SoapDebtor(5, "1"), SoapDebtor(6, "1")], (6,),
                     Match(MatchKind.NUMBER, 6, (5, 6), DecidedBy.LINKS), id="links-decide"),
        pytest.param(RestDebtor("u", "1", "Acme"), [SoapDebtor(5, "1", "ACME"), SoapDebtor(6, "1", "Other")], (),
                     Match(MatchKind.NUMBER, 5, (5, 6), DecidedBy.NAME), id="name-decides"),
        pytest.param(RestDebtor("u", "1", "Acme"), [SoapDebtor(5, "1"), SoapDebtor(6, "1")], (),
                     Match(MatchKind.AMBIGUOUS, None, (5, 6)), id="ambiguous"),
    ],
)
def test_match_debtor(rest: RestDebtor, candidates: list[SoapDebtor], links: tuple[int, ...],
                      expected: Match) -> None:
    assert match_debtor(rest, candidates, links) == expected


def test_keys() -> None:
    assert number_key(7) == "7"
    assert number_key(" 7\n") == "7"
    assert number_key("") is None
    assert number_key(None) is None
    assert name_key("  Bakkerij  DE\tVries ") == "bakkerijdevries"
    assert name_key(" ") is None


# -- properties ------------------------------------------------------------------------------------------------
numbers = st.sampled_from(["1", "2", " 1", "1 ", "01", "10"])
debtor_numbers = st.sampled_from(["D1", "D2", " D1 ", None])
names = st.sampled_from(["Acme", "ACME ", "a cme", "Beta", None])
candidates = st.lists(
    st.builds(SoapCompany, st.integers(1, 12), st.one_of(numbers, st.integers(0, 3)), debtor_numbers, names),
    max_size=10,
)
rests = st.builds(RestCompany, st.just("u"), st.one_of(numbers, st.none()), debtor_numbers, names)
links = st.frozensets(st.integers(1, 12), max_size=6)


def _equal(rest: RestCompany, c: SoapCompany) -> bool:
    return (number_key(c.number), number_key(c.debtor_number)) == (number_key(rest.number),
                                                                     number_key(rest.debtor_number))


@settings(max_examples=400, deadline=None)
@given(rests, candidates, links)
def test_a_match_is_a_candidate_with_equal_numbers(rest: RestCompany, cands: list[SoapCompany],
                                                     linked: frozenset[int]) -> None:
    match = match_company(rest, cands, linked)
    equal_ids = tuple(sorted({c.id for c in cands if _equal(rest, c)}))
    if match.kind is MatchKind.NUMBER:
        assert match.id is not None
        assert any(c.id == match.id and _equal(rest, c) for c in cands)
        assert match.candidates == equal_ids
    elif match.kind is MatchKind.AMBIGUOUS:
        assert match.id is None
        assert len(match.candidates) >= 2
        assert match.candidates == equal_ids
    else:
        assert match.id is None
        assert not equal_ids or number_key(rest.number) is None or number_key(rest.debtor_number) is None


@settings(max_examples=400, deadline=None)
@given(rests, candidates, links, st.randoms(use_true_random=False))
def test_order_and_repetition_never_decide(rest: RestCompany, cands: list[SoapCompany], linked: frozenset[int],
                                            rnd: random.Random) -> None:
    expected = match_company(rest, cands, linked)
    shuffled = list(cands)
    rnd.shuffle(shuffled)
    assert match_company(rest, shuffled, linked) == expected
    assert match_company(rest, shuffled + shuffled, linked) == expected


@settings(max_examples=400, deadline=None)
@given(rests, candidates, links, st.lists(
    st.builds(SoapCompany, st.integers(13, 30), st.just("999"), st.just("D9"), names), max_size=4),
    st.frozensets(st.integers(13, 30)))
def test_an_unrelated_candidate_never_changes_the_decision(rest: RestCompany, cands: list[SoapCompany],
                                                           linked: frozenset[int], unrelated: list[SoapCompany],
                                                           more_links: frozenset[int]) -> None:
    """Candidates with other numbers (and links to them) change nothing: a unique match stays unique."""
    assert match_company(rest, cands + unrelated, linked | more_links) == match_company(rest, cands, linked)


@settings(max_examples=300, deadline=None)
@given(rests, candidates, links)
def test_an_ambiguity_is_never_resolved_by_adding_a_copy(rest: RestCompany, cands: list[SoapCompany],
                                                          linked: frozenset[int]) -> None:
    """An ambiguous match is ambiguous for a reason that no order or duplicate removes: add a twin of the
    first tied candidate under a new id (same numbers, same name, same link status) and it stays ambiguous."""
    match = match_company(rest, cands, linked)
    if match.kind is not MatchKind.AMBIGUOUS:
        return
    first = next(c for c in cands if c.id == match.candidates[0] and _equal(rest, c))
    # its name as the matcher sees it: listings that disagree on the name leave it none to break a tie with
    names = {name_key(c.name) for c in cands if c.id == first.id and _equal(rest, c)}
    twin = SoapCompany(99, first.number, first.debtor_number, first.name if len(names) == 1 else None)
    again = match_company(rest, [twin, *cands], linked | ({99} if first.id in linked else set()))
    assert again.kind is MatchKind.AMBIGUOUS
    assert again.candidates == tuple(sorted({*match.candidates, 99}))


@settings(max_examples=300, deadline=None)
@given(st.builds(RestDebtor, st.just("u"), st.one_of(numbers, st.none()), names),
       st.lists(st.builds(SoapDebtor, st.integers(1, 8), st.one_of(numbers, st.none()), names), max_size=8),
       st.frozensets(st.integers(1, 8), max_size=4))
def test_a_debtor_match_is_a_candidate_with_the_same_number(rest: RestDebtor, cands: list[SoapDebtor],
                                                              linked: frozenset[int]) -> None:
    match = match_debtor(rest, cands, linked)
    assert match == match_debtor(rest, list(reversed(cands)), linked)
    if match.kind is MatchKind.NUMBER:
        assert any(d.id == match.id and number_key(d.number) == number_key(rest.number) for d in cands)
