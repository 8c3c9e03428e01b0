"""A real Airflow run of the DAG in a temporary AIRFLOW_HOME (metadata DB migrated once per session)."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_placeholder_dag_runs_to_success(airflow_db) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import DAGS_FOLDER

    dag = DagBag(dag_folder=str(DAGS_FOLDER)).get_dag("nmbrs_token_sync")
    run = dag.test()
    assert run.state == "success"
