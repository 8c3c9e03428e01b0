from __future__ import annotations

from collections.abc import Iterator

import pytest

from l1nda_sync.registry import db, links
from l1nda_sync.registry.crypto import TokenCipher, generate_key
from l1nda_sync.registry.errors import Conflict, NotFound
from l1nda_sync.registry.tokens import NewToken, TokenStore


@pytest.fixture
def conn(registry_url: str) -> Iterator[object]:
    c = db.connect(registry_url)
    yield c
    c.close()


def request(conn, company: int, environment: str | None = None, customer: str = "CUST-1") -> links.Link:
    with db.transaction(conn):
        return links.request_link(conn, customer_ref=customer, company_id=company, environment=environment,
                                  actor="test")


def test_request_records_a_pending_link_and_an_event(conn) -> None:
    link = request(conn, 54613, "apitesting")
    assert (link.state, link.wanted, link.token_id, link.environment) == ("pending", True, None, "apitesting")
    with db.reading(conn) as cur:
        cur.execute("SELECT actor, from_state, to_state, reason FROM link_events WHERE link_id = %s", (link.id,))
        assert cur.fetchall() == [("test", None, "pending", "requested")]


def test_a_second_wanted_link_for_the_same_company_is_refused_naming_the_first(conn) -> None:
    first = request(conn, 7)
    with pytest.raises(Conflict) as err:
        request(conn, 7, customer="CUST-2")
    assert err.value.field == "--company"
    assert f"link {first.id}" in str(err.value)
    assert f"links cancel {first.id}" in str(err.value)
    request(conn, 7, "other-env")  # the same company id in another environment is another company
    with pytest.raises(Conflict):
        request(conn, 7, "other-env")
    assert len(links.list_links(conn)) == 2


def test_cancel_frees_the_company_and_cancelling_twice_changes_nothing(conn) -> None:
    link = request(conn, 7)
    with db.transaction(conn):
        cancelled, changed = links.cancel_link(conn, link.id, actor="test")
    assert (cancelled.state, cancelled.wanted, changed) == ("cancelled", False, True)
    assert cancelled.cancelled_at is not None
    with db.transaction(conn):
        assert links.cancel_link(conn, link.id, actor="test")[1] is False
    again = request(conn, 7)
    assert [lk.id for lk in links.list_links(conn, state="pending")] == [again.id]
    assert [lk.id for lk in links.list_links(conn, state="cancelled")] == [link.id]
    with pytest.raises(NotFound, match="no link with id 99"), db.transaction(conn):
        links.cancel_link(conn, 99, actor="test")


def test_reachers_are_live_tokens_whose_current_reach_holds_the_company(conn) -> None:
    store = TokenStore(TokenCipher([generate_key()]))
    ids = []
    for n, domain in enumerate(("env-a", "env-b", None)):
        with db.transaction(conn):
            ids.append(store.add(conn, NewToken.validate(
                label=f"t{n}", level="debtor", username=f"u{n}@x.nl", token=f"token-number-{n}",
                contacts=["c@x.nl"], domain=domain), actor="test").id)
    with db.transaction(conn) as cur:
        for token_id in ids:
            cur.execute("INSERT INTO reach_companies (token_id, company_id) VALUES (%s, 7)", (token_id,))
        cur.execute("UPDATE reach_companies SET lost_at = now() WHERE token_id = %s", (ids[2],))
    assert [r.token_id for r in links.reachers(conn, 7)] == ids[:2]
    assert [r.token_id for r in links.reachers(conn, 7, "env-a")] == [ids[0]]
    assert links.reachers(conn, 8) == []


def test_the_schema_refuses_an_active_link_without_a_token(conn) -> None:
    import psycopg2

    with pytest.raises(psycopg2.errors.CheckViolation), db.transaction(conn) as cur:
        cur.execute("INSERT INTO links (customer_ref, company_id, state) VALUES ('C', 1, 'active')")
