"""Scale: a run that breaks hundreds of tokens at once stays one problem (and one mail per audience) per token,
and hooks, sweep and drain stay fast. Prints the measured times (pytest -s)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from l1nda_sync.alerts.outbox import drain
from l1nda_sync.alerts.sweep import sweep
from l1nda_sync.engine.applying import apply_pending
from l1nda_sync.engine.token_state import Outcome
from tests.l1nda_sync.alerts.harness import OPS, MailServer, World, probe, test_settings

TOKENS = 200


@pytest.mark.slow
def test_two_hundred_tokens_losing_a_right_at_once(conn: Any, smtp: MailServer, fernet_keys: list[str]) -> None:
    # Every token losing a right at once would trip the breaker (provider-wide): this measures the alert side
    # at scale, so the breaker is held closed.
    world = World(conn, test_settings(breaker_share=1.0))
    from l1nda_sync.registry.tokens import NewToken, TokenStore

    store = TokenStore.from_settings()
    ids = []
    with conn:
        for i in range(TOKENS):
            new = NewToken.validate(label=f"Klant {i}", level="debtor", username=f"api{i}@klant.example",
                                    token=f"{i:04d}" + "ab" * 14, contacts=[f"c{i}@klant.example"], language="nl")
            ids.append(store.add(conn, new, actor="test").id)
    world.secrets = [f"{i:04d}" + "ab" * 14 for i in range(TOKENS)]
    for i in range(TOKENS):
        world.add_link(1000 + i, f"CUST-{i}")
    reach = {t: (Outcome.VALID, probe([(i, f"Debiteur {i}")], [(1000 + i, i, f"Bedrijf {i}")]))
             for i, t in enumerate(ids)}
    world.run(reach, send=False)

    broken = {t: (Outcome.RIGHTS_MISSING, "DebtorService.List_GetAll") for t in ids}
    started = time.perf_counter()
    world.run(broken, send=False)  # opens 200 problems, renders and queues 400 mails
    opening = time.perf_counter() - started
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM outbox")
        assert cur.fetchone()[0] == 2 * TOKENS

    started = time.perf_counter()
    world.run(broken, send=False)  # the same again: every hook call finds its problem open
    again = time.perf_counter() - started
    t0 = time.perf_counter()
    swept = sweep(conn, world.now, world.settings)
    t_sweep = time.perf_counter() - t0
    t0 = time.perf_counter()
    sent = drain(conn, world.now, world.settings)
    t_drain = time.perf_counter() - t0
    print(f"\n{TOKENS} tokens: run that opens them all {opening:.2f}s, repeat run {again:.2f}s, sweep {t_sweep:.2f}s, "
          f"drain of {sent['sent']} mails {t_drain:.2f}s ({t_drain / max(1, sent['sent']) * 1000:.1f} ms/mail)")
    assert swept.get("open") == TOKENS
    assert sent["sent"] == 2 * TOKENS
    assert smtp.tally()[(OPS, "opened")] == TOKENS
    assert len(world.problems(state="open")) == TOKENS

    # Measure the cost of the hooks alone: apply the same checks again without them.
    with conn, conn.cursor() as cur:
        cur.execute("INSERT INTO checks (token_id, checked_at, outcome, missing_operation) "
                    "SELECT id, %s, 'rights_missing', 'DebtorService.List_GetAll' FROM tokens", (world.now,))
    t0 = time.perf_counter()
    apply_pending(conn, policy=world.policy, now=lambda: world.now)
    bare = time.perf_counter() - t0
    print(f"apply of {TOKENS} checks without hooks {bare:.2f}s")
    assert opening < 60
    assert again < 30, "hooks stay cheap"
