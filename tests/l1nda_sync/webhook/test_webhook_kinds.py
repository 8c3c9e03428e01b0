"""Webhook payloads and run report entries name the credential's kind (pure: a recording cursor, no registry)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from l1nda_sync.engine.applying import AppliedCheck, ApplySummary
from l1nda_sync.engine.link_rules import LinkChange, LinkState, Reason
from l1nda_sync.engine.sync import RunReport
from l1nda_sync.engine.token_state import (
    CheckResult,
    CredentialKind,
    Outcome,
    StatePolicy,
    TokenHealth,
    TokenState,
    decide,
)
from l1nda_sync.webhook.hooks import WebhookHooks

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
REST, SOAP = CredentialKind.REST_CONNECTION, CredentialKind.SOAP_TOKEN


class RecordingCursor:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def execute(self, sql: str, args: tuple[str, str]) -> None:
        assert sql.startswith("INSERT INTO webhook_outbox")
        self.events.append((args[0], json.loads(args[1])))


def revoked_connection() -> AppliedCheck:
    before = TokenHealth(TokenState.INVALID, 1, NOW.replace(hour=11), refusal="invalid",
                         last_valid_at=NOW.replace(hour=8))
    transition = decide(before, CheckResult(Outcome.CONSENT_REVOKED, NOW), StatePolicy())
    assert transition.after.state is TokenState.REVOKED
    return AppliedCheck(1, 5, "Bakkerij Jansen", "debtor", Outcome.CONSENT_REVOKED, transition, None, REST)


CHANGES = [
    LinkChange(7, LinkState.ACTIVE, LinkState.ACTIVE, 5, 2, Reason.FAILOVER, REST, SOAP),
    LinkChange(8, LinkState.ACTIVE, LinkState.SUSPENDED, 5, 5, Reason.REVOKED, REST, REST),
    LinkChange(9, LinkState.ACTIVE, LinkState.ACTIVE, 2, 5, Reason.MOVED_TO_REST, SOAP, REST),
    LinkChange(10, LinkState.PENDING, LinkState.ACTIVE, None, 2, Reason.REACHED, None, SOAP),
]


def test_webhook_events_name_the_credential_kind() -> None:
    cur = RecordingCursor()
    hooks = WebhookHooks()
    hooks.token_applied(cur, revoked_connection(), run_id=3, now=NOW)  # type: ignore[arg-type]
    hooks.links_changed(cur, CHANGES, run_id=3, now=NOW)  # type: ignore[arg-type]
    (event, token), *links = cur.events
    assert event == "token.state_changed"
    assert (token["kind"], token["from"], token["to"]) == ("rest_connection", "invalid", "revoked")
    assert [(e, p["link_id"], p["from_kind"], p["to_kind"], p["reason"]) for e, p in links] == [
        ("link.state_changed", 7, "rest_connection", "soap_token", "failover"),
        ("link.state_changed", 8, "rest_connection", "rest_connection", "revoked"),
        ("link.state_changed", 9, "soap_token", "rest_connection", "moved_to_rest"),
        ("link.state_changed", 10, None, "soap_token", "reached"),
    ]


def test_the_run_report_names_the_credential_kind_and_counts_moves_to_rest() -> None:
    summary = ApplySummary(applied=[revoked_connection()])
    report = RunReport.of_apply(summary, CHANGES, run_id=3, dry_run=False)
    assert report.state_changes == [{"token_id": 5, "label": "Bakkerij Jansen", "kind": "rest_connection",
                                     "from": "invalid", "to": "revoked"}]
    assert [(c["link_id"], c["from_kind"], c["kind"]) for c in report.link_changes] == [
        (7, "rest_connection", "soap_token"), (8, "rest_connection", "rest_connection"),
        (9, "soap_token", "rest_connection"), (10, None, "soap_token")]
    assert (report.links_activated, report.links_failed_over, report.links_suspended, report.links_moved_to_rest) == (
        1, 1, 1, 1)
    assert "links moved to REST connections" in report.table()
    assert RunReport.from_summary(report.to_dict()).links_moved_to_rest == 1


def test_a_soap_only_report_has_no_rest_line() -> None:
    report = RunReport.of_apply(ApplySummary(), [CHANGES[3]], run_id=3, dry_run=False)
    assert "REST" not in report.table()
    assert report.link_changes[0]["kind"] == "soap_token"


def test_a_suspected_withdrawn_consent_is_reported_as_such() -> None:
    transition = decide(TokenHealth(TokenState.ACTIVE, last_valid_at=NOW.replace(hour=8)),
                        CheckResult(Outcome.CONSENT_REVOKED, NOW), StatePolicy())
    rest = AppliedCheck(1, 5, "conn", "debtor", Outcome.CONSENT_REVOKED, transition, None, REST)
    soap = AppliedCheck(2, 6, "tok", "debtor", Outcome.INVALID, transition, None, SOAP)
    report = RunReport.of_apply(ApplySummary(applied=[rest, soap]), [], run_id=3, dry_run=False)
    assert [s["suspected"] for s in report.suspected] == ["consent_revoked", "invalid"]
