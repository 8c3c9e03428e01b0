"""`consent_revoked`: a REST connection's consent withdrawn in Nmbrs (or expired). The decisions (pure), every
mail it writes (event x audience x language), and the story end to end over the registry with the real hooks,
sweep and drain: silent on one answer, mailed once confirmed, links fail over, recovery after the quiet period."""

from __future__ import annotations

from typing import Any

import pytest

from l1nda_sync.alerts.problems import CUSTOMER_KINDS, TOKEN_KINDS, Cause, Event, Kind, Stage, audiences, token_causes
from l1nda_sync.alerts.rendering import render
from l1nda_sync.engine.token_state import CredentialKind, Outcome, TokenState
from tests.l1nda_sync.alerts.harness import HOUR, OPS, MailServer, World, parts, probe
from tests.l1nda_sync.alerts.test_rendering import context

REST = CredentialKind.REST_CONNECTION


# -- decisions ------------------------------------------------------------------------------------------------
def test_a_rest_connection_has_consent_revoked_instead_of_revoked_or_rejected() -> None:
    assert Kind.CONSENT_REVOKED in TOKEN_KINDS
    assert Kind.CONSENT_REVOKED in CUSTOMER_KINDS
    assert audiences(Kind.CONSENT_REVOKED) == ("ops", "customer")
    suspected = token_causes(TokenState.INVALID, None, REST)
    assert suspected is not None
    assert suspected[Kind.CONSENT_REVOKED] == Cause(True, Stage.SUSPECTED)
    assert not suspected[Kind.REVOKED].present
    revoked = token_causes(TokenState.REVOKED, None, REST)
    assert revoked is not None
    assert revoked[Kind.CONSENT_REVOKED] == Cause(True, Stage.CONFIRMED)
    assert not revoked[Kind.REVOKED].present
    rejected = token_causes(TokenState.REJECTED, None, REST)
    assert rejected is not None
    assert rejected[Kind.CONSENT_REVOKED].present
    assert rejected[Kind.CONSENT_REVOKED].detail == {"never_worked": True}
    assert not rejected[Kind.REJECTED].present


@pytest.mark.parametrize("state", list(TokenState))
def test_a_soap_token_never_has_consent_revoked_and_keeps_its_kinds(state: TokenState) -> None:
    soap = token_causes(state, "x")
    assert soap == token_causes(state, "x", CredentialKind.SOAP_TOKEN)
    if soap is not None:
        assert not soap[Kind.CONSENT_REVOKED].present


@pytest.mark.parametrize("state", [TokenState.RIGHTS_MISSING, TokenState.NO_SUBSCRIPTION, TokenState.UNREACHABLE,
                                   TokenState.ACTIVE, TokenState.DISABLED, TokenState.REMOVED, TokenState.NEW])
def test_other_states_of_a_connection_have_the_kinds_of_a_token(state: TokenState) -> None:
    assert token_causes(state, "company.info.read", REST) == token_causes(state, "company.info.read")


# -- mails ----------------------------------------------------------------------------------------------------
def rest_context(*, never_worked: bool = False, mailed: bool = True) -> dict[str, Any]:
    ctx = context()
    ctx["problem"]["kind"] = "consent_revoked"
    ctx["token"].update(kind="rest_connection", customer_ref="CUST-7", username="hr@jansen.example", domain=None,
                        hint="…r3fr")
    ctx["detail"] = {"never_worked": True} if never_worked else {}
    if not mailed:
        ctx["customer"] = {"mailed": False, "contacts": []}
    return ctx


CASES = [(e, a, lang) for e in Event for a in audiences(Kind.CONSENT_REVOKED) for lang in ("en", "nl")]
CONSENT_WORDS = {"en": "consent", "nl": "toestemming"}


@pytest.mark.parametrize(("event", "audience", "lang"), CASES)
@pytest.mark.parametrize("never_worked", [False, True], ids=["withdrawn", "never_worked"])
def test_every_consent_revoked_mail_renders(event: Event, audience: str, lang: str, never_worked: bool) -> None:
    mail = render("consent_revoked", event.value, audience, lang, rest_context(never_worked=never_worked))
    assert mail.subject.startswith("[L1NDA] ")
    assert "Bakkerij Jansen (…r3fr)" in mail.subject
    assert mail.html.lstrip().startswith("<!DOCTYPE html>")
    assert "\n\n\n" not in mail.text
    assert "hr@jansen.example" in mail.text, "who consented"
    assert ("Connection" if lang == "en" else "Koppeling") in mail.text, "a connection, not a token"
    assert "API token" not in mail.text, "no token steps for a connection"
    assert "API-token" not in mail.text
    if event is Event.RESOLVED:
        assert ("works again" if lang == "en" else "werkt weer") in mail.subject + mail.text
        return
    assert CONSENT_WORDS[lang] in mail.subject.lower()
    assert "C-1" in mail.text, "affected links are listed"
    if audience == "customer":
        assert "l1nda-sync" not in mail.text, "no operator commands for customers"
        assert ("do not reply with one" if lang == "en" else "stuur er ook geen mee") in mail.text
        assert ("Allow" if lang == "en" else "Toestaan") in mail.text
        assert ("Allow" if lang == "en" else "Toestaan") in mail.html
        for asking in ("send it to us", "stuur het ons", "Activeer L1NDA token", "Nieuw account"):
            assert asking not in mail.text, "never ask for a token by reply"
    else:
        assert ("l1nda-sync connections start --customer CUST-7 --contact piet@jansen.example --language nl"
                in mail.text)
        assert "l1nda-sync connections finish --callback-url URL" in mail.text
        assert "l1nda-sync connections start --customer CUST-7" in mail.html
        assert "tokens replace" not in mail.text
        assert "l1nda-sync problems mute 12" in mail.text


