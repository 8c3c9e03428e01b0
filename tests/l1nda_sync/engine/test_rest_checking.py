"""`rest_checking._judged`: a resolved REST probe judged against the stored one, read in parts as `load_tokens`
reads it. A stored probe that cannot be read is that connection's `unknown`, never the batch's failure (every
check of the batch is stored in the same transaction); a falsy one is no stored probe."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from l1nda_sync.engine.checking import CheckRecord, TokenToCheck
from l1nda_sync.engine.rest_checking import _judged
from l1nda_sync.engine.token_state import Outcome, StatePolicy
from l1nda_sync.nmbrs import Company, Probe

AT = datetime(2026, 12, 2, 9, tzinfo=UTC)
COMPANIES = tuple(Company(n, n, f"Company {n}", "Month", None, None) for n in range(1, 21))
PROBE = Probe(None, "", (), COMPANIES, 2, AT, True, None)
RECORD = CheckRecord(7, AT, Outcome.VALID, None, None, None, 1, 2, None, debtors=0, companies=len(COMPANIES))


def connection(head: Any, companies: Any = None, *, count: int | None = None) -> TokenToCheck:
    """As `load_tokens` reads it: the companies as JSON text (a str is that text) and their count."""
    text = companies if isinstance(companies, str) or companies is None else json.dumps(companies)
    counted = len(companies) if count is None and isinstance(companies, list) else count
    return TokenToCheck(7, "rest", None, head, None, kind="rest_connection",
                        stored_records=(None, text, None, counted))


def test_the_stored_probe_read_in_parts_judges_as_the_whole() -> None:
    stored = PROBE.to_dict()
    judged = _judged(RECORD, connection({"domain": ""}, stored["companies"]), PROBE, StatePolicy())
    assert (judged.outcome, judged.unchanged, judged.probe) == (Outcome.VALID, True, None)
    one_more = [*stored["companies"], {"id": 99, "number": 99, "period": "Month"}]
    changed = _judged(RECORD, connection({}, one_more), PROBE, StatePolicy())
    assert (changed.outcome, changed.unchanged, changed.probe) == (Outcome.VALID, False, stored)


DEEP = "[" * 200_000 + "]" * 200_000  # a list nested deeper than the JSON parser goes (as text)


@pytest.mark.parametrize("damaged", [[{"name": "no id"}] * 200, [1, 2], {"id": 5}, DEEP],
                         ids=["no id", "scalars", "an object", "too deep"])
def test_a_stored_probe_that_cannot_be_read_is_unknown_not_a_drop_nor_a_failure(damaged: Any) -> None:
    judged = _judged(RECORD, connection({}, damaged, count=200), PROBE, StatePolicy())
    assert judged.outcome is Outcome.UNKNOWN
    assert "a stored probe is not readable" in (judged.detail or "")
    assert (judged.probe, judged.rest_reach) == (None, None)


@pytest.mark.parametrize("head", [[PROBE.to_dict()], "text", 7])
def test_a_stored_probe_that_is_not_an_object_is_unknown(head: Any) -> None:
    judged = _judged(RECORD, connection(head), PROBE, StatePolicy())
    assert judged.outcome is Outcome.UNKNOWN
    assert "must be a JSON object" in (judged.detail or "")


@pytest.mark.parametrize("head", [None, {}, [], 0, "", False])
def test_a_falsy_stored_probe_is_none(head: Any) -> None:
    judged = _judged(RECORD, connection(head), PROBE, StatePolicy())
    assert (judged.outcome, judged.unchanged) == (Outcome.VALID, False)
    assert judged.probe == PROBE.to_dict()


def test_a_refused_token_from_the_batchs_read_is_followed_by_a_rotation_made_since_not_by_a_refresh() -> None:
    """The batch's load read the access token (generation 0); another worker rotated the row before the API refused
    ours: the 401's refresh finds generation 1 under the lock and uses its token (no second refresh)."""
    from datetime import timedelta

    from l1nda_sync.engine.rest_checking import RestChecking
    from l1nda_sync.masking import Secret
    from l1nda_sync.nmbrs.rest.config import RestApp
    from l1nda_sync.nmbrs.rest.grants import InMemoryGrantStore, StoredGrant
    from l1nda_sync.nmbrs.rest.oauth import Grant

    app = RestApp("https://api.example", "https://id.example", "PartnerApp_x", Secret("s"), Secret("k" * 32), None,
                  "https://l1nda.example/cb")
    store = InMemoryGrantStore()
    expires = AT + timedelta(hours=1)
    store.put(7, StoredGrant(Secret("r0"), Secret("a0"), expires, 0))
    rest = RestChecking(app, client=None, store=store, clock=lambda: AT, reveal=lambda text: Secret(text))  # type: ignore[arg-type]
    token = TokenToCheck(7, "rest", None, None, None, kind="rest_connection", access_read=("a0", expires, 0))
    access = rest.credentials(token).access
    assert access(False).reveal() == "a0"
    store.save(7, Grant(Secret("a1"), expires, Secret("r1"), ()), 1)  # another worker's refresh
    assert access(True).reveal() == "a1"  # a refresh of ours would go to https://id.example and fail here
