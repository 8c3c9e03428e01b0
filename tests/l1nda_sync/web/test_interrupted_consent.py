"""A consent interrupted after its code was exchanged (Ctrl-C in `connections finish`, a shutdown) stores
nothing and still revokes the grant at Nmbrs: no consent L1NDA never stored stays live with L1NDA's app. Real
simulator and registry; the interrupt is raised where the connection is saved, just before the commit."""

from __future__ import annotations

import json
from typing import Any

import pytest

from l1nda_sync import consent
from l1nda_sync.registry import db
from tests.l1nda_sync.web.conftest import APP_ID, WebStack
from tests.l1nda_sync.web.helpers import browser, cli, consent_at_nmbrs, counts, rows

DEGRAAF = "salaris@bakkerij-degraaf.example"


def _live(stack: WebStack) -> int:
    return sum(c["live_refresh_tokens"] for c in stack.sim.admin.consents()
               if c["username"] == DEGRAAF and c["client_id"] == APP_ID)


def test_an_interrupt_after_the_exchange_revokes_the_grant_and_writes_nothing(web_stack: WebStack) -> None:
    code, out = cli("connections", "start", "--customer", "CUST-DEGRAAF", "--contact", "jan@bakkerij-degraaf.example",
                    "--json")
    assert code == 0, out
    callback_url = consent_at_nmbrs(browser(), json.loads(out)["url"], DEGRAAF)
    before, live_before = counts(web_stack), _live(web_stack)

    def dies(*_: Any) -> None:
        raise KeyboardInterrupt

    app = web_stack.settings.rest_app()
    assert app is not None
    conn = db.connect(web_stack.database_url)
    try:
        with pytest.raises(KeyboardInterrupt) as interrupted:
            consent.finish(conn, web_stack.settings, app, consent.read_callback(callback_url), actor="test",
                           saved=dies)
    finally:
        conn.close()
    assert "its grant was revoked at Nmbrs" in "\n".join(interrupted.value.__notes__)
    assert counts(web_stack) == before
    assert rows(web_stack, "SELECT used_at FROM rest_authorizations") == [(None,)]
    assert _live(web_stack) == live_before, "the refresh token the exchange gave is dead again"
    assert web_stack.sim.admin.call_count(service="Identity", operation="revocation") >= 1