@pytest.mark.parametrize("lang", ["en", "nl"])
def test_ops_without_a_customer_contact_are_told_to_reach_the_customer(lang: str) -> None:
    mail = render("consent_revoked", "escalated", "ops", lang, rest_context(mailed=False))
    assert "--contact EMAIL" in mail.text
    assert ("contact the customer yourself" if lang == "en" else "neem zelf contact op") in mail.text


@pytest.mark.parametrize("lang", ["en", "nl"])
def test_a_connection_that_never_worked_says_so(lang: str) -> None:
    text = render("consent_revoked", "escalated", "customer", lang, rest_context(never_worked=True)).text
    assert ("never answered validly" if lang == "en" else "werkte nog nooit") in text


@pytest.mark.parametrize("kind", ["revoked", "rights_missing", "no_subscription", "unreachable", "access_lost"])
def test_other_mails_about_a_connection_show_it_as_a_connection(kind: str) -> None:
    ctx = {**rest_context(), "detail": context()["detail"]}
    text = render(kind, "opened", "ops", "en", ctx).text
    assert "Consent by:     hr@jansen.example" in text
    assert "Kind:           REST connection (OAuth2 consent)" in text


# -- end to end over the registry ---------------------------------------------------------------------------
CUSTOMER = "piet@klant.example"
REACH = probe(debtors=[(1, "Jansen Holding")], companies=[(11, 1, "Bakkerij Jansen"), (12, 1, "Jansen Logistiek")])
ONLY_11 = probe(debtors=[(1, "Jansen Holding")], companies=[(11, 1, "Bakkerij Jansen")])


def make_connection(world: World, token_id: int, customer_ref: str = "CUST-REF") -> None:
    """Turn a registered token into a REST connection, as `connections finish` stores one (migration 0007)."""
    with world.conn, world.conn.cursor() as cur:
        cur.execute("""UPDATE tokens SET kind = 'rest_connection', level = 'debtor', token_ciphertext = NULL,
                              username = 'hr@jansen.example', token_hint = '…r3fr' WHERE id = %s""", (token_id,))
        cur.execute("""INSERT INTO rest_connections (token_id, customer_ref, user_id, user_email)
                       VALUES (%s, %s, gen_random_uuid(), 'hr@jansen.example')""", (token_id, customer_ref))


def rest_witnesses(world: World, count: int = 2) -> None:
    """Healthy REST connections checked in every run beside the SOAP bystanders: the breaker judges REST
    connections apart from SOAP tokens, and one failing connection alone cannot tell a withdrawal from an
    identity server refusing everyone."""
    witnesses = [world.add_token(f"rest witness {n}") for n in range(count)]
    for n, token_id in enumerate(witnesses):
        make_connection(world, token_id, customer_ref=f"WITNESS-{n}")
    world.bystander_ids = [world.add_token(f"bystander {n}", contacts=(f"bystander{n}@klant.example",))
                           for n in range(world.bystanders)] + witnesses


def links_of(world: World) -> list[tuple[int, str, int | None, str | None]]:
    with world.conn, world.conn.cursor() as cur:
        cur.execute("SELECT company_id, state, token_id, reason FROM links ORDER BY company_id")
        return cur.fetchall()


