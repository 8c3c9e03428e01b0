"""Link choice: stay, fail over, activate, suspend with a reason; and the invariants over random worlds."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l1nda_sync.engine.breaker import Evidence, judge, judge_by_kind
from l1nda_sync.engine.link_rules import (
    KEEPS_LINKS,
    LinkState,
    LinkView,
    Reason,
    TokenView,
    apply_link_changes,
    reconcile_links,
)
from l1nda_sync.engine.token_state import CredentialKind, Outcome, TokenState

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
ACC = TokenView(1, "accountant", TokenState.ACTIVE, "acme", NOW)
DEB = TokenView(2, "debtor", TokenState.ACTIVE, "acme", NOW - timedelta(hours=2))
ACC2 = TokenView(3, "accountant", TokenState.ACTIVE, "acme", NOW - timedelta(hours=1))


def tokens(*ts: TokenView) -> dict[int, TokenView]:
    return {t.id: t for t in ts}


def one(change_list):
    assert len(change_list) == 1, change_list
    return change_list[0]


def test_pending_link_activates_with_the_preferred_token() -> None:
    link = LinkView(7, 100, LinkState.PENDING)
    change = one(reconcile_links([link], tokens(ACC, DEB, ACC2), {100: [1, 2, 3]}))
    assert (change.to_state, change.to_token, change.reason) == (LinkState.ACTIVE, 2, Reason.REACHED)


def test_most_recently_validated_wins_between_equal_levels() -> None:
    change = one(reconcile_links([LinkView(7, 100, LinkState.PENDING)], tokens(ACC, ACC2), {100: [3, 1]}))
    assert change.to_token == 1


def test_active_link_stays_with_its_token_even_when_a_preferred_one_appears() -> None:
    link = LinkView(7, 100, LinkState.ACTIVE, token_id=1)
    assert reconcile_links([link], tokens(ACC, DEB), {100: [1, 2]}) == []


def test_fails_over_when_serving_token_is_revoked() -> None:
    revoked = TokenView(1, "accountant", TokenState.REVOKED, "acme", NOW)
    link = LinkView(7, 100, LinkState.ACTIVE, token_id=1)
    change = one(reconcile_links([link], tokens(revoked, ACC2), {100: [1, 3]}))
    assert (change.to_state, change.from_token, change.to_token, change.reason) == (
        LinkState.ACTIVE, 1, 3, Reason.FAILOVER)


@pytest.mark.parametrize(
    ("serving_state", "lost_reason", "reason"),
    [
        (TokenState.REVOKED, None, Reason.REVOKED),
        (TokenState.RIGHTS_MISSING, None, Reason.RIGHTS_MISSING),
        (TokenState.NO_SUBSCRIPTION, None, Reason.NO_SUBSCRIPTION),
        (TokenState.DISABLED, None, Reason.TOKEN_DISABLED),
        (TokenState.ACTIVE, "tag_or_filter", "tag_or_filter"),
        (TokenState.ACTIVE, "company_ended", "company_ended"),
    ],
)
def test_suspends_with_the_reason(serving_state: TokenState, lost_reason: str | None, reason: str) -> None:
    serving = TokenView(1, "accountant", serving_state, "acme", NOW)
    reach = {100: [1]} if serving_state is not TokenState.ACTIVE else {}
    link = LinkView(7, 100, LinkState.ACTIVE, token_id=1)
    lost = {(1, 100): lost_reason} if lost_reason else {}
    change = one(reconcile_links([link], tokens(serving), reach, lost_reasons=lost))
    assert (change.to_state, change.reason) == (LinkState.SUSPENDED, reason)


@pytest.mark.parametrize("state", [TokenState.INVALID, TokenState.UNREACHABLE])
def test_suspected_token_keeps_its_links(state: TokenState) -> None:
    suspect = TokenView(1, "accountant", state, "acme", NOW)
    link = LinkView(7, 100, LinkState.ACTIVE, token_id=1)
    assert reconcile_links([link], tokens(suspect, ACC2), {100: [1, 3]}) == []


def test_breaker_open_suspends_nothing_and_environment_must_match() -> None:
    revoked = TokenView(1, "accountant", TokenState.REVOKED, "acme", NOW)
    link = LinkView(7, 100, LinkState.ACTIVE, token_id=1)
    assert reconcile_links([link], tokens(revoked), {100: [1]}, breaker_open=True) == []
    other_env = TokenView(4, "debtor", TokenState.ACTIVE, "globex", NOW)
    pending = LinkView(8, 100, LinkState.PENDING, environment="acme")
    assert reconcile_links([pending], tokens(other_env), {100: [4]}) == []


def test_suspended_link_comes_back_when_reached_again() -> None:
    link = LinkView(7, 100, LinkState.SUSPENDED, token_id=1, reason="revoked")
    change = one(reconcile_links([link], tokens(ACC), {100: [1]}))
    assert (change.to_state, change.to_token) == (LinkState.ACTIVE, 1)


def test_cancelled_links_are_left_alone() -> None:
    assert reconcile_links([LinkView(7, 100, LinkState.CANCELLED)], tokens(ACC), {100: [1]}) == []


@pytest.mark.parametrize(
    ("outcomes", "tripped"),
    [
        ([Outcome.TRANSIENT] * 3 + [Outcome.VALID] * 1, True),  # three of four: more than half, at any size
        ([Outcome.TRANSIENT] * 2 + [Outcome.VALID] * 2, False),  # exactly half is not more than half
        ([Outcome.TRANSIENT] * 3, True),  # fewer than 5 checked, all failing: too few to blame customers
        ([Outcome.TRANSIENT] * 3 + [Outcome.VALID] * 3, False),  # exactly half is not more than half
        ([Outcome.TRANSIENT] * 2 + [Outcome.INVALID] * 2 + [Outcome.VALID] * 3, True),
        ([Outcome.RIGHTS_MISSING] * 6, True),  # every token refused the same operation: provider-wide
        ([Outcome.RIGHTS_MISSING] * 2 + [Outcome.VALID] * 4, False),  # two customers' own settings
    ],
)
def test_breaker(outcomes: list[Outcome], tripped: bool) -> None:
    assert judge(outcomes).tripped is tripped


states = st.sampled_from(list(TokenState))
token_views = st.builds(
    TokenView, id=st.integers(1, 6), level=st.sampled_from(["debtor", "accountant"]), state=states,
    environment=st.sampled_from([None, "acme"]), last_valid_at=st.sampled_from([None, NOW, NOW - timedelta(1)]))
link_views = st.builds(
    LinkView, id=st.integers(1, 1000), company_id=st.integers(1, 8),
    state=st.sampled_from(list(LinkState)), token_id=st.one_of(st.none(), st.integers(1, 6)),
    environment=st.sampled_from([None, "acme"]))


@given(st.lists(token_views, max_size=6, unique_by=lambda t: t.id),
       st.lists(link_views, max_size=12, unique_by=lambda link: link.id),
       st.dictionaries(st.integers(1, 8), st.sets(st.integers(1, 6)), max_size=8),
       st.booleans())
def test_no_link_active_without_a_good_token_that_reaches_it(token_list, links, reach, breaker_open) -> None:
    toks = tokens(*token_list)
    changes = reconcile_links(links, toks, reach, breaker_open=breaker_open)
    assert len({c.link_id for c in changes}) == len(changes), "one change per link at most"
    after = apply_link_changes(links, changes)
    before = {link.id: link for link in links}
    for link in after:
        old = before[link.id]
        if breaker_open:
            assert not (old.state is LinkState.ACTIVE and link.state is LinkState.SUSPENDED)
        if link.state is not LinkState.ACTIVE or (breaker_open and old == link):
            continue
        # Every active link is served by a token that reaches its company and is not known to be bad ...
        token = toks.get(link.token_id)
        assert token is not None
        assert token.state in KEEPS_LINKS
        assert link.token_id in reach.get(link.company_id, set())
        # ... and a link that just became active or changed token went to a token that answered.
        if old.state is not LinkState.ACTIVE or old.token_id != link.token_id:
            assert token.state is TokenState.ACTIVE
    # Reconciling the reconciled world changes nothing more (convergence).
    assert reconcile_links(after, toks, reach, breaker_open=breaker_open) == []


def test_a_token_with_a_suspected_reach_drop_keeps_its_links_but_takes_none() -> None:
    suspect = TokenView(1, "debtor", TokenState.ACTIVE, drop_suspected=True)
    links = [LinkView(7, 100, LinkState.ACTIVE, 1), LinkView(8, 200, LinkState.SUSPENDED, 1),
             LinkView(9, 300, LinkState.PENDING)]
    changes = reconcile_links(links, {1: suspect}, {100: [1], 200: [1], 300: [1]})
    assert changes == [], "its stored reach may be stale until the drop is confirmed or cleared"
    healthy = TokenView(1, "debtor", TokenState.ACTIVE)
    assert {c.link_id for c in reconcile_links(links, {1: healthy}, {100: [1], 200: [1], 300: [1]})} == {8, 9}


# -- REST connections beside SOAP tokens ---------------------------------------------------------------------------
REST = TokenView(5, "debtor", TokenState.ACTIVE, None, NOW - timedelta(hours=3), kind=CredentialKind.REST_CONNECTION,
                 customer_ref="CUST")


def connection(state: TokenState, *, drop_suspected: bool = False) -> TokenView:
    """REST connection 5 of customer CUST."""
    return TokenView(5, "debtor", state, drop_suspected=drop_suspected, kind=CredentialKind.REST_CONNECTION,
                     customer_ref="CUST")


def mine(state: LinkState, token_id: int | None = None) -> LinkView:
    """Link 7 of customer CUST, to company 100."""
    return LinkView(7, 100, state, token_id=token_id, customer_ref="CUST")


def test_a_pending_link_prefers_a_rest_connection_over_any_soap_token() -> None:
    change = one(reconcile_links([mine(LinkState.PENDING)], tokens(ACC, DEB, REST), {100: [1, 2, 5]}))
    assert (change.to_token, change.reason, change.to_kind) == (5, Reason.REACHED, CredentialKind.REST_CONNECTION)
    assert change.from_kind is None


def test_failover_prefers_a_rest_connection() -> None:
    revoked = TokenView(1, "accountant", TokenState.REVOKED, "acme", NOW)
    link = mine(LinkState.ACTIVE, 1)
    change = one(reconcile_links([link], tokens(revoked, DEB, REST), {100: [1, 2, 5]}))
    assert (change.to_token, change.reason) == (5, Reason.FAILOVER)
    assert (change.from_kind, change.to_kind) == (CredentialKind.SOAP_TOKEN, CredentialKind.REST_CONNECTION)


def test_a_link_a_soap_token_serves_moves_to_an_active_rest_connection() -> None:
    link = mine(LinkState.ACTIVE, 2)
    change = one(reconcile_links([link], tokens(DEB, REST), {100: [2, 5]}))
    assert (change.from_state, change.to_state, change.from_token, change.to_token, change.reason) == (
        LinkState.ACTIVE, LinkState.ACTIVE, 2, 5, Reason.MOVED_TO_REST)
    after = apply_link_changes([link], [change])
    assert reconcile_links(after, tokens(DEB, REST), {100: [2, 5]}) == [], "and stays there"


def test_a_link_moves_to_the_preferred_of_several_rest_connections() -> None:
    """The most recently validated connection that takes links, whatever the order the reach lists them in."""
    older = TokenView(6, "debtor", TokenState.ACTIVE, last_valid_at=NOW - timedelta(hours=1),
                      kind=CredentialKind.REST_CONNECTION, customer_ref="CUST")
    newer = replace(older, id=7, last_valid_at=NOW)
    doubtful = replace(older, id=8, last_valid_at=NOW + timedelta(hours=1), drop_suspected=True)
    for reach in ([2, 6, 7, 8], [8, 7, 6, 2]):
        change = one(reconcile_links([mine(LinkState.ACTIVE, 2)], tokens(DEB, older, newer, doubtful), {100: reach}))
        assert (change.to_token, change.reason) == (7, Reason.MOVED_TO_REST)


@pytest.mark.parametrize("serving_state", [TokenState.INVALID, TokenState.UNREACHABLE])
def test_a_link_of_a_suspected_soap_token_moves_to_an_active_rest_connection(serving_state: TokenState) -> None:
    soap = TokenView(2, "debtor", serving_state, "acme", NOW)
    change = one(reconcile_links([mine(LinkState.ACTIVE, 2)], tokens(soap, REST),
                                 {100: [2, 5]}))
    assert (change.to_token, change.reason) == (5, Reason.MOVED_TO_REST)


@pytest.mark.parametrize(
    "rest",
    [
        connection(TokenState.INVALID),  # one unconfirmed refusal
        connection(TokenState.UNREACHABLE),  # transient faults
        connection(TokenState.NEW),  # never answered yet
        connection(TokenState.REVOKED),
        connection(TokenState.ACTIVE, drop_suspected=True),
    ],
    ids=["invalid", "unreachable", "new", "revoked", "drop_suspected"],
)
def test_a_link_moves_to_rest_only_when_the_connection_takes_links(rest: TokenView) -> None:
    link = mine(LinkState.ACTIVE, 2)
    assert reconcile_links([link], tokens(DEB, rest), {100: [2, 5]}) == []


def test_no_move_to_rest_while_the_breaker_is_open() -> None:
    link = mine(LinkState.ACTIVE, 2)
    assert reconcile_links([link], tokens(DEB, REST), {100: [2, 5]}, breaker_open=True) == []


def test_a_rest_connection_that_does_not_reach_the_company_takes_nothing() -> None:
    link = mine(LinkState.ACTIVE, 2)
    assert reconcile_links([link], tokens(DEB, REST), {100: [2], 200: [5]}) == []


def test_a_revoked_consent_fails_over_to_the_soap_token_and_comes_back_when_consented_again() -> None:
    link = mine(LinkState.ACTIVE, 5)
    revoked = connection(TokenState.REVOKED)
    change = one(reconcile_links([link], tokens(ACC, revoked), {100: [1, 5]}))
    assert (change.to_token, change.reason, change.to_kind) == (1, Reason.FAILOVER, CredentialKind.SOAP_TOKEN)
    link = apply_link_changes([link], [change])[0]
    assert reconcile_links([link], tokens(ACC, revoked), {100: [1, 5]}) == []
    back = one(reconcile_links([link], tokens(ACC, REST), {100: [1, 5]}))
    assert (back.to_token, back.reason) == (5, Reason.MOVED_TO_REST)


def test_a_revoked_consent_without_a_soap_token_suspends_as_revoked() -> None:
    revoked = connection(TokenState.REVOKED)
    change = one(reconcile_links([mine(LinkState.ACTIVE, 5)], tokens(revoked), {100: [5]}))
    assert (change.to_state, change.reason) == (LinkState.SUSPENDED, Reason.REVOKED)


kinded_views = st.builds(
    TokenView, id=st.integers(1, 6), level=st.sampled_from(["debtor", "accountant"]), state=states,
    environment=st.sampled_from([None, "acme"]), last_valid_at=st.sampled_from([None, NOW, NOW - timedelta(1)]),
    drop_suspected=st.booleans(), kind=st.sampled_from(list(CredentialKind)),
    customer_ref=st.sampled_from([None, "CUST", "OTHER"]))
customer_links = st.builds(
    LinkView, id=st.integers(1, 1000), company_id=st.integers(1, 8),
    state=st.sampled_from(list(LinkState)), token_id=st.one_of(st.none(), st.integers(1, 6)),
    environment=st.sampled_from([None, "acme"]), customer_ref=st.sampled_from(["CUST", "OTHER"]))


def may_serve(link: LinkView, token: TokenView) -> bool:
    if token.kind is CredentialKind.REST_CONNECTION:
        return token.customer_ref is not None and token.customer_ref == link.customer_ref
    return link.environment is None or token.environment in (None, link.environment)


@given(st.lists(kinded_views, max_size=6, unique_by=lambda t: t.id),
       st.lists(customer_links, max_size=12, unique_by=lambda link: link.id),
       st.dictionaries(st.integers(1, 8), st.sets(st.integers(1, 6)), max_size=8),
       st.booleans())
def test_links_with_rest_connections_converge_and_move_only_to_a_connection_that_takes_links(
        token_list, links, reach, breaker_open) -> None:
    toks = tokens(*token_list)
    changes = reconcile_links(links, toks, reach, breaker_open=breaker_open)
    assert len({c.link_id for c in changes}) == len(changes)
    for c in changes:
        assert c.from_kind == (toks[c.from_token].kind if c.from_token in toks else None)
        assert c.to_kind == (toks[c.to_token].kind if c.to_token in toks else None)
        if c.reason == Reason.MOVED_TO_REST:
            assert not breaker_open
            assert (c.from_kind, c.to_kind) == (CredentialKind.SOAP_TOKEN, CredentialKind.REST_CONNECTION)
            assert toks[c.to_token].state is TokenState.ACTIVE
            assert not toks[c.to_token].drop_suspected
        link = next(lk for lk in links if lk.id == c.link_id)
        if c.to_kind is CredentialKind.REST_CONNECTION and c.to_state is LinkState.ACTIVE:
            assert toks[c.to_token].customer_ref == link.customer_ref, "a connection takes its customer's links only"
        gave_up = c.from_token != c.to_token and c.from_kind is CredentialKind.REST_CONNECTION
        if link.state is LinkState.ACTIVE and gave_up:
            # A REST connection gives an active link up only when it must: known to be bad, or it lost the company.
            old = toks[c.from_token]
            reaches = c.from_token in reach.get(link.company_id, set()) and may_serve(link, old)
            assert old.state not in KEEPS_LINKS or not reaches
    after = apply_link_changes(links, changes)
    assert reconcile_links(after, toks, reach, breaker_open=breaker_open) == []
    if not breaker_open:
        # No active link stays with a SOAP token while an active REST connection reaches its company.
        for link in after:
            served = toks.get(link.token_id) if link.token_id is not None else None
            if link.state is LinkState.ACTIVE and served is not None and served.kind is CredentialKind.SOAP_TOKEN:
                assert not any(toks[t].kind is CredentialKind.REST_CONNECTION and toks[t].takes_links
                               and may_serve(link, toks[t]) for t in reach.get(link.company_id, set()) if t in toks)


# -- a REST connection serves its own customer only ------------------------------------------------------------------
def test_a_rest_connection_never_takes_another_customers_link() -> None:
    """Another customer's company "1"/"1" that the connection reaches (its keys matched) is not its to take: no
    move to REST, no activation, no failover; its own customer's link moves."""
    theirs = LinkView(7, 100, LinkState.ACTIVE, token_id=2, customer_ref="OTHER")
    pending = LinkView(8, 100, LinkState.PENDING, customer_ref="OTHER")
    revoked = TokenView(2, "debtor", TokenState.REVOKED, "acme", NOW)
    changes = reconcile_links([theirs, pending], tokens(DEB, REST), {100: [2, 5]})
    assert [(c.link_id, c.to_token) for c in changes] == [(8, 2)], "the pending one activates with the SOAP token"
    changes = reconcile_links([theirs, pending], tokens(revoked, REST), {100: [2, 5]})
    assert [(c.link_id, c.to_state, c.to_token) for c in changes] == [(7, LinkState.SUSPENDED, 2)]
    mine = LinkView(9, 100, LinkState.ACTIVE, token_id=2, customer_ref="cust ")
    assert one(reconcile_links([mine], tokens(DEB, REST), {100: [2, 5]})).reason == Reason.MOVED_TO_REST


