"""The benchmark machinery: alternate timing, the runner's figures, the book's reader (the
benchmarks themselves are timed, not tested)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from tkdlib import report
from tkdlib.runtime import CPU
from tkdlib.throughput import add_step_timing_arguments, alternate_timings, median_paired_speedup, reference_rate, time_alternately

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import run_all  # noqa: E402


def test_time_alternately_interleaves_tasks_and_keeps_the_summary_per_call():
    order: list[str] = []
    seconds = time_alternately({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, calls=2, warmup=1, repeats=3)
    assert order == ["a", "b"] + ["a", "a", "b", "b"] + ["b", "b", "a", "a"] + ["a", "a", "b", "b"]
    assert set(seconds) == {"a", "b"} and all(0 <= value < 0.01 for value in seconds.values())
    with pytest.raises(ValueError, match="calls"):
        time_alternately({"a": lambda: None}, calls=0)


def test_alternate_timings_give_one_paired_value_per_repeat():
    timings = alternate_timings({"a": lambda: None, "b": lambda: sum(range(20_000))}, calls=3, warmup=0, repeats=4)
    assert [len(values) for values in timings.values()] == [4, 4]
    assert all(value >= 0 for values in timings.values() for value in values)
    assert min(timings["b"]) > min(timings["a"])


def test_the_paired_speedup_is_the_median_of_the_per_repeat_ratios():
    # ratios 2, 4 and 1: their median, not the ratio of the medians (3 / 1)
    assert median_paired_speedup([2.0, 4.0, 3.0], [1.0, 1.0, 3.0]) == 2.0
    with pytest.raises(ValueError):
        median_paired_speedup([2.0, 4.0], [1.0])


def test_the_figure_is_the_number_after_the_last_colon():
    assert run_all.figure_of("masked/dense step time: 1.028") == 1.028
    assert run_all.figure_of("a: b: 0.5 (extrapolated)") == 0.5


def test_every_benchmark_declares_a_goal():
    sys.path.insert(0, str(run_all.HERE))
    for name in run_all.BENCHMARKS:
        module = __import__(name)
        assert isinstance(module.GOAL, float), name


def test_benchmark_table_reads_results(tmp_path: Path):
    results = {
        "machine": {"cpu": "Some CPU", "cores": 2, "load_average_before": [3.5, 2.0, 1.0], "note": "busy"},
        "benchmarks": {
            "masked_step": {"lines": ["cpu: ...", "masked/dense step time: 1.028"], "figure": 1.028, "goal": 1.02,
                            "goal_is": "at most", "met": False, "seconds": 40.0},
            "loader": {"lines": ["TensorLoader/torchvision images per second: 9.5"], "figure": 9.5, "goal": 8.0,
                       "goal_is": "at least", "met": True, "seconds": 30.0},
            "broken": {"lines": [], "figure": None, "goal": 0.1, "goal_is": "at most", "met": False, "seconds": 1.0,
                       "error": "ValueError: no runs"},
        },
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    table = report.benchmark_table(path)
    assert list(table.index) == ["masked_step", "loader", "broken"]
    assert table.loc["masked_step", "measures"] == "masked/dense step time"
    assert table.loc["masked_step", "goal"] == "≤ 1.02" and table.loc["masked_step", "met"] == "no"
    assert table.loc["loader", "goal"] == "≥ 8" and table.loc["loader", "met"] == "yes"
    assert table.loc["broken", "met"] == "failed: ValueError: no runs"
    machine = report.benchmark_machine(path)
    assert machine["cpu"] == "Some CPU" and machine["load_average_before"] == "3.5, 2.0, 1.0"
    with pytest.raises(FileNotFoundError, match="make bench"):
        report.benchmark_table(tmp_path / "absent.json")


def test_use_threads_refuses_a_non_positive_count():
    from tkdlib.throughput import use_threads

    with pytest.raises(ValueError, match="positive"):
        use_threads(0)


def test_step_timing_arguments_take_each_benchmarks_defaults_and_leave_out_the_mask_when_asked():
    masked = argparse.ArgumentParser()
    add_step_timing_arguments(masked, steps=1, repeats=20)
    assert vars(masked.parse_args([])) == {"batch_size": 128, "sparsity": 0.9, "steps": 1, "repeats": 20, "threads": None}
    assert masked.parse_args(["--threads", "1", "--sparsity", "0.95"]).sparsity == 0.95

    dense = argparse.ArgumentParser()
    add_step_timing_arguments(dense, steps=2, repeats=6, sparsity=None)
    assert "sparsity" not in vars(dense.parse_args([]))
    with pytest.raises(SystemExit):
        dense.parse_args(["--sparsity", "0.9"])


def test_the_reference_rate_is_measured_once_per_process_and_runtime():
    reference_rate.cache_clear()
    first = reference_rate(CPU)
    assert 0 < first < float("inf")
    assert reference_rate(CPU) == first and reference_rate.cache_info().hits == 1  # runs of one sitting share it
