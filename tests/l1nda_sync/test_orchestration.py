"""The DAG's trigger parameters: every bad value fails with the field's name and what to do."""

from __future__ import annotations

import pytest

from l1nda_sync.orchestration import ParamError, batch_kwargs, parse_params


def test_defaults_are_a_scheduled_run() -> None:
    assert parse_params({}) == {"token_ids": [], "force": False, "dry_run": False, "notify": True}


def test_token_ids_are_deduplicated_and_sorted_and_may_come_as_text() -> None:
    assert parse_params({"token_ids": [3, "1", 3]})["token_ids"] == [1, 3]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"token_ids": "1,2"}, "token_ids"),
        ({"token_ids": [1, -2]}, "token_ids"),
        ({"token_ids": [True]}, "token_ids"),
        ({"token_ids": [1.5]}, "token_ids"),
        ({"force": "yes"}, "force"),
        ({"dry_run": 1}, "dry_run"),
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