def test_a_rest_connection_serving_another_customers_link_gives_it_up() -> None:
    theirs = LinkView(7, 100, LinkState.ACTIVE, token_id=5, customer_ref="OTHER")
    change = one(reconcile_links([theirs], tokens(DEB, REST), {100: [2, 5]}))
    assert (change.to_token, change.reason) == (2, Reason.FAILOVER)
    no_customer = TokenView(5, "debtor", TokenState.ACTIVE, kind=CredentialKind.REST_CONNECTION)
    assert reconcile_links([LinkView(8, 100, LinkState.PENDING, customer_ref="CUST")], tokens(no_customer),
                           {100: [5]}) == []


# -- the breaker per credential kind ---------------------------------------------------------------------------------
def _evidence(soap: list[Outcome], rest: list[Outcome]) -> list[Evidence]:
    at = datetime(2027, 3, 1, tzinfo=UTC)
    return [Evidence(n, at, o, kind=CredentialKind.SOAP_TOKEN) for n, o in enumerate(soap)] + [
        Evidence(100 + n, at, o, kind=CredentialKind.REST_CONNECTION) for n, o in enumerate(rest)]


def _frozen(soap: list[Outcome], rest: list[Outcome]) -> frozenset[CredentialKind]:
    at = datetime(2027, 3, 1, tzinfo=UTC)
    return judge_by_kind(_evidence(soap, rest), now=at, window=timedelta(minutes=15)).frozen


V, R = Outcome.VALID, Outcome.CONSENT_REVOKED


def test_the_breaker_is_judged_per_credential_kind() -> None:
    rest_kind, soap_kind = CredentialKind.REST_CONNECTION, CredentialKind.SOAP_TOKEN
    assert _frozen([V] * 8, [R] * 2) == {rest_kind}, "every connection refused beside a SOAP majority: REST trips"
    assert _frozen([V] * 2, [R] * 8) == {rest_kind}, "a REST majority failing never freezes SOAP"
    assert _frozen([Outcome.INVALID] * 3, [V] * 3) == {soap_kind}
    assert _frozen([V] * 8, [R, V, V]) == frozenset(), "one of three: a customer's change"
    assert _frozen([V] * 8, [R]) == frozenset(), "a single connection borrows the overall verdict"
    assert _frozen([], [R]) == {rest_kind}, "alone in the window: its failure trips, as for any one-token fleet"
    assert _frozen([Outcome.INVALID], [R] * 6) == {rest_kind}, "a lone SOAP token is not frozen by a REST fault"
    assert _frozen([Outcome.INVALID], [R]) == {rest_kind, soap_kind}, "one of each, both failing: an outage"
