"""Invitations in the registry: only a hash and a nonce stored, reused per problem, used exactly once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest

from l1nda_sync.masking import Secret
from l1nda_sync.registry import db
from l1nda_sync.registry import invitations as inv
from l1nda_sync.registry.errors import InvalidInput

SECRET = Secret("s" * 40)
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
TTL = 14 * 86400.0


def _create(cur, **kw):
    args = {"secret": SECRET, "customer_ref": "CUST-A", "contact": "a@example.com", "purpose": "rest",
            "language": "nl", "now": NOW, "ttl": TTL, "actor": "test"} | kw
    return inv.create(cur, **args)


def _problem(cur) -> int:
    cur.execute("INSERT INTO problems (kind, token_id, detail) VALUES ('consent_revoked', NULL, '{}') RETURNING id")
    return int(cur.fetchone()[0])


@pytest.fixture
def conn(registry_url: str):
    connection = db.connect(registry_url)
    yield connection
    connection.close()


def test_only_the_hash_and_the_nonce_are_stored_and_the_value_finds_it(conn) -> None:
    with db.transaction(conn) as cur:
        issued = _create(cur)
        value = issued.value.reveal()
        assert len(value) == 43
        cur.execute("SELECT * FROM invitations")
        stored = " ".join(str(c) for c in cur.fetchone())
        assert value not in stored
        assert inv.find(cur, value).id == issued.invitation.id
        assert inv.find(cur, value[:-1] + ("A" if value[-1] != "A" else "B")) is None
        assert inv.derive_value(SECRET, issued.invitation.nonce) == issued.value
        assert inv.derive_value(Secret("t" * 40), issued.invitation.nonce) != issued.value


def test_bad_input_names_the_option(conn) -> None:
    with db.transaction(conn) as cur:
        with pytest.raises(InvalidInput) as no_token:
            _create(cur, purpose="token")
        assert no_token.value.field == "--token-id"
        with pytest.raises(InvalidInput) as missing:
            _create(cur, purpose="token", token_id=999)
        assert missing.value.field == "--token-id"
        with pytest.raises(InvalidInput) as purpose:
            _create(cur, purpose="soap")
        assert purpose.value.field == "--purpose"
        with pytest.raises(InvalidInput) as contact:
            _create(cur, contact="not-an-address")
        assert contact.value.field == "--contact"


def test_states_expiry_and_single_use(conn) -> None:
    with db.transaction(conn) as cur:
        issued = _create(cur)
        i = issued.invitation.id
        inv.mark_sent(cur, i, NOW)
        inv.mark_opened(cur, i, NOW)
        assert inv.get(cur, i).state == "opened"
        assert inv.usable(inv.get(cur, i), NOW + timedelta(days=13)).id == i
        with pytest.raises(inv.InvitationUnusable) as expired:
            inv.usable(inv.get(cur, i), NOW + timedelta(days=14))
        assert expired.value.code == "expired"
        with pytest.raises(inv.InvitationUnusable) as late:
            inv.mark_used(cur, i, now=NOW + timedelta(days=15), result_token_id=None)
        assert late.value.code == "expired"
        assert inv.mark_used(cur, i, now=NOW, result_token_id=None).state == "used"
        with pytest.raises(inv.InvitationUnusable) as twice:
            inv.mark_used(cur, i, now=NOW, result_token_id=None)
        assert twice.value.code == "used"
        with pytest.raises(inv.InvitationUnusable) as unknown:
            inv.usable(None, NOW)
        assert unknown.value.code == "unknown"


def test_two_uses_at_once_one_wins(conn, registry_url: str) -> None:
    with db.transaction(conn) as cur:
        i = _create(cur).invitation.id
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def use() -> None:
        c = psycopg2.connect(registry_url)
        try:
            with c, c.cursor() as cur:
                barrier.wait()
                try:
                    inv.mark_used(cur, i, now=NOW, result_token_id=None)
                    outcomes.append("won")
                except inv.InvitationUnusable as exc:
                    outcomes.append(exc.code)
        finally:
            c.close()

    threads = [threading.Thread(target=use) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["used", "won"]  # one made it, the other was told it is used
    with db.reading(conn) as cur:
        cur.execute("SELECT count(*) FROM invitations WHERE state = 'used'")
        assert cur.fetchone()[0] == 1


def test_a_problem_reuses_its_open_invitation_and_replaces_an_expired_or_unreadable_one(conn) -> None:
    with db.transaction(conn) as cur:
        problem = _problem(cur)
        args = {"secret": SECRET, "problem_id": problem, "customer_ref": "CUST-A", "contact": "a@example.com",
                "purpose": "rest", "language": "en", "ttl": TTL}
        first = inv.for_problem(cur, now=NOW, **args)
        again = inv.for_problem(cur, now=NOW + timedelta(days=1), **args)
        assert (again.reused, again.value, again.invitation.id) == (True, first.value, first.invitation.id)
        later = inv.for_problem(cur, now=NOW + timedelta(days=15), **args)  # the first expired
        assert not later.reused
        assert later.value != first.value
        assert inv.get(cur, first.invitation.id).state == "expired"
        rotated = inv.for_problem(cur, now=NOW + timedelta(days=16), **(args | {"secret": Secret("r" * 40)}))
        assert not rotated.reused  # the link could not be made again under a new secret: a new one
        cur.execute("SELECT count(*) FROM invitations WHERE problem_id = %s AND state IN ('created', 'sent', "
                    "'opened')", (problem,))
        assert cur.fetchone()[0] == 1


def test_renew_replaces_a_link_that_cannot_be_sent_bound_alike_and_as_long(conn) -> None:
    with db.transaction(conn) as cur:
        old = _create(cur, ttl=3 * 86400.0).invitation
        later = NOW + timedelta(days=4)  # expired
        new = inv.renew(cur, old, secret=SECRET, now=later, actor="outbox")
        assert not new.reused
        made = new.invitation
        assert (made.customer_ref, made.contact, made.purpose, made.language, made.problem_id) == (
            "CUST-A", "a@example.com", "rest", "nl", None)
        assert (made.created_at, made.expires_at) == (later, later + timedelta(days=3))
        assert inv.get(cur, old.id).state == "expired"
        assert inv.find(cur, new.value.reveal()).id == made.id


def test_renew_of_a_problems_invitation_takes_its_open_one_or_replaces_it_under_a_rotated_secret(conn) -> None:
    with db.transaction(conn) as cur:
        problem = _problem(cur)
        args = {"problem_id": problem, "customer_ref": "CUST-A", "contact": "a@example.com", "purpose": "rest",
                "language": "en", "ttl": TTL}
        first = inv.for_problem(cur, secret=SECRET, now=NOW, **args).invitation
        second = inv.for_problem(cur, secret=SECRET, now=NOW + timedelta(days=15), **args)  # first expired
        # an old mail naming the first: the problem's open (second) invitation, same link
        renewed = inv.renew(cur, inv.get(cur, first.id), secret=SECRET, now=NOW + timedelta(days=16), actor="outbox")
        assert renewed.reused
        assert renewed.invitation.id == second.invitation.id
        assert renewed.value == second.value
        # the web secret rotated: the open one cannot be made again, so it is replaced
        rotated = Secret("r" * 40)
        replaced = inv.renew(cur, second.invitation, secret=rotated, now=NOW + timedelta(days=16), actor="outbox")
        assert replaced.invitation.id not in (first.id, second.invitation.id)
        assert replaced.value == inv.derive_value(rotated, replaced.invitation.nonce)
        assert inv.get(cur, second.invitation.id).state == "expired"
        cur.execute("SELECT count(*) FROM invitations WHERE problem_id = %s AND state IN ('created', 'sent', "
                    "'opened')", (problem,))
        assert cur.fetchone()[0] == 1
