"""Readiness per link and the cutover's plan: pure, over plain records, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from l1nda_sync.engine.link_rules import LinkState, LinkView, Reason, TokenView
from l1nda_sync.engine.token_state import CredentialKind, TokenState
from l1nda_sync.migration.cutover import plan_cutover
from l1nda_sync.migration.readiness import (
    InvitationFact,
    InvitationState,
    OpenCompany,
    Readiness,
    TokenInfo,
    World,
    assess,
    invitation_state,
)

NOW = datetime(2027, 2, 1, 12, tzinfo=UTC)
END = datetime(2027, 2, 28, 23, tzinfo=UTC)
REST = CredentialKind.REST_CONNECTION
ACC = TokenView(1, "accountant", TokenState.ACTIVE, "acme", NOW)
BIZ = TokenView(2, "debtor", TokenState.ACTIVE, "acme", NOW)
CONN = TokenView(3, "debtor", TokenState.ACTIVE, None, NOW, kind=REST, customer_ref="CUST-B")
CONN_SUSPECT = TokenView(4, "debtor", TokenState.ACTIVE, None, NOW, drop_suspected=True, kind=REST,
                         customer_ref="CUST-C")


def world(**kw: object) -> World:
    links = [
        LinkView(10, 100, LinkState.ACTIVE, 1, "acme", "reached", "CUST-A"),  # accountant, no REST
        LinkView(11, 101, LinkState.ACTIVE, 2, "acme", "reached", "CUST-B"),  # business, REST reaches it
        LinkView(12, 102, LinkState.ACTIVE, 1, "acme", "reached", "CUST-C"),  # REST reach in doubt
        LinkView(13, 103, LinkState.ACTIVE, 1, "acme", "reached", "CUST-D"),  # an ambiguous REST company
        LinkView(14, 104, LinkState.ACTIVE, 3, None, "moved_to_rest", "CUST-B"),  # on REST already
        LinkView(15, 105, LinkState.SUSPENDED, 1, "acme", "tag_or_filter", "CUST-A"),
    ]
    reachers = {100: [1], 101: [2, 3], 102: [1, 4], 103: [1], 104: [3]}
    base = dict(links=links, tokens={t.id: t for t in (ACC, BIZ, CONN, CONN_SUSPECT)}, reachers=reachers,
                info={1: TokenInfo("Office", ("office@acc.example",)), 2: TokenInfo("Biz", ("biz@b.example",))},
                open_companies=[OpenCompany("CUST-D", "u-1", (103, 999)), OpenCompany("CUST-A", "u-2", (555,))])
    base.update(kw)
    return World(**base)  # type: ignore[arg-type]


def by_link(w: World) -> dict[int, Readiness]:
    return {r.link_id: r.readiness for r in assess(w, NOW)}


def test_each_link_gets_its_readiness() -> None:
    assert by_link(world()) == {10: Readiness.SOAP_ONLY, 11: Readiness.REST_READY, 12: Readiness.SOAP_ONLY,
                                13: Readiness.AMBIGUOUS, 14: Readiness.REST_READY, 15: Readiness.SOAP_ONLY}


def test_a_rest_connection_of_another_customer_does_not_make_a_link_ready() -> None:
    foreign = TokenView(3, "debtor", TokenState.ACTIVE, None, NOW, kind=REST, customer_ref="CUST-Z")
    w = world(tokens={1: ACC, 2: BIZ, 3: foreign, 4: CONN_SUSPECT})
    assert by_link(w)[11] is Readiness.SOAP_ONLY


def test_a_new_or_invalid_rest_connection_does_not_make_a_pending_link_ready() -> None:
    for state in (TokenState.NEW, TokenState.INVALID, TokenState.UNREACHABLE):
        conn = TokenView(3, "debtor", state, None, NOW, kind=REST, customer_ref="CUST-B")
        w = world(tokens={1: ACC, 2: BIZ, 3: conn, 4: CONN_SUSPECT})
        assert by_link(w)[11] is Readiness.SOAP_ONLY, state


def test_accountant_grouping_and_rest_target() -> None:
    rows = {r.link_id: r for r in assess(world(), NOW)}
    assert (rows[10].accountant_token, rows[10].accountant_label) == (1, "Office")
    assert rows[11].accountant_token is None
    assert rows[11].rest_connection == 3
    assert rows[13].ambiguous_rest_companies == ("u-1",)


def test_invitation_state_is_the_newest_rest_invitations() -> None:
    def fact(state: str, age_days: float, valid_days: float = 14) -> InvitationFact:
        created = NOW - timedelta(days=age_days)
        return InvitationFact("CUST-A", state, created, created + timedelta(days=valid_days))
    assert invitation_state([], NOW) is InvitationState.NONE
    assert invitation_state([fact("sent", 1)], NOW) is InvitationState.SENT
    assert invitation_state([fact("created", 1)], NOW) is InvitationState.SENT
    assert invitation_state([fact("opened", 1)], NOW) is InvitationState.OPENED
    assert invitation_state([fact("sent", 20)], NOW) is InvitationState.EXPIRED  # past expires_at
    assert invitation_state([fact("used", 5), fact("expired", 30)], NOW) is InvitationState.CONSENTED
    assert invitation_state([fact("used", 30), fact("sent", 1)], NOW) is InvitationState.SENT  # the newest counts
    w = world(invitations=[fact("opened", 1)])
    assert {r.link_id: r.invitation for r in assess(w, NOW)}[10] is InvitationState.OPENED


def test_cutover_before_soap_end_does_nothing() -> None:
    plan = plan_cutover(world(), END - timedelta(seconds=1), END)
    assert not plan.active
    assert plan.retire == ()
    assert plan.changes == ()
    assert plan.notices == ()


def test_cutover_at_soap_end_retires_moves_and_suspends() -> None:
    plan = plan_cutover(world(), END, END)
    assert plan.retire == (1, 2)
    moves = {c.link_id: (c.to_state, c.to_token, str(c.reason)) for c in plan.changes}
    assert moves == {10: (LinkState.SUSPENDED, 1, Reason.SOAP_ENDED),
                     11: (LinkState.ACTIVE, 3, Reason.FAILOVER),
                     12: (LinkState.SUSPENDED, 1, Reason.SOAP_ENDED),  # a suspected drop takes no link
                     13: (LinkState.SUSPENDED, 1, Reason.SOAP_ENDED)}
    assert plan.kept_on_rest == (14,)
    (notice,) = plan.notices  # the business token's only link moved: nobody to tell; the accountant once
    assert (notice.token_id, notice.level, notice.customers, notice.link_ids) == (
        1, "accountant", ("CUST-A", "CUST-C", "CUST-D"), (10, 12, 13))
    assert plan.per_customer()["CUST-B"] == {"stay_on_rest": [14], "move_to_rest": [11], "suspend": []}


def test_readiness_agrees_with_the_cutover() -> None:
    w = world()
    plan = plan_cutover(w, END, END)
    suspended = {c.link_id for c in plan.suspended}
    for row in assess(w, NOW):
        if row.link_state == "active":
            assert (row.readiness is Readiness.REST_READY) == (row.link_id not in suspended), row


def test_cutover_after_itself_changes_nothing() -> None:
    """Apply the plan to the world and plan again: nothing retired, moved or told twice."""
    w = world()
    plan = plan_cutover(w, END, END)
    after = {c.link_id: c for c in plan.changes}
    links = [LinkView(link.id, link.company_id, after[link.id].to_state, after[link.id].to_token, link.environment,
                      str(after[link.id].reason), link.customer_ref) if link.id in after else link
             for link in w.links]
    tokens = {i: (TokenView(t.id, t.level, TokenState.RETIRED, t.environment, t.last_valid_at)
                  if i in plan.retire else t) for i, t in w.tokens.items()}
    again = plan_cutover(world(links=links, tokens=tokens), END + timedelta(hours=1), END)
    assert again.retire == ()
    assert again.changes == ()
    assert again.notices == ()


@given(st.lists(st.tuples(st.integers(1, 4), st.sampled_from(list(TokenState)), st.booleans()), max_size=4),
       st.lists(st.tuples(st.integers(100, 103), st.sampled_from([LinkState.ACTIVE, LinkState.PENDING,
                                                                    LinkState.SUSPENDED]),
                          st.integers(1, 4)), max_size=6))
def test_no_link_is_served_by_a_soap_token_after_the_cutover(raw_tokens: list, raw_links: list) -> None:
    tokens = {i: TokenView(i, "debtor", state, None, NOW, kind=REST if rest else CredentialKind.SOAP_TOKEN,
                           customer_ref="C" if rest else None) for i, state, rest in raw_tokens}
    links = [LinkView(n, company, state, token if state is not LinkState.PENDING else None, None, None, "C")
             for n, (company, state, token) in enumerate(raw_links, start=1)]
    links = [link for link in links if link.state is not LinkState.ACTIVE or link.token_id in tokens]
    reachers = {c: list(tokens) for c in range(100, 104)}
    plan = plan_cutover(World(links, tokens, reachers), END, END)
    after = {c.link_id: c for c in plan.changes}
    for link in links:
        change = after.get(link.id)
        state, token = (change.to_state, change.to_token) if change else (link.state, link.token_id)
        if state is LinkState.ACTIVE:
            assert tokens[token].kind is REST, (link, change)
