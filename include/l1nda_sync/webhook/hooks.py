"""Writing webhook events inside the engine's transactions (the engine's ApplyHooks and LinkHooks); the run
pipeline (`l1nda_sync.pipeline.compose_hooks`) adds them beside the alert hooks.

Every event names the credential's kind (`soap_token` or `rest_connection`): `kind` of the token in
`token.state_changed`; `from_kind` and `to_kind` of the tokens a link moved between in `link.state_changed` (null
where there is no token), so the platform sees a link move from a SOAP token to a REST connection."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from l1nda_sync.engine.applying import AppliedCheck
from l1nda_sync.engine.breaker import BreakerVerdict
from l1nda_sync.engine.link_rules import LinkChange

if TYPE_CHECKING:
    from psycopg2.extensions import cursor as Cursor


def _insert(cur: Cursor, event: str, payload: dict[str, Any]) -> None:
    cur.execute("INSERT INTO webhook_outbox (event, payload) VALUES (%s, %s::jsonb)",
                (event, json.dumps(payload, default=str)))


class WebhookHooks:
    """Queues `token.state_changed` and `link.state_changed` events; ids and states only, never a secret."""

    def token_applied(self, cur: Cursor, applied: AppliedCheck, *, run_id: int | None, now: datetime) -> None:
        transition = applied.transition
        if not transition.changed_state:
            return
        _insert(cur, "token.state_changed", {
            "token_id": applied.token_id, "label": applied.label, "level": applied.level, "kind": applied.kind.value,
            "from": transition.before.state.value, "to": transition.after.state.value,
            "missing_operation": transition.after.missing_operation, "run_id": run_id, "at": now.isoformat(),
        })

    def breaker_judged(self, cur: Cursor, verdict: BreakerVerdict, *, run_id: int | None, now: datetime) -> None:
        return None  # an operations matter, reported by the alerts, not a state change of the platform's

    def links_changed(self, cur: Cursor, changes: list[LinkChange], *, run_id: int | None, now: datetime) -> None:
        for change in changes:
            _insert(cur, "link.state_changed", {
                "link_id": change.link_id, "from": change.from_state.value, "to": change.to_state.value,
                "from_token_id": change.from_token, "to_token_id": change.to_token, "reason": str(change.reason),
                "from_kind": change.from_kind.value if change.from_kind is not None else None,
                "to_kind": change.to_kind.value if change.to_kind is not None else None,
                "run_id": run_id, "at": now.isoformat(),
            })
