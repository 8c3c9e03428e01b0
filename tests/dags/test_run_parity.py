"""`l1nda-sync sync run` and the DAG run the same pipeline: for the same world they leave the same rows and end the
same way (run success and exit 0; a check that cannot be applied fails the run and exits 1). Each world is built
twice, on two registries beside one simulator; the DAG runs on one (`dag.test()`), the CLI on the other."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import pytest

from l1nda_sync.cli import main
from l1nda_sync.registry.db import fetch_all
from tests.conftest import _admin, _with_database
from tests.dags.conftest import OPS, DagWorld, load_dag
from tests.l1nda_sync.engine.story_world import LOGINS, register_token, request_links

pytestmark = pytest.mark.slow

LABELS = ("horeca", "vandijk", "linde")
COMPANIES = (50101, 50301, 50701)
IGNORED_SUMMARY_KEYS = {"seconds", "error"}  # wall time; the failure text names the step its own way


@pytest.fixture
def second_registry(pg_server_url: str, registry_template: str) -> Iterator[str]:
    name = f"t_parity_{uuid.uuid4().hex[:12]}"
    _admin(pg_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{registry_template}"')
    try:
        yield _with_database(pg_server_url, name)
    finally:
        _admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _build(url: str) -> None:
    for label in LABELS:
        register_token(url, label)
    request_links(url, COMPANIES)


def _refuse_token_updates(url: str, token_id: int) -> None:
    """A check of this token cannot be applied (as a bug or a bad row would make it), in every run."""
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("""
                CREATE FUNCTION parity_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'injected: token % cannot be written', NEW.id; END $$;
                CREATE TRIGGER parity_refuse BEFORE UPDATE ON tokens FOR EACH ROW
                    WHEN (NEW.id = %s AND NEW.last_checked_at IS DISTINCT FROM OLD.last_checked_at)
                    EXECUTE FUNCTION parity_refuse();""".replace("%s", str(int(token_id))))
    finally:
        conn.close()


def _rows(url: str) -> dict[str, Any]:
    """What a run leaves behind, without ids that differ by construction or wall-clock times."""
    runs = [(state, {k: v for k, v in summary.items() if k not in IGNORED_SUMMARY_KEYS})
            for state, summary in fetch_all(url, "SELECT state, summary FROM runs ORDER BY id")]
    return {
        "tokens": fetch_all(url, """SELECT label, state, refusal, consecutive_invalid, last_outcome FROM tokens
                                    ORDER BY label"""),
        "links": fetch_all(url, """SELECT l.company_id, l.state, t.label, l.reason FROM links l
                                   LEFT JOIN tokens t ON t.id = l.token_id ORDER BY l.company_id"""),
        "checks": fetch_all(url, """SELECT t.label, c.outcome, c.applied_at IS NOT NULL FROM checks c
                                    JOIN tokens t ON t.id = c.token_id ORDER BY t.label, c.id"""),
        "problems": fetch_all(url, "SELECT kind, stage, state FROM problems ORDER BY kind, id"),
        "outbox": fetch_all(url, "SELECT event, recipients, state FROM outbox ORDER BY event, recipients"),
        "runs": runs,
    }


def _cli_run(url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    monkeypatch.setenv("AIRFLOW_CONN_L1NDA_REGISTRY", url)
    monkeypatch.setenv("L1NDA_DATABASE_URL", url)
    capsys.readouterr()
    code = main(["sync", "run"])
    return code, capsys.readouterr().err


def _both(dag_world: DagWorld, other: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
          prepare: Callable[[str], None] = lambda url: None, before_runs: Callable[[], None] = lambda: None,
          ) -> tuple[tuple[str, list[Any]], tuple[int, str, list[Any]]]:
    """The same world on both registries; the DAG on the first, `sync run` on the second. Returns each one's end
    (run state, or exit status and stderr) with the recipients of the mails it sent."""
    for url in (dag_world.url, other):
        _build(url)
        prepare(url)
    dag_world.sim.admin.reset_token(LOGINS["horeca"][1])  # one refusal: suspected, nobody mailed, links kept
    before_runs()
    dag = load_dag("nmbrs_token_sync")
    dag.get_task("apply").retries = 0  # a retry would apply nothing more here; keep the test fast
    state = dag.test().state
    dag_mails = [rcpts for rcpts, _ in dag_world.mail.received]
    code, err = _cli_run(other, monkeypatch, capsys)
    cli_mails = [rcpts for rcpts, _ in dag_world.mail.received[len(dag_mails):]]
    return (state, dag_mails), (code, err, cli_mails)


def test_a_run_ends_the_same_way_with_the_same_rows(dag_world: DagWorld, second_registry: str,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (state, dag_mails), (code, err, cli_mails) = _both(dag_world, second_registry, monkeypatch, capsys)
    assert (state, code) == ("success", 0), err
    dag_rows, cli_rows = _rows(dag_world.url), _rows(second_registry)
    assert dag_rows == cli_rows
    assert sorted(dag_mails) == sorted(cli_mails)
    assert [s for s, _ in dag_rows["runs"]] == ["success"]
    assert dag_rows["runs"][0][1]["calls"] > 0
    states = {r[0]: r[1] for r in dag_rows["tokens"]}
    assert states == {"horeca": "invalid", "linde": "active", "vandijk": "active"}
    # horeca's one refusal keeps its company pending (never reached), vandijk's activates
    assert [r[:2] for r in dag_rows["links"]] == [(50101, "pending"), (50301, "active"), (50701, "pending")]


def test_a_check_that_cannot_be_applied_fails_both_the_same_way(dag_world: DagWorld, second_registry: str,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    def refuse_vandijk(url: str) -> None:
        (token_id,) = fetch_all(url, "SELECT id FROM tokens WHERE label = 'vandijk'")[0]
        _refuse_token_updates(url, token_id)

    (state, dag_mails), (code, err, cli_mails) = _both(dag_world, second_registry, monkeypatch, capsys,
                                                       prepare=refuse_vandijk)
    assert (state, code) == ("failed", 1), err
    assert "1 check(s) could not be applied and stay pending" in err
    dag_rows, cli_rows = _rows(dag_world.url), _rows(second_registry)
    assert dag_rows == cli_rows
    assert ("vandijk", "valid", False) in [tuple(r) for r in dag_rows["checks"]], "its check stays pending"
    states = {r[0]: r[1] for r in dag_rows["tokens"]}
    assert states == {"horeca": "invalid", "linde": "active", "vandijk": "new"}, "the others were applied"
    assert [s for s, _ in dag_rows["runs"]] == ["failed"]
    assert dag_world.query("SELECT count(*) FROM tokens WHERE claimed_by IS NOT NULL") == [(0,)]
    # Neither sends the run's alert mails; the DAG's failure callback mails operations (the CLI exits 1).
    assert cli_mails == []
    assert dag_mails == [[OPS]]


def test_keys_that_cannot_decrypt_fail_both_the_same_way(dag_world: DagWorld, second_registry: str,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A worker with another deployment's key: nothing is probed or moved, the run is closed as failed at once
    with its claims released (the DAG's close_run task, the CLI itself), and the tokens stay due."""
    from cryptography.fernet import Fernet

    def wrong_key() -> None:
        monkeypatch.setenv("L1NDA_FERNET_KEYS", Fernet.generate_key().decode("ascii"))

    (state, dag_mails), (code, err, cli_mails) = _both(dag_world, second_registry, monkeypatch, capsys,
                                                       before_runs=wrong_key)
    assert (state, code) == ("failed", 1), err
    assert "L1NDA_FERNET_KEYS cannot decrypt token(s)" in err
    dag_rows, cli_rows = _rows(dag_world.url), _rows(second_registry)
    assert dag_rows == cli_rows
    assert dag_rows["checks"] == []
    assert {r[1] for r in dag_rows["tokens"]} == {"new"}
    assert [s for s, _ in dag_rows["runs"]] == ["failed"]
    for url in (dag_world.url, second_registry):
        assert fetch_all(url, "SELECT count(*) FROM tokens WHERE claimed_by IS NOT NULL") == [(0,)]
    assert cli_mails == []
    assert dag_mails == [[OPS]]
