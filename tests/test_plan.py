"""A batch's dry run estimates the cells left to run from the finished cells like them."""

from __future__ import annotations

from tkdlib.config import Config
from tkdlib.plan import duration, estimate, estimates, like_key, own_seconds, summary

FLOOR = {"layer_floor": 0.005}


def test_own_seconds_leave_the_shared_checkpoints_out():
    phases = {"teacher": {"seconds": 1000.0}, "dense": {"seconds": 500.0}, "score": {"seconds": 3.0}, "retrain": {"seconds": 60.0}}
    record = {"compute": {"phases": phases, "counted": ["teacher", "dense", "score", "retrain"]}}
    assert own_seconds(record) == 63.0


def test_cells_differing_in_seed_or_one_shot_sparsity_are_alike_iterative_sparsities_are_not():
    ours = Config(method="teacher_guided", sparsity=0.9, seed=0)
    assert like_key(ours, {}) == like_key(Config(method="teacher_guided", sparsity=0.98, seed=1), {})
    assert like_key(ours, {}) != like_key(ours, FLOOR)
    assert like_key(ours, {}) != like_key(Config(method="magnitude", sparsity=0.9), {})
    assert like_key(Config(method="imp", sparsity=0.9), {}) != like_key(Config(method="imp", sparsity=0.95), {})
    assert like_key(Config(method="imp", sparsity=0.9, seed=0), {}) == like_key(Config(method="imp", sparsity=0.9, seed=1), {})


def test_a_cell_is_estimated_by_its_like_then_by_its_method_under_other_settings():
    finished = [
        (Config(method="magnitude", sparsity=0.9, seed=0), {}, 100.0),
        (Config(method="magnitude", sparsity=0.95, seed=0), {}, 300.0),
        (Config(method="magnitude", sparsity=0.98, seed=0), FLOOR, 1000.0),
    ]
    costs = estimates(finished)
    assert estimate(costs, Config(method="magnitude", sparsity=0.9, seed=1), {}) == (200.0, "≈ 3 min, like 2 finished")
    assert estimate(costs, Config(method="magnitude", sparsity=0.98, seed=1), FLOOR) == (1000.0, "≈ 17 min, like 1 finished")
    ablation = {"retrain_with_kd": False}
    assert estimate(costs, Config(method="magnitude", seed=1), ablation) == (300.0, "≈ 5 min, like 3 finished with other settings")
    assert estimate(costs, Config(method="snip"), {}) == (None, "")
    assert estimate(costs, Config(method="imp", sparsity=0.9), {}) == (None, "")


def test_durations_and_the_summary_line():
    assert [duration(s) for s in (59, 36 * 60, 89 * 60, 90 * 60, 2.44 * 3600)] == ["1 min", "36 min", "89 min", "1.5 h", "2.4 h"]
    assert summary([600.0, 1200.0]).startswith("2 to run: ≈ 30 min, from finished cells like them (own phases only")
    assert summary([3600.0, None, 1800.0]).startswith("3 to run: ≈ 1.5 h for 2 of them, from finished cells like them; 1 with none like them")
    assert summary([None]) == "1 to run, none like a finished cell to estimate from"
