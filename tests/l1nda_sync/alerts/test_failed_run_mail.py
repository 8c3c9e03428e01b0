"""The failed-run mail to operations: text and HTML, the failed task and its masked error, the run's link, and
no false alarm about unchecked tokens when only a manual run failed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from l1nda_sync import orchestration
from tests.dags.conftest import OPS as DAG_OPS
from tests.dags.conftest import DagWorld, dag_world, load_dag, nmbrs_pool  # noqa: F401 - fixtures
from tests.l1nda_sync.alerts.harness import OPS, MailServer, parts, test_settings
from tests.l1nda_sync.conftest import fernet_keys, registry_template, registry_url  # noqa: F401 - fixtures

TOKEN = "0123456789abcdef0123456789abcdef"


class FakeTi:
    task_id = "check"
    map_index = 2

    def xcom_pull(self, *, task_ids: str, key: str, map_indexes: int) -> str | None:
        assert (task_ids, key, map_indexes) == ("check", orchestration.ERROR_KEY, 2)
        return f"RuntimeError: Nmbrs said no to token {TOKEN} at https://u:hunter2@api.example/x"


def _context(run_type: str) -> dict[str, Any]:
    return {"run_id": "scheduled__2026-11-23T08:00:00+00:00", "ti": FakeTi(),
            "dag_run": SimpleNamespace(run_id="scheduled__2026-11-23T08:00:00+00:00", run_type=run_type)}


@pytest.fixture
def api_base_url(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.l1nda.example/")
    return "https://airflow.l1nda.example"


def test_a_scheduled_failure_names_task_error_and_link(api_base_url: str) -> None:
    message = orchestration.failed_run_message("nmbrs_token_sync", _context("scheduled"), test_settings())
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    text, html = parts(message)
    assert str(message["Subject"]).startswith("[L1NDA sync] nmbrs_token_sync run failed: scheduled__")
    for body in (text, html):
        assert "check[2]" in body
        assert "RuntimeError: Nmbrs said no to token …cdef" in body
        assert TOKEN[:-4] not in body, "the token shows its last 4 characters only"
        assert "hunter2" not in body
        assert ("https://airflow.l1nda.example/dags/nmbrs_token_sync/runs/"
                "scheduled__2026-11-23T08%3A00%3A00%2B00%3A00/tasks/check") in body
    assert "not checked until a run succeeds" in text
    assert "manual" not in text


def test_a_manual_failure_says_scheduled_runs_are_unaffected(api_base_url: str) -> None:
    text, _html = parts(orchestration.failed_run_message("nmbrs_token_sync", _context("manual"), test_settings()))
    assert "this manual run failed; scheduled runs are unaffected" in text.lower()
    assert "not checked" not in text


def test_the_notifier_sends_one_mail_with_both_parts(smtp: MailServer, api_base_url: str) -> None:
    notifier = orchestration._run_failure_notifier_class()("nmbrs_token_sync", test_settings())
    notifier.notify(_context("scheduled"))
    [message] = smtp.messages()
    assert message["To"] == OPS
    assert message.get_content_type() == "multipart/alternative"


@pytest.mark.slow
def test_a_manual_run_with_a_typo_mails_the_task_and_its_error(dag_world: DagWorld,  # noqa: F811
                                                                api_base_url: str) -> None:
    dag_world.add_token("horeca")
    run = load_dag("nmbrs_token_sync").test(run_conf={"token_ids": [424242]})
    assert run.state == "failed"
    [(rcpts, raw)] = dag_world.mail.received
    assert rcpts == [DAG_OPS]
    import email
    from email.policy import default

    text, html = parts(email.message_from_bytes(raw, policy=default))
    assert "Failed task: plan" in text
    assert "token_ids: no token with id 424242" in text
    assert "this manual run failed; scheduled runs are unaffected" in text.lower()
    assert "https://airflow.l1nda.example/dags/nmbrs_token_sync/runs/" in text
    assert "424242" in html
