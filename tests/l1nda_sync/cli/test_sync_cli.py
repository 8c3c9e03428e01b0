"""`l1nda-sync sync run` against the simulator and a fresh registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from nmbrs_sim.testing import RunningSim, running_simulator
from tests.l1nda_sync.cli.conftest import Cli
from tests.l1nda_sync.engine.story_world import DEMO_SCENARIO, LOGINS


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[RunningSim]:
    with running_simulator(DEMO_SCENARIO) as running:
        monkeypatch.setenv("L1NDA_NMBRS_BASE_URL", running.base_url)
        monkeypatch.setenv("L1NDA_NMBRS_WSDL_CACHE_DIR", str(tmp_path))
        yield running


def _add(cli: Cli, label: str) -> int:
    level, username, token = LOGINS[label]
    result = cli("tokens", "add", "--no-check", "--label", label, "--level", level, "--username", username,
                 "--contact", "c@customer.example", "--json", stdin=token)
    assert result.code == 0, result.err
    return result.json["token"]["id"]


def test_sync_run_checks_due_tokens_and_reports(cli: Cli, sim: RunningSim) -> None:
    token_id = _add(cli, "horeca")
    assert cli("links", "request", "--customer", "cust", "--company", "50101").code == 0
    result = cli("sync", "run", "--json", "--hold-mails")
    assert result.code == 0, result.err
    report = result.json
    assert report["checked"] == 1
    assert report["outcomes"] == {"valid": 1}
    assert report["links_activated"] == 1
    shown = cli("tokens", "show", str(token_id), "--json").json
    assert shown["token"]["state"] == "active"
    assert sorted(c["company_id"] for c in shown["companies"]) == [50101, 50102, 50201, 50401]
    assert LOGINS["horeca"][2] not in result.out + result.err
    # Nothing is due now; a named token is checked anyway.
    assert cli("sync", "run", "--json", "--hold-mails").json["checked"] == 0
    assert cli("sync", "run", "--token", str(token_id), "--json", "--hold-mails").json["checked"] == 1


def test_sync_run_reports_problems_and_waiting_mails(cli: Cli, sim: RunningSim, monkeypatch) -> None:
    monkeypatch.setenv("L1NDA_REVOKE_MIN_SPACING", "0")
    token_id = _add(cli, "horeca")
    _add(cli, "linde")  # a healthy bystander: one token alone cannot tell a revocation from an outage
    assert cli("sync", "run", "--hold-mails").code == 0
    sim.admin.reset_token(LOGINS["horeca"][1])
    for _ in range(2):
        result = cli("sync", "run", "--token", str(token_id), "--hold-mails", "--json")
        assert result.code == 0, result.err
    assert result.json["state_changes"][0]["to"] == "revoked"
    assert result.json["mails_waiting"] >= 2
    assert "wait in the outbox (--hold-mails)" in result.err
    opened = [r["summary"]["problems_opened"] for r in cli("runs", "list", "--json").json]
    assert sum(opened) >= 1


def test_sync_run_dry_run_writes_nothing(cli: Cli, sim: RunningSim, counts: Callable[[], dict[str, int]]) -> None:
    _add(cli, "horeca")
    before = counts()
    result = cli("sync", "run", "--dry-run")
    assert result.code == 0, result.err
    assert "dry run" in result.out
    assert counts() == before


def test_sync_run_unknown_token_is_bad_input(cli: Cli, sim: RunningSim, counts: Callable[[], dict[str, int]]) -> None:
    _add(cli, "horeca")
    before = counts()
    result = cli("sync", "run", "--token", "999")
    assert result.code == 2
    assert "--token" in result.err
    assert "999" in result.err
    assert counts() == before


def test_runs_list_and_show_read_the_stored_summary(cli: Cli, sim: RunningSim) -> None:
    _add(cli, "horeca")
    assert cli("links", "request", "--customer", "cust", "--company", "50101").code == 0
    assert cli("sync", "run", "--hold-mails").code == 0
    listed = cli("runs", "list", "--json")
    assert listed.code == 0
    (run,) = listed.json
    assert run["summary"]["checked"] == 1
    table = cli("runs", "list").out
    assert "valid 1" in table
    shown = cli("runs", "show", str(run["id"]))
    assert shown.code == 0
    assert "tokens checked" in shown.out
    assert "token state changes:" in shown.out
    assert "link changes:" in shown.out
    missing = cli("runs", "show", "999")
    assert missing.code == 2
    assert "no run with id 999" in missing.err
    assert cli("runs", "list", "--limit", "0").code == 2
