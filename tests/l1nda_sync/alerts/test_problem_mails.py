"""Each problem kind end to end: the real engine's hooks, sweep and drain, delivered to a real SMTP server.

For every kind: exactly one mail per audience when it opens, none on the runs after, one when it resolves
(after the quiet period), the customer only for the kinds they must act on, and never a plaintext token.
"""

from __future__ import annotations

from l1nda_sync.engine.token_state import Outcome
from tests.l1nda_sync.alerts.harness import HOUR, OPS, MailServer, World, assert_no_secret, parts, probe

CUSTOMER = "piet@klant.example"
REACH = probe(debtors=[(1, "Jansen Holding")], companies=[(11, 1, "Bakkerij Jansen"), (12, 1, "Jansen Logistiek")])
OPERATION = "CompanyService \u203a List_GetByDebtor"
ONLY_11 = probe(debtors=[(1, "Jansen Holding")], companies=[(11, 1, "Bakkerij Jansen")])


def _healthy(world: World, **kwargs) -> int:
    token = world.add_token("Bakkerij Jansen", **kwargs)
    world.add_link(11, "CUST-11")
    world.add_link(12, "CUST-12")
    world.run({token: (Outcome.VALID, REACH)})
    return token


def _resolve_after_quiet_period(world: World, smtp: MailServer, token: int, before: int) -> None:
    """The cause is gone: nothing during the quiet period (runs every 10 minutes), then the recovery mail."""
    for _ in range(5):  # 50 minutes of healthy runs
        world.run({token: (Outcome.VALID, REACH)})
    assert len(smtp.received) == before, "nothing while the quiet period runs"
    world.run({token: (Outcome.VALID, REACH)})  # 60 minutes after the cause cleared
    assert world.problems(state="open") == []


def test_revoked_opens_silently_escalates_once_and_recovers_once(world: World, smtp: MailServer) -> None:
    token = _healthy(world)
    world.run({token: Outcome.INVALID})
    assert smtp.received == [], "one unconfirmed 1001 opens a suspected problem silently"
    [problem] = world.problems(state="open")
    assert (problem["kind"], problem["stage"]) == ("revoked", "suspected")

    world.run({token: Outcome.INVALID})  # 10 minutes later: confirmed
    assert smtp.tally() == {(OPS, "escalated"): 1, (CUSTOMER, "escalated"): 1}
    assert smtp.subjects(OPS)[0].startswith("[L1NDA] Nmbrs token revoked: Bakkerij Jansen (…")
    text, html = parts(smtp.messages(CUSTOMER)[0])
    for step in ("Nieuw account", "Opslaan", "API token", "Toevoegen"):
        assert step in text, f"the customer's mail has the step {step!r}"
        assert step in html
    assert "Jansen Logistiek" in text, "affected companies are listed"
    assert "l1nda-sync tokens replace" not in text, "operator commands stay out of the customer's mail"
    assert "l1nda-sync tokens replace" in parts(smtp.messages(OPS)[0])[0]

    for _ in range(6):
        world.run({token: Outcome.INVALID})
    assert len(smtp.received) == 2, "no mail on the runs after"
    assert world.link_state(1) == ("suspended", "revoked")

    world.run({token: (Outcome.VALID, REACH)})
    _resolve_after_quiet_period(world, smtp, token, before=2)
    assert smtp.tally() == {(OPS, "escalated"): 1, (CUSTOMER, "escalated"): 1,
                            (OPS, "resolved"): 1, (CUSTOMER, "resolved"): 1}
    assert all("Resolved" in s for r, e, s in smtp.events() if e == "resolved")
    for _ in range(3):
        world.run({token: (Outcome.VALID, REACH)})
    assert len(smtp.received) == 4
    assert_no_secret(smtp, world.secrets)


def test_a_suspicion_that_clears_closes_without_any_mail(world: World, smtp: MailServer) -> None:
    token = _healthy(world)
    world.run({token: Outcome.INVALID})
    world.run({token: (Outcome.VALID, REACH)})
    [problem] = world.problems()
    assert problem["state"] == "resolved"
    world.advance(2 * HOUR)
    world.sweep_and_send()
    assert smtp.received == []
    assert world.outbox() == []


