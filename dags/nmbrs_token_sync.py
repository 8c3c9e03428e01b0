"""Revalidate Nmbrs API tokens, rediscover what each reaches, and reconcile L1NDA's links.

Every run checks only the tokens that are due (healthy hourly, just-failed sooner, new or replaced at once),
in batches mapped over workers; the Airflow pool `nmbrs_api` bounds how many batches talk to Nmbrs at once.
Trigger by hand to recheck chosen tokens now (`token_ids`, `force`), to preview (`dry_run`), to hold mails
(`send_mails`), or to preview the SOAP cutover (`cutover_preview_at`). The steps are the run pipeline's
(`l1nda_sync.pipeline`, the same `l1nda-sync sync run` runs); their task bodies live in
`l1nda_sync.orchestration`; this file only wires them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from l1nda_sync import orchestration

SETTINGS = orchestration.dag_settings()
DAG_ID = "nmbrs_token_sync"


@dag(
    dag_id=DAG_ID,
    schedule=SETTINGS.schedule,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=50),
    tags=["l1nda", "nmbrs", "tokens"],
    default_args={
        "owner": "l1nda-integrations",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=5),
    },
    on_failure_callback=orchestration.failure_notifier(DAG_ID),
    doc_md=__doc__,
    params={
        "token_ids": Param(
            [], type="array", items={"type": "integer", "minimum": 1},
            title="Credential ids (tokens or connections)",
            description="Check only these credentials: SOAP tokens and REST connections alike (ids from "
                        "`l1nda-sync tokens list` or `l1nda-sync connections list`). Empty: every one that is due.",
        ),
        "force": Param(
            False, type="boolean", title="Force",
            description="Check now, due or not. Implied when token ids are given.",
        ),
        "dry_run": Param(
            False, type="boolean", title="Dry run",
            description="Probe and compute everything, report it, and write nothing (no states, links or mails).",
        ),
        "send_mails": Param(
            True, type="boolean", title="Send mails",
            description="Off: alerts are still recorded, and the mails wait in the outbox for the next drain.",
        ),
        "cutover_preview_at": Param(
            "", type="string", title="Preview the SOAP cutover at",
            description="Instead of a run: log what the cutover at the end of SOAP would do at this time (now, "
                        "soap_end, or YYYY-MM-DD[THH:MM], Amsterdam time): links that stay or move to REST, links "
                        "that suspend, per customer, and who is mailed. Checks nothing, writes nothing. Empty: off.",
        ),
    },
)
def nmbrs_token_sync() -> None:
    @task
    def plan() -> dict[str, Any]:
        context = get_current_context()
        return orchestration.plan(context["params"], context["run_id"])

    @task
    def batches(planned: dict[str, Any]) -> list[dict[str, Any]]:
        return orchestration.batch_kwargs(planned)

    @task(pool="nmbrs_api", max_active_tis_per_dagrun=8)
    def check(sync_run: int | None, batch: list[int]) -> dict[str, Any]:
        return orchestration.check(sync_run, batch)

    @task(trigger_rule="none_failed")
    def apply(planned: dict[str, Any]) -> dict[str, Any]:
        return orchestration.apply(planned)

    @task
    def deliver(planned: dict[str, Any]) -> dict[str, Any]:
        return orchestration.deliver(planned)

    @task
    def close_report(planned: dict[str, Any], applied: dict[str, Any], delivered: dict[str, Any]) -> dict[str, Any]:
        return orchestration.close_report(planned, applied, delivered)

    # Each call below returns a reference to a task's XCom, resolved when the task runs (hence Any).
    @task(trigger_rule="all_done")
    def close_run() -> dict[str, Any]:
        # The plan is read here, not passed in: when the plan task itself failed there is nothing to close.
        return orchestration.close_run(get_current_context()["ti"].xcom_pull(task_ids="plan"))

    planned: Any = plan()
    checked = check.expand_kwargs(batches(planned))
    applied: Any = apply(planned)
    checked >> applied
    delivered: Any = deliver(planned)
    applied >> delivered
    close_report(planned, applied, delivered)
    [checked, applied] >> close_run()


nmbrs_token_sync()
