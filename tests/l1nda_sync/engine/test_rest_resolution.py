"""REST ids to L1NDA keys, without a database: `rest_resolution.decide` (what to do with one REST entity) as a table
and as properties, `build_probe` (the SOAP-shaped records), and the REST branch of the check step
(`rest_checking.probe_connection`) with a fake client: outcomes, deployment faults, secrets never read."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l1nda_sync.engine.checking import TokenToCheck
from l1nda_sync.engine.company_matching import DecidedBy, Match, MatchKind
from l1nda_sync.engine.rest_checking import RestAppMissing, RestChecking, probe_connection
from l1nda_sync.engine.rest_resolution import Decision, Step, build_probe, company_number, decide, same_reach
from l1nda_sync.engine.token_state import Outcome
from l1nda_sync.masking import Secret
from l1nda_sync.nmbrs.errors import ConsentRevoked, NoSubscription, ScopeMissing, Throttled
from l1nda_sync.nmbrs.records import Probe
from l1nda_sync.nmbrs.rest.config import RestApp
from l1nda_sync.nmbrs.rest.grants import InMemoryGrantStore, StoredGrant
from l1nda_sync.nmbrs.rest.records import RestCompany, RestCredentials, RestDebtor, RestReach
from l1nda_sync.registry.errors import EncryptionKeyError
from l1nda_sync.registry.rest_entities import RestEntity

AT = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
D1, D2 = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"
C1, C2, C3 = ("aaaaaaaa-0000-4000-8000-00000000000" + str(i) for i in (1, 2, 3))


def stored(match: str, key: int, candidates: tuple[int, ...] = ()) -> RestEntity:
    return RestEntity(C1, "company", key, "CUST", "101", D1, "D001", "Anker", match, candidates, None, None, AT, AT)


EXACT = Match(MatchKind.NUMBER, 501, (501,), DecidedBy.NUMBERS)
BY_LINKS = Match(MatchKind.NUMBER, 502, (501, 502), DecidedBy.LINKS)
AMBIGUOUS = Match(MatchKind.AMBIGUOUS, None, (502, 501))
UNMATCHED = Match(MatchKind.UNMATCHED)


@pytest.mark.parametrize(("row", "match", "taken", "expected"), [
    # never seen: store the matcher's verdict
    (None, EXACT, (), Decision(Step.CREATE, "number", 501, (501,))),
    (None, BY_LINKS, (), Decision(Step.CREATE, "number", 502, (501, 502))),
    (None, AMBIGUOUS, (), Decision(Step.CREATE, "ambiguous", None, (501, 502))),
    (None, UNMATCHED, (), Decision(Step.CREATE, "unmatched", None, ())),
    # one SOAP id is one REST id: a match on an id another UUID holds waits for an operator
    (None, EXACT, (501,), Decision(Step.CREATE, "ambiguous", None, (501,))),
    # decided keys stand, whatever the matcher says now
    (stored("number", 501, (501,)), UNMATCHED, (), Decision(Step.KEEP)),
    (stored("operator", 777, (501, 777)), EXACT, (), Decision(Step.KEEP)),
    (stored("new", 2_000_000_001), EXACT, (), Decision(Step.KEEP)),
    # open ones are decided again
    (stored("unmatched", -3), EXACT, (), Decision(Step.PROMOTE, "number", 501, (501,))),
    (stored("ambiguous", -3, (501, 502)), BY_LINKS, (), Decision(Step.PROMOTE, "number", 502, (501, 502))),
    (stored("unmatched", -3), UNMATCHED, (), Decision(Step.KEEP)),
    (stored("ambiguous", -3, (501, 502)), AMBIGUOUS, (), Decision(Step.KEEP)),
    (stored("unmatched", -3), AMBIGUOUS, (), Decision(Step.REOPEN, "ambiguous", None, (501, 502))),
    (stored("ambiguous", -3, (501, 502)), UNMATCHED, (), Decision(Step.REOPEN, "unmatched", None, ())),
    (stored("ambiguous", -3, (501,)), EXACT, (501,), Decision(Step.KEEP)),
    (stored("unmatched", -3), EXACT, (501,), Decision(Step.REOPEN, "ambiguous", None, (501,))),
])
def test_decide(row: RestEntity | None, match: Match, taken: tuple[int, ...], expected: Decision) -> None:
    assert decide(row, match, taken=taken) == expected


ids = st.integers(min_value=1, max_value=60)
matches = st.one_of(
    st.just(UNMATCHED),
    st.lists(ids, min_size=2, max_size=4, unique=True).map(lambda c: Match(MatchKind.AMBIGUOUS, None, tuple(c))),
    st.lists(ids, min_size=1, max_size=4, unique=True).flatmap(
        lambda c: st.sampled_from(c).map(lambda i: Match(MatchKind.NUMBER, i, tuple(c), DecidedBy.NUMBERS))),
)
rows = st.one_of(
    st.none(),
    st.builds(stored, st.sampled_from(["number", "operator"]), ids),
    st.builds(stored, st.sampled_from(["unmatched", "ambiguous"]), st.integers(-50, -1),
              st.lists(ids, max_size=4, unique=True).map(tuple)),
)


@given(rows, matches, st.frozensets(ids))
def test_a_key_is_only_ever_an_untaken_candidate_and_a_decided_key_never_moves(
        row: RestEntity | None, match: Match, taken: frozenset[int]) -> None:
    d = decide(row, match, taken=taken)
    if row is not None and row.match in ("number", "operator", "new"):
        assert d.step is Step.KEEP
    if d.key is not None:
        assert d.step in (Step.CREATE, Step.PROMOTE)
        assert d.key in match.candidates
        assert d.key not in taken
        assert d.match == "number"
    else:
        assert d.match in (None, "unmatched", "ambiguous")
    assert list(d.candidates) == sorted(set(d.candidates))
    if row is None:
        assert d.step is Step.CREATE  # a UUID seen for the first time is always stored


@given(rows, matches, st.frozensets(ids))
def test_deciding_twice_changes_nothing_more(row: RestEntity | None, match: Match, taken: frozenset[int]) -> None:
    """After a decision is stored, the same verdict gives KEEP: a quiet check writes no entity."""
    d = decide(row, match, taken=taken)
    if d.step is Step.KEEP:
        return
    assert d.match is not None
    after = stored(d.match, d.key if d.key is not None else -1, d.candidates)
    again_taken = taken | ({d.key} if d.key is not None else set())
    assert decide(after, match, taken=again_taken).step is Step.KEEP


# -- build_probe ----------------------------------------------------------------------------------------------
REACH = RestReach(
    debtors=(RestDebtor(D1, "D001", "Anker"), RestDebtor(D2, "D002", "Zwaan")),
    companies=(RestCompany(C1, "101", "Anker B.V.", D1), RestCompany(C2, " 102 ", "Catering", D1),
               RestCompany(C3, "X-3", "Zwaan", D2)),
    user=None, calls=5,
)
KEYS = {D1: 2001, D2: -7, C1: 50101, C2: 50102, C3: -8}


def test_build_probe_gives_the_soap_records_under_l1nda_keys() -> None:
    probe = build_probe(REACH, KEYS, at=AT)
    assert [(d.id, d.number) for d in probe.debtors] == [(-7, "D002"), (2001, "D001")]
    assert [(c.id, c.number, c.debtor_id) for c in probe.companies] == [
        (-8, 0, -7), (50101, 101, 2001), (50102, 102, 2001)]
    assert probe.calls == 5
    assert probe.domain == ""  # the apply step keeps the token's domain
    assert Probe.from_dict(probe.to_dict()) == probe  # stored and read back as a SOAP probe is


@given(st.permutations(REACH.companies), st.permutations(REACH.debtors))
def test_the_order_nmbrs_lists_them_in_never_changes_the_probe(companies: list[RestCompany],
                                                               debtors: list[RestDebtor]) -> None:
    shuffled = RestReach(tuple(debtors), tuple(companies), None, 5)
    a, b = build_probe(REACH, KEYS, at=AT), build_probe(shuffled, KEYS, at=AT)
    assert same_reach(a, b)
    assert not same_reach(a, None)
    moved = build_probe(REACH, {**KEYS, C3: 50201}, at=AT)  # an operator matched it
    assert not same_reach(moved, a)


@pytest.mark.parametrize(("given_number", "expected"), [
    ("101", 101), (" 7 ", 7), ("007", 7), ("", 0), (None, 0), ("1a", 0), ("-3", 0), ("99999999999", 0)])
def test_company_number(given_number: str | None, expected: int) -> None:
    assert company_number(given_number) == expected


# -- the REST branch of the check step ------------------------------------------------------------------------
APP = RestApp("http://api.invalid", "http://id.invalid", "app", Secret("s"), Secret("k"), None,
              "http://127.0.0.1/cb", ("offline_access", "company.info.read"))
TOKEN = TokenToCheck(9, "hr@klant.example", None, None, None, "rest_connection", ("company.info.read",))


class FakeRest:
    """A REST client that answers (or raises) what it is given, after asking for the access token."""

    def __init__(self, answer: RestReach | BaseException) -> None:
        self.answer = answer
        self.seen: list[RestCredentials] = []

    def probe(self, connection: RestCredentials, /) -> RestReach:
        self.seen.append(connection)
        connection.access(False)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def checking(answer: RestReach | BaseException) -> tuple[RestChecking, FakeRest]:
    store = InMemoryGrantStore()
    store.put(9, StoredGrant(Secret("refresh"), Secret("access"), datetime(2027, 3, 1, 10, tzinfo=UTC), 0))
    fake = FakeRest(answer)
    return RestChecking(APP, fake, store, lambda: AT), fake


def probe(answer: RestReach | BaseException):  # type: ignore[no-untyped-def]
    rest, fake = checking(answer)
    return probe_connection(TOKEN, rest=rest, checked_at=AT, started=lambda: 3), fake


def test_a_valid_rest_probe_carries_its_reach_until_resolved() -> None:
    record, fake = probe(REACH)
    assert (record.outcome, record.calls, record.debtors, record.companies) == (Outcome.VALID, 5, 2, 3)
    assert record.rest_reach is REACH
    assert record.probe is None  # built only after the UUIDs are resolved
    assert fake.seen[0].connection_id == 9
    assert fake.seen[0].scopes == ("company.info.read",)


@pytest.mark.parametrize(("error", "outcome", "missing"), [
    (ConsentRevoked("withdrawn"), Outcome.CONSENT_REVOKED, None),
    (ScopeMissing("403/40303", scope="company.info.read"), Outcome.RIGHTS_MISSING, "company.info.read"),
    (NoSubscription("40304", code=40304), Outcome.NO_SUBSCRIPTION, None),
    (Throttled("42908", code=42908), Outcome.TRANSIENT, None),
    (RuntimeError("a bug"), Outcome.UNKNOWN, None),
])
def test_a_failed_rest_probe_is_the_clients_outcome(error: BaseException, outcome: Outcome,
                                                    missing: str | None) -> None:
    error_calls = 4
    if hasattr(error, "calls"):
        error.calls = error_calls
    record, _ = probe(error)
    assert (record.outcome, record.missing_operation) == (outcome, missing)
    assert record.calls == (error_calls if hasattr(error, "calls") else 0)
    assert record.rest_reach is None
    assert not record.undecryptable
    assert not record.no_rest_app


def test_keys_that_cannot_read_the_grant_and_a_missing_app_are_deployment_faults() -> None:
    record, _ = probe(EncryptionKeyError("no key reads it"))
    assert record.undecryptable
    missing = probe_connection(TOKEN, rest=None, checked_at=AT, started=lambda: 0)
    assert missing.no_rest_app
    message = str(RestAppMissing([12, 9]))
    assert "9, 12" in message
    for name in ("nmbrs_rest", "L1NDA_NMBRS_REST_CLIENT_ID", "L1NDA_NMBRS_REST_CLIENT_SECRET",
                 "L1NDA_NMBRS_REST_SUBSCRIPTION_KEY", "L1NDA_NMBRS_REST_REDIRECT_URI"):
        assert name in message


def test_the_dags_trigger_form_says_credential_ids_tokens_or_connections() -> None:
    source = (Path(__file__).resolve().parents[3] / "dags" / "nmbrs_token_sync.py").read_text()
    params = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.keyword) and n.arg == "params")
    assert isinstance(params.value, ast.Dict)
    keys = [k.value for k in params.value.keys if isinstance(k, ast.Constant)]
    param = params.value.values[keys.index("token_ids")]
    assert isinstance(param, ast.Call)
    texts = {k.arg: ast.literal_eval(k.value) for k in param.keywords if k.arg in ("title", "description")}
    assert texts["title"] == "Credential ids (tokens or connections)"
    assert "connections list" in texts["description"]