def test_rights_missing_names_the_operation_to_switch_on(world: World, smtp: MailServer) -> None:
    token = _healthy(world, language="nl")
    world.run({token: (Outcome.RIGHTS_MISSING, "CompanyService.List_GetByDebtor")})
    assert smtp.tally() == {(OPS, "opened"): 1, (CUSTOMER, "opened"): 1}
    [customer] = smtp.messages(CUSTOMER)
    text, html = parts(customer)
    assert OPERATION in text
    assert OPERATION in html
    assert "Zet aan" in text, "the customer's mail is in the contact's language (nl)"
    assert str(customer["Subject"]).startswith("[L1NDA] Nmbrs-token mist een recht")
    assert "Switch on" not in parts(smtp.messages(OPS)[0])[0]
    assert "lacks a right" in smtp.subjects(OPS)[0], "operations reads the default language (en)"

    for _ in range(4):
        world.run({token: (Outcome.RIGHTS_MISSING, "CompanyService.List_GetByDebtor")})
    assert len(smtp.received) == 2
    world.run({token: (Outcome.RIGHTS_MISSING, "DebtorService.Tags_Get")})  # one fixed, the next one is off
    assert len(smtp.received) == 4, "a different missing operation is news for the customer"
    assert "DebtorService \u203a Tags_Get" in parts(smtp.messages(CUSTOMER)[-1])[0]
    world.run({token: (Outcome.RIGHTS_MISSING, "DebtorService.Tags_Get")})
    assert len(smtp.received) == 4
    world.run({token: (Outcome.VALID, REACH)})
    _resolve_after_quiet_period(world, smtp, token, before=4)
    assert smtp.tally()[(OPS, "resolved")] == 1
    assert smtp.tally()[(CUSTOMER, "resolved")] == 1
    assert_no_secret(smtp, world.secrets)


def test_no_subscription_mails_operations_and_customer(world: World, smtp: MailServer) -> None:
    token = _healthy(world)
    world.run({token: Outcome.NO_SUBSCRIPTION})
    assert smtp.tally() == {(OPS, "opened"): 1, (CUSTOMER, "opened"): 1}
    assert "1004" in parts(smtp.messages(CUSTOMER)[0])[0]
    world.run({token: Outcome.NO_SUBSCRIPTION})
    world.run({token: (Outcome.VALID, REACH)})
    _resolve_after_quiet_period(world, smtp, token, before=2)
    assert sorted(smtp.tally().values()) == [1, 1, 1, 1]
    assert_no_secret(smtp, world.secrets)


def test_unreachable_mails_operations_only(world: World, smtp: MailServer) -> None:
    token = _healthy(world)
    for _ in range(3):  # transient faults for 20 minutes: not yet unreachable (policy: 30 minutes)
        world.run({token: Outcome.TRANSIENT})
    assert smtp.received == []
    world.run({token: Outcome.TRANSIENT})
    assert smtp.tally() == {(OPS, "opened"): 1}, "the customer never hears about unreachable"
    assert "unreachable" in smtp.subjects(OPS)[0]
    for _ in range(3):
        world.run({token: Outcome.TRANSIENT})
    assert len(smtp.received) == 1
    world.run({token: (Outcome.VALID, REACH)})
    _resolve_after_quiet_period(world, smtp, token, before=1)
    assert smtp.tally() == {(OPS, "opened"): 1, (OPS, "resolved"): 1}
    assert_no_secret(smtp, world.secrets)


def test_access_lost_lists_the_lost_companies_and_links(world: World, smtp: MailServer) -> None:
    token = _healthy(world)
    world.run({token: (Outcome.VALID, ONLY_11)})  # company 12 left the login's filter
    assert world.link_state(2)[0] == "suspended"
    assert smtp.tally() == {(OPS, "opened"): 1}, "operations only"
    [mail] = smtp.messages(OPS)
    assert str(mail["Subject"]).startswith("[L1NDA] Nmbrs token lost 1 linked company: Bakkerij Jansen")
    text, _ = parts(mail)
    assert "Jansen Logistiek (customer CUST-12, link 2): suspended" in text
    assert "CUST-11" not in text, "only the lost link is listed"
    [problem] = world.problems(state="open")
    assert problem["detail"]["links"] == 1
    assert problem["detail"]["entries"][0]["company_id"] == 12

    for _ in range(3):
        world.run({token: (Outcome.VALID, ONLY_11)})
    assert len(smtp.received) == 1
    world.run({token: (Outcome.VALID, REACH)})  # the filter is fixed: the link comes back
    assert world.link_state(2)[0] == "active"
    _resolve_after_quiet_period(world, smtp, token, before=1)
    assert smtp.tally() == {(OPS, "opened"): 1, (OPS, "resolved"): 1}
    assert_no_secret(smtp, world.secrets)


