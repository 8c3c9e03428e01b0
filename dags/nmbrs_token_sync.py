"""Revalidate Nmbrs API tokens, rediscover what they reach and reconcile L1NDA's links.

Placeholder wiring until the sync engine lands: the DAG exists so the harness can load and run it.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from l1nda_sync import __version__


@dag(
    dag_id="nmbrs_token_sync",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["l1nda", "nmbrs"],
    default_args={"owner": "l1nda-integrations", "retries": 2, "retry_delay": timedelta(minutes=1)},
    doc_md=__doc__,
)
def nmbrs_token_sync() -> None:
    @task
    def version() -> str:
        return __version__

    version()


nmbrs_token_sync()