def test_a_withdrawn_consent_is_confirmed_mailed_fails_over_and_recovers(world: World, smtp: MailServer) -> None:
    soap = world.add_token("Jansen accountant", level="accountant", contacts=("acc@kantoor.example",))
    conn = world.add_token("Bakkerij Jansen", contacts=(CUSTOMER,), language="nl")
    make_connection(world, conn)
    rest_witnesses(world)
    world.add_link(11, "CUST-REF")  # a REST connection serves its own customer's links only
    world.add_link(12, "CUST-REF")
    world.run({soap: (Outcome.VALID, ONLY_11), conn: (Outcome.VALID, REACH)})
    assert [(c, s, t) for c, s, t, _ in links_of(world)] == [(11, "active", conn), (12, "active", conn)], (
        "a REST connection is preferred")

    world.run({conn: Outcome.CONSENT_REVOKED})
    assert smtp.received == [], "one refusal: suspected, nobody mailed"
    [problem] = world.problems(state="open")
    assert (problem["kind"], problem["stage"]) == ("consent_revoked", "suspected")
    assert [(c, s, t) for c, s, t, _ in links_of(world)] == [(11, "active", conn), (12, "active", conn)]

    world.run({conn: Outcome.CONSENT_REVOKED})  # ten minutes later: confirmed
    assert smtp.tally() == {(OPS, "escalated"): 1, (CUSTOMER, "escalated"): 1}
    assert [p["kind"] for p in world.problems(state="open")] == ["consent_revoked"], "never 'revoked' as well"
    assert links_of(world) == [(11, "active", soap, "failover"), (12, "suspended", conn, "revoked")]
    customer_text, customer_html = parts(smtp.messages(CUSTOMER)[0])
    assert "Toestaan" in customer_text
    assert "Toestaan" in customer_html
    assert "l1nda-sync" not in customer_text
    ops_text = parts(smtp.messages(OPS)[0])[0]
    assert "l1nda-sync connections start --customer CUST-REF --contact piet@klant.example --language nl" in ops_text
    assert smtp.subjects(OPS)[0].startswith("[L1NDA] Consent for L1NDA in Nmbrs withdrawn or expired: Bakkerij")

    for _ in range(3):
        world.run({conn: Outcome.CONSENT_REVOKED})
    assert len(smtp.received) == 2, "no mail on the runs after"

    world.run({conn: (Outcome.VALID, REACH)})  # consented again
    assert links_of(world) == [(11, "active", conn, "moved_to_rest"), (12, "active", conn, "reached")]
    for _ in range(5):
        world.run({conn: (Outcome.VALID, REACH)})
    assert len(smtp.received) == 2, "nothing during the quiet period"
    world.run({conn: (Outcome.VALID, REACH)})
    assert world.problems(state="open") == []
    assert smtp.tally() == {(OPS, "escalated"): 1, (CUSTOMER, "escalated"): 1, (OPS, "resolved"): 1,
                            (CUSTOMER, "resolved"): 1}
    assert "Nmbrs-koppeling werkt weer" in smtp.subjects(CUSTOMER)[-1]


def test_a_suspicion_that_clears_mails_nobody(world: World, smtp: MailServer) -> None:
    conn = world.add_token("Bakkerij Jansen")
    make_connection(world, conn)
    rest_witnesses(world)
    world.add_link(11, "CUST-REF")
    world.run({conn: (Outcome.VALID, REACH)})
    world.run({conn: Outcome.CONSENT_REVOKED})
    world.run({conn: (Outcome.VALID, REACH)})
    world.run({conn: (Outcome.VALID, REACH)}, step=2 * HOUR)
    world.run({conn: (Outcome.VALID, REACH)})
    assert smtp.received == []
    assert world.problems(state="open") == []


# -- a REST connection's missing scope is rights_missing, and its mails say so -----------------------------------
SCOPE_CASES = [(e, a, lang) for e in Event for a in audiences(Kind.RIGHTS_MISSING) for lang in ("en", "nl")]


@pytest.mark.parametrize(("event", "audience", "lang"), SCOPE_CASES)
def test_a_missing_scope_mail_asks_for_a_new_consent_not_an_api_template(event: Event, audience: str,
                                                                         lang: str) -> None:
    ctx = {**rest_context(), "detail": {"missing_operation": "company.info.read"}}
    mail = render("rights_missing", event.value, audience, lang, ctx)
    assert "Bakkerij Jansen (…r3fr)" in mail.subject
    for soap_words in ("API user template", "API-gebruikerstemplate", "1002", "API token", "API-token"):
        assert soap_words not in mail.text
    assert "\n\n\n" not in mail.text
    if event is Event.RESOLVED:
        return
    assert "company.info.read" in mail.subject
    assert "company.info.read" in mail.text
    assert "company.info.read" in mail.html
    if audience == "customer":
        assert "l1nda-sync" not in mail.text
        assert ("Allow" if lang == "en" else "Toestaan") in mail.text
    else:
        assert "l1nda-sync connections start --customer CUST-7" in mail.text


# -- no_subscription, unreachable and access_lost about a connection say "connection", never "API token" -----------
WORDING_KINDS = (Kind.NO_SUBSCRIPTION, Kind.UNREACHABLE, Kind.ACCESS_LOST)
WORDING_CASES = [(k, e, a, lang) for k in WORDING_KINDS for e in Event for a in audiences(k) for lang in ("en", "nl")]
CONNECTION_WORDS = {"en": "the connection", "nl": "de rest-koppeling"}