def test_provider_incident_is_one_mail_not_one_per_token(conn, smtp: MailServer, fernet_keys) -> None:
    from tests.l1nda_sync.alerts.harness import test_settings

    world = World(conn, test_settings(breaker_min_tokens=3), bystanders=0)
    tokens = [world.add_token(f"Klant {i}", contacts=[f"klant{i}@example.com"]) for i in range(4)]
    world.run(dict.fromkeys(tokens, (Outcome.VALID, REACH)))
    world.run(dict.fromkeys(tokens, Outcome.INVALID))
    assert smtp.tally() == {}, "one odd answer from everyone: the incident opens silently"
    world.run(dict.fromkeys(tokens, Outcome.INVALID))
    # It lasted the confirmation spacing: announced (as the escalation of the silent suspicion).
    assert smtp.tally() == {(OPS, "escalated"): 1}, "one provider incident for operations, nothing to customers"
    assert "provider incident: 4 of 4 tokens failing (Invalid Authentication (1001))" in smtp.subjects(OPS)[0]
    world.run(dict.fromkeys(tokens, Outcome.TRANSIENT))
    assert len(smtp.received) == 1
    kinds = {p["kind"] for p in world.problems(state="open")}
    assert kinds == {"provider_incident"}, "the breaker keeps every token out of revoked"
    world.run(dict.fromkeys(tokens, (Outcome.VALID, REACH)))  # the first run that passes clears the cause
    [incident] = world.problems(state="open")
    assert incident["cause_cleared_at"] is not None
    for _ in range(5):
        world.run(dict.fromkeys(tokens, (Outcome.VALID, REACH)))
    assert len(smtp.received) == 1, "quiet period: 50 minutes passed"
    world.run(dict.fromkeys(tokens, (Outcome.VALID, REACH)))
    assert world.problems(state="open") == []
    assert smtp.tally() == {(OPS, "escalated"): 1, (OPS, "resolved"): 1}
    assert_no_secret(smtp, world.secrets)


def test_a_cause_that_returns_within_the_quiet_period_keeps_the_problem_open(world: World, smtp: MailServer) -> None:
    token = _healthy(world)
    world.run({token: Outcome.NO_SUBSCRIPTION})
    for _ in range(3):  # flapping: clear, back, clear, back ...
        world.run({token: (Outcome.VALID, REACH)})
        world.run({token: Outcome.NO_SUBSCRIPTION})
    assert smtp.tally() == {(OPS, "opened"): 1, (CUSTOMER, "opened"): 1}, "no storm of opened/resolved mails"
    [problem] = world.problems(state="open")
    assert problem["cause_cleared_at"] is None
    assert len(world.problems()) == 1


def test_html_in_names_arrives_escaped(world: World, smtp: MailServer) -> None:
    evil = '<img src=x onerror="alert(1)"> & <b>Bakkerij</b>'
    token = world.add_token("Klant <script>")
    world.add_link(11, "CUST-<i>11</i>")
    reach = probe(debtors=[(1, evil)], companies=[(11, 1, evil)])
    world.run({token: (Outcome.VALID, reach)})
    world.run({token: Outcome.NO_SUBSCRIPTION})
    assert len(smtp.received) == 2
    for message in smtp.messages():
        text, html = parts(message)
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt; &amp; &lt;b&gt;Bakkerij&lt;/b&gt;" in html
        assert "<img" not in html
        assert "<script>" not in html
        assert "<b>Bakkerij</b>" not in html
        assert "Klant &lt;script&gt;" in html
        assert evil in text, "plain text shows the name as it is"
    assert_no_secret(smtp, world.secrets)


def test_unreadable_answers_are_one_ops_problem_once_they_last(world: World, smtp: MailServer) -> None:
    tokens = [world.add_token(f"Klant {i}", contacts=[f"klant{i}@example.com"]) for i in range(2)]
    world.run(dict.fromkeys(tokens, (Outcome.VALID, REACH)))
    world.run(dict.fromkeys(tokens, Outcome.UNKNOWN))  # 2 of 7 tokens (the 5 bystanders answer validly)
    assert smtp.tally() == {}, "one run of unreadable answers mails nobody"
    assert [p["stage"] for p in world.problems(state="open")] == ["suspected"]
    world.run(dict.fromkeys(tokens, Outcome.UNKNOWN))
    assert smtp.tally() == {(OPS, "escalated"): 1}, "one problem for operations, nothing to customers"
    assert "Nmbrs answers L1NDA cannot read: 2 of 7 tokens" in smtp.subjects(OPS)[0]
    assert {p["kind"] for p in world.problems(state="open")} == {"unknown_answers"}, "no token problem"
    world.run(dict.fromkeys(tokens, Outcome.UNKNOWN))  # (this world's tokens are unreachable after 30 min)
    assert len(smtp.received) == 1, "still one problem, announced once"
    for _ in range(9):  # readable again: the cause clears, and the problem resolves after the quiet period
        world.run(dict.fromkeys(tokens, (Outcome.VALID, REACH)))
    assert world.problems(state="open") == []
    assert smtp.tally() == {(OPS, "escalated"): 1, (OPS, "resolved"): 1}
