"""The DAG's trigger parameters: every bad value fails with the field's name and what to do."""

from __future__ import annotations

import pytest

from l1nda_sync.orchestration import ParamError, batch_kwargs, parse_params
from l1nda_sync.pipeline import RunRequest


def test_defaults_are_a_scheduled_run() -> None:
    assert parse_params({}) == RunRequest(token_ids=(), force=False, dry_run=False, send_mails=True)


def test_token_ids_are_deduplicated_and_sorted_and_may_come_as_text() -> None:
    assert parse_params({"token_ids": [3, "1", 3]}).token_ids == (1, 3)


def test_the_old_notify_param_still_holds_mails_also_beside_the_default_airflow_fills_in() -> None:
    assert parse_params({"notify": False}).send_mails is False
    assert parse_params({"notify": False, "send_mails": True}).send_mails is False  # Airflow's default beside it
    assert parse_params({"notify": True, "send_mails": True}).send_mails is True
    assert parse_params({"notify": True, "send_mails": False}).send_mails is False  # either one holds them


def test_a_plan_written_by_the_previous_release_keeps_its_notify_false() -> None:
    from l1nda_sync.pipeline import PlannedRun

    old = {"run_id": 3, "batches": [[1]], "dry_run": False, "notify": False}
    assert PlannedRun.from_xcom(old).send_mails is False
    assert PlannedRun.from_xcom({**old, "notify": True}).send_mails is True


def test_the_previous_task_body_names_still_run() -> None:
    from l1nda_sync import orchestration

    assert (orchestration.finish, orchestration.notify, orchestration.report) == (
        orchestration.apply, orchestration.deliver, orchestration.close_report)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"token_ids": "1,2"}, "token_ids"),
        ({"token_ids": [1, -2]}, "token_ids"),
        ({"token_ids": [True]}, "token_ids"),
        ({"token_ids": [1.5]}, "token_ids"),
        ({"force": "yes"}, "force"),
        ({"dry_run": 1}, "dry_run"),
        ({"send_mails": "false"}, "send_mails"),
        ({"notify": "false"}, "notify"),
    ],
)
def test_bad_values_name_their_field(params: dict, field: str) -> None:
    with pytest.raises(ParamError, match=rf"^{field}: "):
        parse_params(params)


def test_one_mapped_check_per_batch_and_none_for_a_dry_run() -> None:
    planned = {"run_id": 7, "batches": [[1, 2], [3]], "dry_run": False}
    assert batch_kwargs(planned) == [{"sync_run": 7, "batch": [1, 2]}, {"sync_run": 7, "batch": [3]}]
    assert batch_kwargs({"run_id": None, "batches": [], "dry_run": True}) == []


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"tokenids": [1]},
         "tokenids: not a parameter of this DAG; the known ones are token_ids, force, dry_run, send_mails"),
        ({"token_ids": [1], "dryrun": True}, "dryrun: not a parameter"),
        ({"token_ids": ["²"]}, "token_ids: '²' is not a token id"),
        ({"token_ids": ["٣"]}, "token_ids: '٣' is not a token id"),
        ({"token_ids": [2**31]}, "token_ids: 2147483648 is out of range"),
        ({"token_ids": ["99999999999999999999999"]}, "out of range"),
        ({"token_ids": [0]}, "token_ids: 0 is out of range"),
    ],
)
def test_unknown_keys_and_odd_ids_are_param_errors_naming_the_field(params: dict, fragment: str) -> None:
    with pytest.raises(ParamError) as err:
        parse_params(params)
    assert fragment in str(err.value)


@pytest.mark.parametrize("params", [{"tokenids": [1]}, {"token_ids": ["²"]}])
def test_plan_fails_a_bad_conf_without_retries_before_touching_the_registry(params: dict, monkeypatch) -> None:
    """In the DAG's first task a bad conf is AirflowFailException (no retries), never a bare ValueError; it is
    raised before any setting or database is read (no L1NDA_DATABASE_URL here)."""
    from airflow.sdk.exceptions import AirflowFailException

    from l1nda_sync import orchestration

    monkeypatch.delenv("L1NDA_DATABASE_URL", raising=False)
    monkeypatch.setattr(orchestration, "_pipeline", lambda: pytest.fail("the registry was touched"))
    with pytest.raises(AirflowFailException) as err:
        orchestration.plan(params, "manual__1")
    assert str(err.value).startswith(next(iter(params)) + ": ") or str(err.value).startswith("token_ids: ")
    assert not isinstance(err.value, ValueError)


def test_mail_masking_cuts_tokens_but_keeps_setting_names() -> None:
    from l1nda_sync.orchestration import mask_text

    text = mask_text("set L1NDA_FERNET_KEYS or l1nda_fernet_keys; token 0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a, "
                     "key Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWo=")
    assert "L1NDA_FERNET_KEYS" in text
    assert "l1nda_fernet_keys" in text
    assert "0d1e2f3a" not in text
    assert "…4f5a" in text
    assert "Zm9vYmFy" not in text
