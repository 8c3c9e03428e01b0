"""`tokens add --check` and `tokens replace --check`: probe at once, against the Nmbrs simulator."""

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


def test_check_prints_the_reach_and_stores_the_domain(sim, cli, registry_url) -> None:
    result = cli(*ADD, "--username", HORECA[0], "--check", stdin=HORECA[1])
    assert result.code == 0, result.err
    assert "Nmbrs accepted it: environment demo-accountants, 3 debtors, 4 companies" in result.out
    for company in ("50101", "50102", "50201", "50401"):
        assert company in result.out
    assert HORECA[1] not in result.out + result.err
    conn = db.connect(registry_url)
    try:
        with db.reading(conn) as cur:
            cur.execute("SELECT domain, state FROM tokens")
            assert cur.fetchone() == ("demo-accountants", "new")
            cur.execute("SELECT detail->'checked' FROM token_events WHERE action = 'added'")
            assert cur.fetchone()[0] == {"domain": "demo-accountants", "debtors": 3, "companies": 4}
    finally:
        conn.close()


def test_check_refuses_a_token_nmbrs_rejects_and_writes_nothing(sim, cli, counts) -> None:
    before = counts()
    wrong = cli(*ADD, "--username", HORECA[0], "--check", stdin="0" * 32)
    assert wrong.code == 2
    assert "1001" in wrong.err
    assert "--username" in wrong.err
    assert "0" * 32 not in wrong.err
    assert counts() == before


def test_check_names_the_operation_switched_off(sim, cli, counts) -> None:
    sim.admin.set_operation_allowed(HORECA[0], "DebtorService", "List_GetAll", False)
    before = counts()
    result = cli(*ADD, "--username", HORECA[0], "--check", stdin=HORECA[1])
    assert result.code == 2
    assert "List_GetAll" in result.err
    assert "switch it on" in result.err
    assert counts() == before


def test_check_during_an_outage_is_a_failure_not_bad_input(sim, cli, counts) -> None:
    sim.admin.inject_fault("http_503")
    before = counts()
    result = cli(*ADD, "--username", HORECA[0], "--check", stdin=HORECA[1])
    assert result.code == 1
    assert "Nmbrs could not be asked" in result.err
    assert counts() == before


def test_replace_with_check_probes_the_new_token(sim, cli) -> None:
    assert cli(*ADD, "--username", HORECA[0], "--domain", "demo-accountants", stdin=HORECA[1]).code == 0
    new_token = sim.admin.reset_token(HORECA[0])
    stale = cli("tokens", "replace", "1", "--check", stdin="f" * 32)
    assert stale.code == 2
    assert "1001" in stale.err
    result = cli("tokens", "replace", "1", "--check", stdin=new_token)
    assert result.code == 0, result.err
    assert "4 companies" in result.out
