"""The plan and the breaker's credential kinds (PostgreSQL): witnesses of a failing token's own kind, since the
breaker judges SOAP tokens and REST connections apart; no REST connection claimed without a REST app."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from l1nda_sync.engine.planning import claim_tokens, rest_left_out
from l1nda_sync.registry import db

NOW = datetime(2027, 3, 1, 9, tzinfo=UTC)


def token(cur: db.Cursor, kind: str, label: str, *, outcome: str, due: bool) -> int:
    cur.execute("""INSERT INTO tokens (kind, label, level, username, token_ciphertext, fingerprint, state,
                                       last_outcome, next_check_at, last_checked_at)
                   VALUES (%s, %s, 'debtor', 'u@x.nl', CASE WHEN %s = 'soap_token' THEN 'c' END, %s, 'active',
                           %s, %s, %s) RETURNING id""",
                (kind, label, kind, label, outcome, NOW - timedelta(minutes=1) if due else NOW + timedelta(hours=1),
                 NOW - timedelta(hours=1)))
    token_id = int(cur.fetchone()[0])
    if kind == "rest_connection":
        cur.execute("INSERT INTO rest_connections (token_id, customer_ref, user_id, user_email) "
                    "VALUES (%s, %s, %s, 'u@x.nl')", (token_id, label.upper(), str(uuid.uuid4())))
    return token_id


def test_a_failing_connection_gets_rest_witnesses_not_soap_ones(conn: db.Connection) -> None:
    with db.transaction(conn) as cur:
        soap = [token(cur, "soap_token", f"s{n}", outcome="valid", due=False) for n in range(3)]
        failing = token(cur, "rest_connection", "r0", outcome="consent_revoked", due=True)
        healthy = token(cur, "rest_connection", "r1", outcome="valid", due=False)
        claimed = claim_tokens(cur, NOW, run_id=1, witnesses=5)
    assert claimed == sorted([failing, healthy])
    assert not set(soap) & set(claimed)


def test_without_a_rest_app_no_connection_is_claimed_and_the_due_ones_are_named(conn: db.Connection) -> None:
    with db.transaction(conn) as cur:
        due_soap = token(cur, "soap_token", "s0", outcome="transient", due=True)
        witness = token(cur, "soap_token", "s1", outcome="valid", due=False)
        due_rest = token(cur, "rest_connection", "r0", outcome="valid", due=True)
        token(cur, "rest_connection", "r1", outcome="valid", due=False)
        left = rest_left_out(cur, NOW)
        claimed = claim_tokens(cur, NOW, run_id=1, witnesses=5, soap_only=True)
    assert left == [due_rest]
    assert claimed == sorted([due_soap, witness])
