"""The mail templates: every kind, event, audience and language renders; escaping; subjects; the steps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jinja2
import pytest

from l1nda_sync.alerts.problems import Event, Kind, audiences
from l1nda_sync.alerts.rendering import one_line, render, when

AT = datetime(2026, 5, 3, 12, 5, tzinfo=UTC)


def _group(entries: list[dict[str, Any]], count: int | None = None) -> dict[str, Any]:
    count = len(entries) if count is None else count
    return {"count": count, "entries": entries, "more": count - len(entries)}


def context(*, level: str = "debtor", name: str = "Bakkerij Jansen", companies: int = 1) -> dict[str, Any]:
    return {
        "problem": {"id": 12, "kind": "revoked", "opened_at": AT, "last_seen_at": AT, "cause_cleared_at": AT,
                    "resolved_at": None, "escalated_at": None, "last_notified_at": AT, "muted": False},
        "token": {"id": 7, "label": name, "username": "payroll@jansen.example", "level": level, "hint": "…a7c3",
                  "domain": "jansen", "state": "revoked", "contact_emails": ["piet@jansen.example"],
                  "contact_language": "nl", "first_invalid_at": AT, "first_transient_at": AT, "last_valid_at": AT},
        "detail": {"missing_operation": "CompanyService.List_GetByDebtor", "run_id": 4, "checked": 10,
                   "failing": 8, "share_pct": 80, "failure": "invalid", "unknown": 3},
        "affected": {
            "debtors": _group([{"id": 1, "number": "D1", "name": name}]),
            "companies": _group([{"id": 5, "number": 55, "name": name, "debtor_name": "Holding"}], companies),
            "links": _group([{"id": 9, "customer_ref": "C-1", "company_id": 5, "company_name": name,
                              "state": "suspended", "reason": "tag_or_filter"}]),
        },
        "customer": {"mailed": True, "contacts": ["piet@jansen.example"]},
        "support": "support@l1nda.example",
        "reminder_hours": "24",
    }


# link_pending has its own subject and context (alerts/link_pending.py; tests/l1nda_sync/cli/test_link_pending.py);
# so have the campaign's kinds (migration/campaign_running.py; tests/l1nda_sync/migration/test_campaign_story.py).
OWN_RENDERER = {Kind.LINK_PENDING, Kind.MIGRATION_INVITE, Kind.MIGRATION_ACCOUNTANT, Kind.MIGRATION_WEEKLY}
CASES = [(k, e, a, lang) for k in Kind if k not in OWN_RENDERER
         for e in Event for a in audiences(k) for lang in ("en", "nl")]
# Kinds about the provider, the delivery or the whole cutover, not about one token.
NOT_A_TOKEN = {Kind.PROVIDER_INCIDENT, Kind.UNKNOWN_ANSWERS, Kind.OUTBOX_STUCK, Kind.WEBHOOK_FAILING,
               Kind.SOAP_CUTOVER}
SOAP_END = datetime(2027, 2, 28, 23, 0, tzinfo=UTC)
# What the cutover records (migration/running.py): a soap_ended notice's and the soap_cutover summary's detail.
CUTOVER_DETAIL = {
    "soap_end": SOAP_END, "at": SOAP_END, "level": "debtor", "customers": ["C-1"], "links": [9],
    "retired": 3, "moved": 4, "suspended": 5,
    "notices": [{"token_id": 7, "label": "Bakkerij Jansen", "level": "debtor", "customers": ["C-1"], "links": [9],
                 "mailed": True},
                {"token_id": 8, "label": "Kapsalon Anna", "level": "debtor", "customers": ["C-2"], "links": [10, 11],
                 "mailed": False}],
}


@pytest.mark.parametrize(("kind", "event", "audience", "lang"), CASES)
def test_every_mail_renders_with_its_essentials(kind: Kind, event: Event, audience: str, lang: str) -> None:
    ctx = context()
    if kind in (Kind.SOAP_ENDED, Kind.SOAP_CUTOVER):
        ctx["detail"] = {**ctx["detail"], **CUTOVER_DETAIL}
    mail = render(kind.value, event.value, audience, lang, ctx)
    assert mail.subject.startswith("[L1NDA] ")
    assert "\n" not in mail.subject
    assert mail.html.lstrip().startswith("<!DOCTYPE html>")
    assert mail.text.endswith("\n")
    assert "\n\n\n" not in mail.text
    if kind not in NOT_A_TOKEN:
        assert "Bakkerij Jansen (…a7c3)" in mail.subject, "the subject names the token, masked"
        assert "…a7c3" in mail.text
        assert "payroll@jansen.example" in mail.text, "the login e-mail"
    month = "May" if lang == "en" else "mei"
    assert f"3 {month} 2026 14:05 CEST" in mail.text, "since when, in Amsterdam time"
    if event is not Event.RESOLVED and kind not in NOT_A_TOKEN:
        assert "C-1" in mail.text, "affected links are listed"
    if audience == "ops":
        assert "l1nda-sync problems" in mail.text or event is Event.RESOLVED
    else:
        assert "l1nda-sync" not in mail.text, "no operator commands for customers"


@pytest.mark.parametrize("lang", ["en", "nl"])
def test_customer_steps_for_a_new_token_follow_the_level(lang: str) -> None:
    debtor = render("revoked", "escalated", "customer", lang, context(level="debtor")).text
    for step in ("Nieuw account", "Opslaan", "API token", "Toevoegen", "support@l1nda.example"):
        assert step in debtor
    accountant = render("revoked", "escalated", "customer", lang, context(level="accountant")).text
    assert "Activeer L1NDA token" in accountant
    assert "Nieuw account" not in accountant


def test_rights_missing_names_the_operation_in_both_languages() -> None:
    for lang, verb in (("en", "Switch on"), ("nl", "Zet aan")):
        text = render("rights_missing", "opened", "customer", lang, context()).text
        assert f"{verb}: CompanyService \u203a List_GetByDebtor" in text


def test_html_escapes_names_and_text_keeps_them() -> None:
    evil = '<script>alert("x")</script> & Zn'
    mail = render("access_lost", "opened", "ops", "en", context(name=evil))
    assert "<script>" not in mail.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Zn" in mail.html
    assert evil in mail.text


def test_lists_are_capped_and_counted() -> None:
    mail = render("revoked", "escalated", "ops", "en", context(companies=57))
    assert "Companies: 57" in mail.text
    assert "… and 56 more" in mail.text
    assert "… en nog 56" in render("revoked", "escalated", "ops", "nl", context(companies=57)).text


def test_subject_reads_well_and_cannot_break_headers() -> None:
    ctx = context(name="Bakkerij\r\nBcc: evil@example.com")
    subject = render("revoked", "escalated", "ops", "en", ctx).subject
    assert subject == "[L1NDA] Nmbrs token revoked: Bakkerij Bcc: evil@example.com (…a7c3)"
    assert one_line("a\n\tb" + "x" * 300, limit=10) == "a bxxxxxx…"
    reminder = render("no_subscription", "reminder", "ops", "nl", context()).subject
    assert reminder == "[L1NDA] Herinnering \u2013 Nmbrs-abonnement niet geldig voor token Bakkerij Jansen (…a7c3)"


def test_dates_show_amsterdam_time_with_the_zone() -> None:
    assert when(datetime(2026, 1, 5, 7, 30, tzinfo=UTC), "nl") == "5 januari 2026 08:30 CET"
    assert when(None, "en") == "-"


def test_a_missing_value_fails_loudly_instead_of_sending_half_a_mail() -> None:
    ctx = context()
    del ctx["token"]["hint"]
    with pytest.raises(jinja2.UndefinedError):
        render("revoked", "escalated", "ops", "en", ctx)
    with pytest.raises(ValueError, match="language 'de'"):
        render("revoked", "escalated", "ops", "de", context())


@pytest.mark.parametrize("lang", ["en", "nl"])
def test_unknown_answers_and_the_incident_say_what_failed(lang: str) -> None:
    unknown = render("unknown_answers", "opened", "ops", lang, context())
    assert "3" in unknown.subject
    assert "3 of 10" in unknown.subject or "3 van 10" in unknown.subject
    assert "(80%)" in unknown.text
    incident = render("provider_incident", "opened", "ops", lang, context())
    assert "Invalid Authentication (1001)" in incident.subject


def test_the_dutch_soap_cutover_mail_is_dutch_and_names_the_tokens_to_tell_by_hand() -> None:
    ctx = {**context(), "token": None, "detail": {**context()["detail"], **CUTOVER_DETAIL}}
    mail = render("soap_cutover", "opened", "ops", "nl", ctx)
    assert mail.subject == "[L1NDA] SOAP-overstap uitgevoerd: 3 token(s) buiten gebruik, 5 koppeling(en) opgeschort"
    assert "1 maart 2027 00:00 CET" in mail.text, "soap_end in Amsterdam time"
    assert "3 SOAP-token(s)\nbuiten gebruik gesteld, 4 koppeling(en) naar REST-koppelingen verplaatst" in mail.text
    assert "token 7 (Bakkerij Jansen, debtor): C-1; 1 koppeling(en)\n" in mail.text
    assert "token 8 (Kapsalon Anna, debtor): C-2; 2 koppeling(en); GEEN CONTACTPERSOON, licht hen zelf in" in mail.text
    assert "Wat te doen" in mail.text
    assert "l1nda-sync migration status" in mail.text
    assert "geen contactpersoon, licht hen zelf in</strong>" in mail.html
    for english in ("cutover ran", "retired", "What to do", "tell them yourself"):
        assert english not in mail.text
        assert english not in mail.html
    resolved = render("soap_cutover", "resolved", "ops", "nl", ctx)
    assert resolved.subject == "[L1NDA] Opgelost \u2013 Geen koppeling meer opgeschort voor soap_ended"
    assert "Wat te doen" not in resolved.text
