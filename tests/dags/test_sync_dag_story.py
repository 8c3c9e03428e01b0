"""The whole story through the real DAG: first run, a token reset and a tag removal, confirmation, exact mails,
`tokens replace` and recovery, a manual run that touches only the tokens it names."""

from __future__ import annotations

import email
import io
import sys
from email.policy import default as default_policy

import pytest

from l1nda_sync.cli import main as cli_main
from tests.dags.conftest import OPS, DagWorld, load_dag
from tests.l1nda_sync.engine.story_world import LOGINS

pytestmark = pytest.mark.slow


def _mails(world: DagWorld, start: int = 0) -> list[tuple[str, tuple[str, ...]]]:
    """(subject, recipients) of the mails the SMTP server took since `start`."""
    out = []
    for rcpts, raw in world.mail.received[start:]:
        message = email.message_from_bytes(raw, policy=default_policy)
        out.append((str(message["Subject"]), tuple(sorted(rcpts))))
    return out


def _links(world: DagWorld) -> dict[int, tuple[str, str | None]]:
    return {c: (s, r) for c, s, r in world.query("SELECT company_id, state, reason FROM links")}


def test_reset_and_tag_removal_then_replace_and_recovery(dag_world: DagWorld, monkeypatch) -> None:
    monkeypatch.setenv("L1NDA_REVOKE_MIN_SPACING", "0")  # confirm at the next run instead of 10 minutes later
    monkeypatch.setenv("L1NDA_PROBLEM_QUIET_PERIOD", "0")  # resolve as soon as the cause clears
    for label in ("horeca", "vandijk", "linde"):
        dag_world.add_token(label)
    dag_world.request(50101, 50102, 50201, 50301, 50501)
    dag = load_dag("nmbrs_token_sync")

    # 1. A first run validates the tokens and activates the requested links.
    assert dag.test().state == "success"
    assert {label: dag_world.state(label) for label in dag_world.ids} == dict.fromkeys(dag_world.ids, "active")
    assert {c for c, (s, _r) in _links(dag_world).items() if s == "active"} == {50101, 50102, 50201, 50301, 50501}
    assert dag_world.mail.received == []

    # 2. The customer resets the client login's token; the office removes the Horeca tag from debtor 2001.
    new_secret = dag_world.sim.admin.reset_token(LOGINS["vandijk"][1])
    dag_world.sim.admin.set_debtor_tags(2001, remove=["Horeca"])
    everyone = {"token_ids": list(dag_world.ids.values())}
    assert dag.test(run_conf=everyone).state == "success"
    assert dag_world.state("vandijk") == "invalid"  # not yet revoked
    links = _links(dag_world)
    assert links[50301] == ("active", "reached")  # an unconfirmed 1001 keeps the link
    assert links[50101] == ("suspended", "tag_or_filter")
    assert links[50102] == ("suspended", "tag_or_filter")
    assert links[50201][0] == "active"
    assert links[50501][0] == "active"
    first = _mails(dag_world)
    assert len(first) == 1  # access lost, to operations only
    assert first[0][1] == (OPS,)
    assert first[0][0].startswith("[L1NDA] Nmbrs token lost 2 linked companies: horeca")
    body = email.message_from_bytes(dag_world.mail.received[0][1], policy=default_policy).get_body(("plain",))
    text = body.get_content()
    assert "50101" in text, "the mail names companies by the ids the CLI and links use"
    assert "50102" in text

    # 3. The next run confirms the revocation: exactly the client login's link is suspended, two mails.
    seen = len(dag_world.mail.received)
    assert dag.test(run_conf=everyone).state == "success"
    assert dag_world.state("vandijk") == "revoked"
    assert _links(dag_world)[50301] == ("suspended", "revoked")
    assert {c for c, (s, _r) in _links(dag_world).items() if s == "suspended"} == {50101, 50102, 50301}
    revoked = _mails(dag_world, seen)
    assert sorted(r for _s, r in revoked) == [("contact-vandijk@customer.example",), (OPS,)]
    assert all("revoked" in s.lower() or "ingetrokken" in s.lower() for s, _r in revoked)

    # 4. The customer sends a new token; `tokens replace` stores it; the next run restores the link.
    monkeypatch.setattr(sys, "stdin", io.StringIO(new_secret))
    assert cli_main(["tokens", "replace", str(dag_world.ids["vandijk"])]) == 0
    seen = len(dag_world.mail.received)
    assert dag.test().state == "success"
    assert dag_world.state("vandijk") == "active"
    assert _links(dag_world)[50301][0] == "active"
    recovered = _mails(dag_world, seen)
    assert sorted(r for _s, r in recovered) == [("contact-vandijk@customer.example",), (OPS,)]
    assert all(s.startswith("[L1NDA] Resolved") and "vandijk" in s for s, _r in recovered)
    assert all(LOGINS["vandijk"][2] not in s and new_secret not in s for s, _r in revoked + recovered)
    assert dag_world.query("SELECT count(*) FROM problems WHERE kind = 'revoked' AND state = 'open'") == [(0,)]

    # 5. A manual run with token_ids touches only those tokens.
    before = dict(dag_world.query("SELECT id, last_checked_at FROM tokens"))
    assert dag.test(run_conf={"token_ids": [dag_world.ids["linde"]]}).state == "success"
    after = dict(dag_world.query("SELECT id, last_checked_at FROM tokens"))
    assert [t for t in after if after[t] != before[t]] == [dag_world.ids["linde"]]
