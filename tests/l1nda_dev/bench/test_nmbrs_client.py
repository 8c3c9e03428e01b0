"""The micro-benchmark runs and reports parse time, build time and probe calls per world size."""

from __future__ import annotations

import re

import pytest

from l1nda_dev.bench import nmbrs_client as bench


def test_the_benchmark_reports_every_size(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--debtors", "1", "3", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"DebtorService\s+cold\s+[\d.]+ ms\s+warm\s+[\d.]+ ms", out)
    assert "client build" in out
    rows = {int(m.group(1)): m.group(0) for m in re.finditer(r"^\s+(\d+)\s+\d+ \|.*$", out, re.M)}
    assert sorted(rows) == [1, 3]
    # first probe 2N + 3, unchanged 2, full refresh 2N + 2
    assert re.search(r"9 calls \|.* 2 calls \|.* 8 calls", rows[3])


def test_the_benchmark_refuses_bad_sizes() -> None:
    with pytest.raises(SystemExit) as caught:
        bench.main(["--debtors", "0"])
    assert caught.value.code == 2


def test_world_has_the_asked_shape() -> None:
    world = bench.world(4, companies_per_debtor=3)
    debtors = world["environments"][0]["debtors"]
    assert len(debtors) == 4
    assert sum(len(d["companies"]) for d in debtors) == 12