@pytest.mark.parametrize(("kind", "event", "audience", "lang"), WORDING_CASES)
def test_mails_about_a_connection_call_it_a_connection(kind: Kind, event: Event, audience: str, lang: str) -> None:
    ctx = {**rest_context(), "detail": context()["detail"]}
    ctx["problem"] = {**ctx["problem"], "kind": kind.value}
    mail = render(kind.value, event.value, audience, lang, ctx)
    for soap_words in ("API token", "API-token", "1004", "debtor tags", "debiteurtags", "environment \u201c?",
                       'environment "?', 'omgeving "?'):
        assert soap_words not in mail.text, soap_words
        assert soap_words not in mail.html, soap_words
    assert " token " not in mail.subject, "the subject calls it a connection"
    assert "\n\n\n" not in mail.text
    body = "\n\n".join(mail.text.split("\n\n")[1:3])  # after the greeting (and a reminder's first line)
    assert CONNECTION_WORDS[lang] in body.lower(), body
    if event is not Event.RESOLVED and kind is Kind.NO_SUBSCRIPTION:
        assert "40304" in mail.text
        assert "40304" in mail.html
    if audience == "customer":
        assert "l1nda-sync" not in mail.text
        if event is not Event.RESOLVED:
            assert ("no new consent is needed" if lang == "en" else "opnieuw toestemming geven is niet nodig") in (
                mail.text)
    if kind is Kind.ACCESS_LOST and event is not Event.RESOLVED:
        assert "l1nda-sync connections start --customer CUST-7" in mail.text
        assert "l1nda-sync connections start --customer CUST-7" in mail.html


@pytest.mark.parametrize(("kind", "event", "audience", "lang"), WORDING_CASES)
def test_a_soap_token_without_a_kind_renders_as_one_with_kind_soap_token(kind: Kind, event: Event, audience: str,
                                                                         lang: str) -> None:
    """Older rows and contexts have no kind: they are SOAP tokens, and their mails are the SOAP ones."""
    untyped = context()
    typed = context()
    typed["token"]["kind"] = "soap_token"
    assert render(kind.value, event.value, audience, lang, untyped) == render(kind.value, event.value, audience,
                                                                             lang, typed)
    text = render(kind.value, event.value, audience, lang, untyped).text
    assert ("API token" if lang == "en" else "API-token") in text


@pytest.mark.parametrize("lang", ["en", "nl"])
def test_the_connection_block_keeps_its_columns(lang: str) -> None:
    text = render("unreachable", "opened", "ops", lang, rest_context()).text
    consent_line = next(line for line in text.splitlines() if "hr@jansen.example" in line and ":" in line)
    assert consent_line.split(":", 1)[1].startswith(" "), consent_line


# -- a token L1NDA lost (a refresh whose answer never arrived), not the customer's withdrawal --------------------
def test_a_connection_whose_token_l1nda_lost_carries_it_in_the_cause_detail() -> None:
    revoked = token_causes(TokenState.REVOKED, None, REST, lost_by_l1nda=True)
    assert revoked is not None
    assert revoked[Kind.CONSENT_REVOKED] == Cause(True, Stage.CONFIRMED, detail={"lost_by_l1nda": True})
    rejected = token_causes(TokenState.REJECTED, None, REST, lost_by_l1nda=True)
    assert rejected is not None
    assert rejected[Kind.CONSENT_REVOKED].detail == {"never_worked": True, "lost_by_l1nda": True}
    assert token_causes(TokenState.REVOKED, None, lost_by_l1nda=True) == token_causes(TokenState.REVOKED)


@pytest.mark.parametrize(("audience", "lang"), [(a, lang) for a in ("ops", "customer") for lang in ("en", "nl")])
def test_a_lost_token_mail_says_l1nda_lost_it_not_that_the_customer_withdrew(audience: str, lang: str) -> None:
    ctx = rest_context()
    ctx["detail"] = {"lost_by_l1nda": True}
    mail = render("consent_revoked", "escalated", audience, lang, ctx)
    lost = "L1NDA lost the token" if lang == "en" else "L1NDA is het token"
    not_customer = "not caused by the customer" if lang == "en" else "ligt niet aan de klant"
    withdrew = "was withdrawn or has expired" if lang == "en" else "is ingetrokken of verlopen"
    for body in (mail.text, mail.html):
        assert lost in body
        assert not_customer in body
        assert withdrew not in body
    assert CONSENT_WORDS[lang] in mail.text.lower()
    assert ("L1NDA lost" if lang == "en" else "L1NDA is haar") in mail.subject
    assert ("withdrawn" if lang == "en" else "ingetrokken") not in mail.subject, "the subject does not blame them"
