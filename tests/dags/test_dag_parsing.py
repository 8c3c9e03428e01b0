"""Parsing dags/ does no work: no database query (Airflow's or the registry's), no connection and no Variable
lookup. The DAG processor parses every file every 30 seconds by default; a query there runs thousands of times a
day and fails the parse while a database is away (Airflow guards its own example DAGs the same way).

Each parse runs in a fresh interpreter, so the project's modules are imported for real (work done at import time
counts) and nothing leaks into the other tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DAGS_FOLDER

GUARD = textwrap.dedent("""
    import json, sys
    import psycopg2
    from airflow.sdk import Connection, Variable
    from airflow.hooks.base import BaseHook
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    seen = {"queries": [], "refused": []}

    def refuse(what):
        def call(*args, **kwargs):
            seen["refused"].append(what)
            raise RuntimeError(what + " while parsing the DAGs")
        return call

    from airflow.models import Connection as ModelConnection, Variable as ModelVariable

    psycopg2.connect = refuse("registry connection")
    Connection.get = classmethod(refuse("connection lookup"))
    Variable.get = staticmethod(refuse("Variable lookup"))
    BaseHook.get_connection = classmethod(refuse("connection lookup"))
    # The metadata-database classes are other classes: a lookup through them is answered by the environment or a
    # secrets backend before any query, so only patching them shows it.
    ModelVariable.get = staticmethod(refuse("Variable lookup"))
    ModelConnection.get_connection_from_secrets = staticmethod(refuse("connection lookup"))
    event.listen(Engine, "before_cursor_execute", lambda c, cur, statement, *a: seen["queries"].append(statement))

    def finish(**extra):
        print("GUARD" + json.dumps({**seen, **extra}))
""")

PARSE = GUARD + textwrap.dedent("""
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[1])
    finish(dags=sorted(bag.dag_ids), errors={k: str(v)[:500] for k, v in bag.import_errors.items()})
""")

# What the guard must notice, so that a guard recording nothing cannot pass the real test.
SELF_TEST = GUARD + textwrap.dedent("""
    import sqlalchemy
    from airflow.settings import Session
    for attempt in (lambda: psycopg2.connect("postgresql://x"), lambda: Variable.get("l1nda_fernet_keys"),
                    lambda: BaseHook.get_connection("l1nda_registry"),
                    lambda: ModelVariable.get("l1nda_schedule"),
                    lambda: ModelConnection.get_connection_from_secrets("nmbrs_soap")):
        try:
            attempt()
        except RuntimeError:
            pass
    session = Session()
    session.execute(sqlalchemy.text("SELECT 1"))
    session.close()
    finish()
""")


def _run(script: str, *args: str) -> dict[str, Any]:
    env = {**os.environ, "L1NDA_DATABASE_URL": "postgresql://parse-must-not-connect@127.0.0.1:1/nowhere"}
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env,
                          check=False, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("GUARD")]
    assert done.returncode == 0, done.stderr[-3000:]
    assert lines, done.stdout[-3000:]
    return dict(json.loads(lines[-1].removeprefix("GUARD")))


def test_the_guard_sees_queries_lookups_and_registry_connections(airflow_db: Path) -> None:
    seen = _run(SELF_TEST)
    assert seen["refused"] == ["registry connection", "Variable lookup", "connection lookup", "Variable lookup",
                               "connection lookup"]
    assert "SELECT 1" in seen["queries"]


def test_parsing_the_dags_queries_nothing_and_looks_nothing_up(airflow_db: Path) -> None:
    seen = _run(PARSE, str(DAGS_FOLDER))
    assert seen["errors"] == {}
    assert seen["dags"] == ["nmbrs_alert_outbox", "nmbrs_token_sync"]
    assert seen["refused"] == []
    assert seen["queries"] == [], f"parsing dags/ ran queries: {seen['queries'][:3]}"


@pytest.mark.parametrize("path", sorted(DAGS_FOLDER.glob("*.py")), ids=lambda p: p.name)
def test_every_dag_file_parses_on_its_own(path: Path, airflow_db: Path) -> None:
    seen = _run(PARSE, str(path))
    assert seen["errors"] == {}
    assert len(seen["dags"]) == 1
    assert (seen["refused"], seen["queries"]) == ([], [])
