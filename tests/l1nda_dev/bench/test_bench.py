"""`make bench` end to end at a tiny size: a real simulator process, embedded PostgreSQL, spawned sweep children."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from l1nda_dev.bench.figures import percentile, task_instances
from l1nda_dev.bench.run import main

SWEEP_FIGURES = {
    "tokens", "batches", "seconds", "plan_seconds", "check_seconds", "finish_seconds", "tokens_per_second",
    "calls_per_token", "bound_seconds", "wall_to_bound", "check_to_bound", "statements", "statements_by_phase",
    "rows_written", "rows_written_by_phase", "statements_per_token", "rows_written_per_token",
    "server_rows_written", "server_rows_written_per_token", "client_build_seconds", "check_cpu_seconds",
    "cpu_ms_per_call", "peak_rss_mb", "outcomes",
    "reach_gained", "reach_lost", "links_activated",
    "links_failed_over", "links_suspended", "round_trip_bound_seconds", "wall_to_round_trip_bound",
}


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.95) == 0.0
    assert percentile([5, 1, 3], 0.5) == 3.0
    assert percentile(list(range(1, 101)), 0.95) == 95.0


def test_task_instances_are_batches_plus_the_fixed_tasks() -> None:
    assert task_instances(2000, 100) == 26
    assert task_instances(2001, 100) == 27
    assert task_instances(20, 100) == 7


@pytest.mark.timeout(120)
def test_tiny_bench_writes_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert main(["--tokens", "20", "--latency-ms", "0", "--airflow-tokens", "0", "--link-share", "0.5",
                 "--churn-share", "0.05", "--rest-connections", "5", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    printed = capsys.readouterr().out

    assert result["world"]["tokens"] == 20
    assert set(result["sweeps"]) == {"first", "unchanged", "churn"}
    for name, sweep in result["sweeps"].items():
        assert sweep.keys() >= SWEEP_FIGURES, name
        assert sweep["tokens"] == 20
        assert sweep["outcomes"] == {"valid": 20}, name
        assert sweep["calls_per_token"]["total"] > 0
        assert 0 < sweep["peak_rss_mb"] < 1000
    first, unchanged, churn = (result["sweeps"][n] for n in ("first", "unchanged", "churn"))
    # A first probe discovers (environment, lists, mapping); an unchanged one lists only.
    assert first["calls_per_token"]["median"] > unchanged["calls_per_token"]["median"]
    assert unchanged["calls_per_token"]["max"] == 2
    assert first["reach_gained"] >= result["world"]["links"] > 0
    assert first["links_activated"] == result["world"]["links"]
    assert unchanged["reach_gained"] == unchanged["reach_lost"] == 0
    assert unchanged["rows_written_per_token"] < first["rows_written_per_token"]
    assert churn["reach_gained"] + churn["reach_lost"] > 0
    assert result["churn"]["companies_changed"] >= 1
    # No latency: no bound, so the ratio is not judged.
    assert unchanged["bound_seconds"] == 0
    assert unchanged["wall_to_bound"] is None
    assert result["diagnosis"] is None
    assert result["task_instances_per_sweep"]["computed"] == 7
    assert result["reconcile_seconds"] == churn["finish_seconds"] > 0
    assert result["peak_rss_mb"] == max(s["peak_rss_mb"] for s in result["sweeps"].values())

    verdicts = {t["key"]: t["verdict"] for t in result["targets"]}
    assert set(verdicts) == {"first_bound_ratio", "bound_ratio", "churn_bound_ratio", "cpu_per_call",
                             "unchanged_calls", "unchanged_writes", "reconcile", "peak_rss", "task_instances",
                             "rest_bound_ratio", "rest_refresh", "rest_cpu_per_call"}
    assert verdicts["first_bound_ratio"] == verdicts["bound_ratio"] == verdicts["churn_bound_ratio"] == "n/a"
    assert verdicts["cpu_per_call"] in ("PASS", "MISS")  # measured even without latency
    assert set(result["process_peak_rss_mb"]) == {"simulator", "world generator", "bench"}
    assert all(0 < mb < 2000 for mb in result["process_peak_rss_mb"].values())
    assert verdicts["unchanged_calls"] == verdicts["unchanged_writes"] == verdicts["task_instances"] == "PASS"
    # Claim, check row, applied mark, token row: four rows per unchanged token, counted by the server.
    assert unchanged["server_rows_written_per_token"] == pytest.approx(4, abs=0.1)
    # Applying unchanged checks: one statement per token (the alert hook's look-up) plus a fixed few.
    assert unchanged["statements_by_phase"]["finish"] <= unchanged["tokens"] + 15
    assert "tokens/s" in printed
    _assert_rest_figures(result, verdicts, printed)
    assert f"wrote {out}" in printed


def _judged(first: float, unchanged: float, churn: float, cpu: float, *, tokens: int = 2000) -> dict[str, str]:
    from l1nda_dev.bench.figures import judge_targets

    def sweep(ratio: float) -> dict:
        return {"wall_to_bound": ratio, "cpu_ms_per_call": cpu, "statements_per_token": 1.0,
                "server_rows_written": 4 * tokens + 2, "tokens": tokens, "calls_per_token": {"max": 2}}

    figures = {"sweeps": {"first": sweep(first), "unchanged": sweep(unchanged), "churn": sweep(churn)},
               "task_instances_per_sweep": {"computed": task_instances(tokens, 100)},
               "world": {"tokens": tokens, "companies": 100}, "churn": {"share": 0.01}, "reconcile_seconds": 1.0,
               "peak_rss_mb": 120.0, "process_peak_rss_mb": {"simulator": 390.0, "bench": 150.0}}
    return {t.key: t.verdict for t in judge_targets(figures, concurrency=32)}


def test_issue_22_targets_first_and_churn_within_1_2_unchanged_within_1_1_and_0_8_ms_per_call() -> None:
    passed = _judged(1.19, 1.09, 1.2, 0.8)
    assert {k: passed[k] for k in ("first_bound_ratio", "bound_ratio", "churn_bound_ratio", "cpu_per_call")} == \
        dict.fromkeys(("first_bound_ratio", "bound_ratio", "churn_bound_ratio", "cpu_per_call"), "PASS")
    missed = _judged(1.21, 1.11, 1.25, 0.81)
    assert {k: missed[k] for k in ("first_bound_ratio", "bound_ratio", "churn_bound_ratio", "cpu_per_call")} == \
        dict.fromkeys(("first_bound_ratio", "bound_ratio", "churn_bound_ratio", "cpu_per_call"), "MISS")
    # Peak RSS is judged per process: the simulator's 390 MB passes, 400 would not.
    assert passed["peak_rss"] == "PASS"


def test_a_ratio_is_judged_at_the_simulators_round_trip_when_it_was_measured() -> None:
    from l1nda_dev.bench.figures import judge_targets, judged_ratio, sweep_figures

    # The set latency's 1.15x misses 1.1x; at the measured round trip (52 ms for 50 set) it is 1.106x: still a miss.
    raw = {"tokens": 160, "batches": 2, "seconds": 1.15, "plan_seconds": 0.05, "check_seconds": 1.0,
           "finish_seconds": 0.1, "statements": {}, "rows_written": {}, "check_cpu_seconds": 0.1,
           "peak_rss_mb": 100.0, "outcomes": {}, "reach_gained": 0, "reach_lost": 0, "links_activated": 0,
           "links_failed_over": 0, "links_suspended": 0}
    at_52 = sweep_figures(raw, [2] * 320, latency_ms=50, concurrency=32, round_trip_ms=52)
    assert (at_52["wall_to_bound"], judged_ratio(at_52)) == (1.15, 1.106)
    at_53 = sweep_figures(raw, [2] * 320, latency_ms=50, concurrency=32, round_trip_ms=53)
    assert judged_ratio(at_53) == 1.085
    # Not measured: the set latency's bound. No latency: no bound, whatever the round trip.
    assert judged_ratio(sweep_figures(raw, [2] * 320, latency_ms=50, concurrency=32)) == 1.15
    assert judged_ratio(sweep_figures(raw, [2] * 320, latency_ms=0, concurrency=32, round_trip_ms=1.2)) is None

    def verdict(sweep: dict) -> tuple[str, str]:
        figures = {"sweeps": {"first": sweep, "unchanged": sweep, "churn": sweep},
                   "machine": {"simulator_round_trip_ms": 53.0},
                   "task_instances_per_sweep": {"computed": 26}, "world": {"tokens": 160, "companies": 100},
                   "churn": {"share": 0.01}, "reconcile_seconds": 1.0, "peak_rss_mb": 120.0}
        target = next(t for t in judge_targets(figures, concurrency=32) if t.key == "bound_ratio")
        return target.verdict, target.name, target.measured

    assert verdict(at_52)[0::2] == ("MISS", "1.106x")  # three decimals: a miss never reads "1.10x"
    assert verdict(at_53) == ("PASS", "unchanged sweep / latency bound at the simulator's round trip, 53.00 ms "
                                      "(concurrency 32)", "1.085x")


def test_task_instance_limit_scales_with_the_world() -> None:
    from l1nda_dev.bench.figures import max_task_instances

    assert max_task_instances(200) == max_task_instances(2000) == 40
    assert max_task_instances(20000) == 400
    assert _judged(1.0, 1.0, 1.0, 0.5, tokens=20000)["task_instances"] == "PASS"  # 200 batches + 6


def test_diagnosis_compares_cpu_per_call_with_the_rate_the_bound_assumes() -> None:
    from l1nda_dev.bench.figures import diagnosis

    unchanged = {"cpu_ms_per_call": 2.0, "bound_seconds": 6.25, "check_cpu_seconds": 8.0, "plan_seconds": 0.05,
                 "finish_seconds": 0.45, "calls_per_token": {"total": 4000}}
    text = diagnosis({"sweeps": {"unchanged": unchanged}}, latency_ms=50, concurrency=32)
    assert text is not None
    assert "at most 500 calls/s" in text
    assert "assumes 640 calls/s" in text
    assert "1.28x the bound" in text
    assert diagnosis({"sweeps": {"unchanged": {**unchanged, "bound_seconds": 0.0}}}, latency_ms=0,
                     concurrency=32) is None


def _assert_rest_figures(result: dict, verdicts: dict[str, str], printed: str) -> None:
    """Five connections consented, swept three times: 2 API calls each, refreshes only once the clock passed."""
    rest = result["rest"]
    assert rest["connections"] == 5
    assert set(rest["sweeps"]) == {"rest_first", "rest_unchanged", "rest_expired"}
    for name, sweep in rest["sweeps"].items():
        assert sweep.keys() >= SWEEP_FIGURES | {"connections", "api_calls", "token_calls", "calls",
                                                "calls_per_second", "links_moved_to_rest"}, name
        assert sweep["connections"] == sweep["tokens"] == 5, name
        assert sweep["outcomes"] == {"valid": 5}, name
        # One debtor each: /api/debtors, then its companies.
        assert sweep["calls_per_token"]["max"] == sweep["calls_per_token"]["median"] == 2, name
        assert sweep["api_calls"] == 10, name
        assert sweep["calls"] == sweep["api_calls"] + sweep["token_calls"], name
        assert sweep["calls_per_second"] > 0, name
        assert 0 < sweep["seconds"] < 60, name
        assert sweep["bound_seconds"] == 0  # no latency
        assert sweep["wall_to_bound"] is None
    sweeps = rest["sweeps"]
    assert sweeps["rest_first"]["token_calls"] == sweeps["rest_unchanged"]["token_calls"] == 0
    assert sweeps["rest_expired"]["token_calls"] == 5  # one refresh per connection, none repeated
    assert sweeps["rest_unchanged"]["reach_gained"] == sweeps["rest_unchanged"]["reach_lost"] == 0
    assert verdicts["rest_refresh"] == "PASS"
    assert verdicts["rest_bound_ratio"] == "n/a"
    assert verdicts["rest_cpu_per_call"] in ("PASS", "MISS")  # measured even without latency
    assert "CPU per REST API call in the check step (judged: unchanged): first " in printed
    assert "REST connections (5, consented in" in printed
    assert "calls: API + /connect/token" in printed
    assert "PASS  access token refreshes: within the hour / after the clock passed expiry: 0 / 5" in printed


def test_the_rest_cpu_target_judges_the_unchanged_rest_sweep_and_shows_all_three() -> None:
    from l1nda_dev.bench.figures import rest_targets

    def sweep(ms: float | None, token_calls: int = 0) -> dict:
        return {"wall_to_bound": None, "token_calls": token_calls, "cpu_ms_per_call": ms}

    def judged(first: float | None, unchanged: float | None, expired: float | None) -> tuple[str, str]:
        rest = {"connections": 2, "sweeps": {"rest_first": sweep(first), "rest_unchanged": sweep(unchanged),
                                             "rest_expired": sweep(expired, 2)}}
        target = next(t for t in rest_targets(rest, concurrency=32) if t.key == "rest_cpu_per_call")
        return target.verdict, target.measured

    assert judged(1.9, 0.71, 2.4) == ("PASS", "first 1.90 / unchanged 0.71 / expired 2.40 ms")
    assert judged(0.5, 0.81, 0.5)[0] == "MISS"
    assert judged(None, None, None) == ("n/a", "n/a")


def test_rest_bound_counts_token_calls_and_one_connection_in_sequence() -> None:
    from l1nda_dev.bench.figures import rest_sweep_figures

    raw = {"tokens": 64, "batches": 1, "seconds": 0.5, "plan_seconds": 0.01, "check_seconds": 0.45,
           "finish_seconds": 0.04, "statements": {"check": 10}, "rows_written": {}, "peak_rss_mb": 80.0,
           "outcomes": {"valid": 64}, "reach_gained": 0, "reach_lost": 0, "links_activated": 0,
           "links_failed_over": 0, "links_suspended": 0}
    figures = rest_sweep_figures(raw, [2] * 64, token_calls=64, latency_ms=50, concurrency=32)
    assert figures["calls"] == 192
    assert figures["bound_seconds"] == 0.3  # 192 calls x 50 ms / 32
    assert figures["wall_to_bound"] == pytest.approx(1.667, abs=0.001)
    few = rest_sweep_figures({**raw, "tokens": 2}, [2, 2], token_calls=0, latency_ms=50, concurrency=32)
    assert few["bound_seconds"] == 0.1  # one connection's two calls, one after the other


def test_the_round_trip_is_a_bare_calls_and_refuses_a_failed_one(tmp_path: Path) -> None:
    import yaml

    import nmbrs_sim
    from l1nda_dev.bench.round_trip import round_trip_ms
    from l1nda_dev.bench.world import simulator_process

    demo = Path(nmbrs_sim.__file__).parent / "scenarios" / "demo.yaml"
    scenario = tmp_path / "world.json"
    scenario.write_text(json.dumps(yaml.safe_load(demo.read_text())))
    user, token = "master-all@demo-accountants.example", "3f1c0e7a9b2d4c6e8f0a1b2c3d4e5f60"
    with simulator_process(scenario) as sim:
        sim.admin().set_latency(30)
        assert 30 <= round_trip_ms(sim.base_url, user, token, calls=5) < 60
        with pytest.raises(RuntimeError, match="HTTP 500"):
            round_trip_ms(sim.base_url, user, "0" * 32, calls=1)


def test_the_bound_at_the_round_trip_scales_the_latency_bound() -> None:
    from l1nda_dev.bench.figures import sweep_figures

    raw = {"tokens": 10, "batches": 1, "seconds": 2.0, "plan_seconds": 0.1, "check_seconds": 1.8,
           "finish_seconds": 0.1, "statements": {}, "rows_written": {}, "peak_rss_mb": 100.0, "outcomes": {},
           "reach_gained": 0, "reach_lost": 0, "links_activated": 0, "links_failed_over": 0, "links_suspended": 0}
    figures = sweep_figures(raw, [2] * 320, latency_ms=50, concurrency=32, round_trip_ms=52)
    assert (figures["bound_seconds"], figures["round_trip_bound_seconds"]) == (1.0, 1.04)
    assert figures["wall_to_round_trip_bound"] == round(2.0 / 1.04, 3)
    assert sweep_figures(raw, [2] * 320, latency_ms=50, concurrency=32)["wall_to_round_trip_bound"] is None
