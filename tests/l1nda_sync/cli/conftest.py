"""Run `l1nda-sync` in-process against a fresh registry, with stdin, stdout and stderr captured."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from l1nda_sync.cli import main
from l1nda_sync.registry import db
from tests.l1nda_sync.alerts.conftest import conn as conn  # problem commands use the alerts harness
from tests.l1nda_sync.alerts.conftest import smtp as smtp
from tests.l1nda_sync.alerts.conftest import world as world

TABLES = ("tokens", "token_events", "links", "link_events", "checks", "problems", "outbox", "runs")


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


Cli = Callable[..., Result]


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """run('tokens', 'list', stdin='...') -> Result. The environment is whatever the test set."""

    def invoke(*argv: str, stdin: str = "") -> Result:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return invoke


@pytest.fixture
def cli(run: Cli, registry_url: str, fernet_keys: list[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`run` against a migrated registry (L1NDA_DATABASE_URL) with one encryption key."""
    monkeypatch.setenv("L1NDA_DATABASE_URL", registry_url)
    return run


@pytest.fixture
def counts(registry_url: str) -> Callable[[], dict[str, int]]:
    """Row counts of the tables a command could write, to show that a failing one wrote nothing."""

    def snapshot() -> dict[str, int]:
        conn = db.connect(registry_url)
        try:
            with db.reading(conn) as cur:
                found = {}
                for table in TABLES:
                    cur.execute(f"SELECT count(*) FROM {table}")
                    found[table] = int(cur.fetchone()[0])
                return found
        finally:
            conn.close()

    return snapshot
