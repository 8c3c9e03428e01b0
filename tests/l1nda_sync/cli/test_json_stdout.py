"""`--json` prints one JSON document on stdout, whatever else writes to stdout while the command runs."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from l1nda_sync import cli
from l1nda_sync.cli import settings_commands


class _StdoutAtEmit(logging.Handler):
    """Writes to whatever sys.stdout is when a record arrives, like Airflow's structlog print logger."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"2026-12-01T10:33:36Z [info] {record.getMessage()}", file=sys.stdout)


def test_a_log_line_on_stdout_does_not_break_json_output(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("l1nda_sync.test_json_stdout")
    handler = _StdoutAtEmit()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    original = settings_commands.run_settings

    def noisy(ctx: object) -> int:
        logger.info("Tags_Get is switched off; debtors are listed without tags")
        return original(ctx)  # type: ignore[arg-type]

    monkeypatch.setattr(settings_commands, "run_settings", noisy)
    try:
        code = cli.main(["--json", "settings"])
    finally:
        logger.removeHandler(handler)
    out, err = capsys.readouterr()
    assert code == 0
    rows = json.loads(out)  # one document: the log line did not land in it
    assert any(r["name"] == "breaker_window" for r in rows)
    assert "Tags_Get is switched off" in err
