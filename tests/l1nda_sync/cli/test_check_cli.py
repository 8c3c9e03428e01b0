"""`tokens add` and `tokens replace` check the token at Nmbrs by default, against the Nmbrs simulator over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from l1nda_sync.registry import db

HORECA = ("master-horeca@demo-accountants.example", "9a8b7c6d5e4f30211203f4e5d6c7b8a9")
ADD = ("tokens", "add", "--label", "Horeca master", "--level", "accountant", "--contact", "office@demo.example")


@pytest.fixture
def sim(cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[object]:
    import nmbrs_sim
    from nmbrs_sim.testing import running_simulator

    scenario = Path(nmbrs_sim.__file__).parent / "scenarios" / "demo.yaml"
    with running_simulator(scenario) as running:
        monkeypatch.setenv("L1NDA_NMBRS_BASE_URL", running.base_url)
        monkeypatch.setenv("L1NDA_NMBRS_WSDL_CACHE_DIR", str(tmp_path / "wsdl"))
        monkeypatch.setenv("L1NDA_NMBRS_RETRY_ATTEMPTS", "1")
        yield running


def _row(registry_url: str, sql: str) -> tuple:
    conn = db.connect(registry_url)
    try:
        with db.reading(conn) as cur:
            cur.execute(sql)
            return cur.fetchone()
    finally:
        conn.close()


@pytest.mark.parametrize("flag", [(), ("--check",)], ids=["default", "--check kept as a no-op"])
def test_a_token_nmbrs_accepts_is_active_at_once_with_its_reach(sim, cli, registry_url, flag) -> None:
    result = cli(*ADD, "--username", HORECA[0], *flag, stdin=HORECA[1])
    assert result.code == 0, result.err
    assert "state active: Nmbrs accepted it" in result.out
    assert "Nmbrs accepted it: environment demo-accountants, 3 debtors, 4 companies" in result.out
    for company in ("50101", "50102", "50201", "50401"):
        assert company in result.out
    assert HORECA[1] not in result.out + result.err
    # As a sync run would have left it: active, valid now, next check after check_interval_healthy (1 h).
    state, domain, valid_now, next_in = _row(registry_url, """
        SELECT state, domain, last_valid_at > now() - interval '1 minute',
               extract(epoch FROM next_check_at - last_valid_at) FROM tokens""")
    assert (state, domain, valid_now, float(next_in)) == ("active", "demo-accountants", True, 3600.0)
    assert _row(registry_url, "SELECT count(*) FROM reach_companies WHERE token_id = 1 AND lost_at IS NULL") == (4,)
    assert _row(registry_url, "SELECT count(*) FROM reach_debtors WHERE token_id = 1") == (3,)
    assert _row(registry_url, "SELECT outcome, applied_at IS NOT NULL FROM checks") == ("valid", True)
    assert _row(registry_url, "SELECT detail->'checked' FROM token_events WHERE action = 'added'") == (
        {"domain": "demo-accountants", "debtors": 3, "companies": 4},)
    assert _row(registry_url, "SELECT from_state, to_state FROM token_events WHERE action = 'state_changed'") == (
        "new", "active")
    # A sync run right after has nothing due: the registration check counts as this hour's check.
    run = cli("sync", "run", "--json")
    assert run.code == 0, run.err
    assert run.json["checked"] == 0


def test_a_token_nmbrs_rejects_is_refused_with_what_to_check_and_nothing_written(sim, cli, counts) -> None:
    before = counts()
    wrong = cli(*ADD, "--username", HORECA[0], stdin="0" * 32)
    assert wrong.code == 2
    assert "Nmbrs does not accept this token (1001): check the login e-mail and token" in wrong.err
    assert "--username" in wrong.err
    assert "0" * 32 not in wrong.err
    assert counts() == before


def test_no_check_stores_it_new_without_asking_nmbrs(sim, cli, registry_url) -> None:
    sim.admin.inject_fault("http_503")  # any call would fail; --no-check makes none
    result = cli(*ADD, "--username", HORECA[0], "--no-check", stdin=HORECA[1])
    assert result.code == 0, result.err
    assert "state new: not checked (--no-check)" in result.out
    assert "warning" not in result.err
    assert _row(registry_url, "SELECT state, next_check_at <= now() FROM tokens") == ("new", True)
    assert _row(registry_url, "SELECT count(*) FROM checks") == (0,)


def test_check_names_the_operation_switched_off(sim, cli, counts) -> None:
    sim.admin.set_operation_allowed(HORECA[0], "DebtorService", "List_GetAll", False)
    before = counts()
    result = cli(*ADD, "--username", HORECA[0], stdin=HORECA[1])
    assert result.code == 2
    assert "List_GetAll" in result.err
    assert "switch it on" in result.err
    assert counts() == before


def test_during_an_outage_the_token_is_stored_new_with_a_warning(sim, cli, registry_url, counts) -> None:
    sim.admin.inject_fault("http_503")
    before = counts()
    result = cli(*ADD, "--username", HORECA[0], stdin=HORECA[1])
    assert result.code == 0, result.err
    assert "warning: Nmbrs could not be asked" in result.err
    assert "the next sync run checks it" in result.err
    assert "state new: Nmbrs could not be asked" in result.out
    assert HORECA[1] not in result.out + result.err
    assert counts() == {**before, "tokens": 1, "token_events": 1}  # no check row: nothing was learnt
    assert _row(registry_url, "SELECT state, next_check_at <= now() FROM tokens") == ("new", True)


def test_replace_checks_the_new_token_and_a_valid_one_is_active_at_once(sim, cli, registry_url, counts) -> None:
    assert cli(*ADD, "--username", HORECA[0], "--domain", "demo-accountants", "--no-check", stdin=HORECA[1]).code == 0
    new_token = sim.admin.reset_token(HORECA[0])
    before = counts()
    stale = cli("tokens", "replace", "1", stdin="f" * 32)
    assert stale.code == 2
    assert "Nmbrs does not accept this token (1001)" in stale.err
    assert counts() == before
    result = cli("tokens", "replace", "1", stdin=new_token)
    assert result.code == 0, result.err
    assert "state new -> active: Nmbrs accepted it" in result.out
    assert "4 companies" in result.out
    assert new_token not in result.out + result.err
    assert _row(registry_url, "SELECT state, last_valid_at IS NOT NULL, next_check_at > now() + interval '59 min' "
                              "FROM tokens") == ("active", True, True)
