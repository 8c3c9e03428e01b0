"""Send the alert mails that are due, every few minutes, so that an alert never waits for the next sync run.

Also resolves problems whose cause stayed clear for the quiet period and queues reminders. Safe to run beside
the sync: one drain at a time takes each mail, and a mail is never sent twice.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag, task

from l1nda_sync import orchestration

DAG_ID = "nmbrs_alert_outbox"


@dag(
    dag_id=DAG_ID,
    schedule=timedelta(minutes=5),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=10),
    tags=["l1nda", "nmbrs", "alerts"],
    default_args={"owner": "l1nda-integrations", "retries": 1, "retry_delay": timedelta(minutes=1)},
    on_failure_callback=orchestration.failure_notifier(DAG_ID),
    doc_md=__doc__,
)
def nmbrs_alert_outbox() -> None:
    @task
    def drain() -> dict[str, Any]:
        return orchestration.drain_outbox()

    drain()


nmbrs_alert_outbox()
