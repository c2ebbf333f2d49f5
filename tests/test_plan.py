"""A batch's dry run estimates the cells left to run from the finished cells like them."""

from __future__ import annotations

from tkdlib.config import Config
from tkdlib.plan import Estimate, Estimates, duration, like_key, own_seconds, summary

FLOOR = {"layer_floor": 0.005}


def _record(own: float, dense: float = 3000.0, dense_sha256: str = "d0") -> dict:
    """A finished record whose own phases took `own` seconds, after a dense student of `dense` seconds."""
    phases = {"dense": {"seconds": dense}, "teacher": {"seconds": 5000.0}, "retrain": {"seconds": own}}
    compute = {"phases": phases, "counted": ["dense", "teacher", "retrain"]}
    return {"compute": compute, "checkpoints": {"sha256": {"dense": dense_sha256, "teacher": "t"}}}


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
    estimates = Estimates.from_records([
        (Config(method="magnitude", sparsity=0.9, seed=0), {}, _record(100.0)),
        (Config(method="magnitude", sparsity=0.95, seed=0), {}, _record(300.0)),
        (Config(method="magnitude", sparsity=0.98, seed=0), FLOOR, _record(1000.0)),
    ])
    same = estimates.cell(Config(method="magnitude", sparsity=0.9, seed=1), {})
    assert same == Estimate(200.0, 2, same_settings=True) and same.note() == "≈ 3 min, like 2 finished"
    assert estimates.cell(Config(method="magnitude", sparsity=0.98, seed=1), FLOOR).note() == "≈ 17 min, like 1 finished"
    other = estimates.cell(Config(method="magnitude", seed=1), {"retrain_with_kd": False})
    assert other == Estimate(300.0, 3, same_settings=False) and other.note() == "≈ 5 min, like 3 finished with other settings"
    assert estimates.cell(Config(method="snip"), {}) is None
    assert estimates.cell(Config(method="imp", sparsity=0.9), {}) is None


def test_shared_checkpoints_are_estimated_once_per_file_and_added_to_the_cells_that_train_them():
    estimates = Estimates.from_records([
        (Config(method="magnitude", seed=0), {}, _record(100.0, dense=3000.0, dense_sha256="seed0")),
        (Config(method="snip", seed=0), {}, _record(200.0, dense=3000.0, dense_sha256="seed0")),
        (Config(method="snip", seed=1), {}, _record(200.0, dense=4000.0, dense_sha256="seed1")),
    ])
    assert estimates.checkpoints == {"dense": 3500.0, "teacher": 5000.0}  # two dense students, one teacher
    assert estimates.total(Config(method="magnitude", seed=2), {}, ["dense"]) == 3600.0
    assert estimates.total(Config(method="magnitude", seed=1), {}, []) == 100.0
    assert estimates.total(Config(method="epsd", seed=1), {}, []) is None


def test_durations_and_the_summary_line():
    assert [duration(s) for s in (59, 36 * 60, 89 * 60, 90 * 60, 2.44 * 3600)] == ["1 min", "36 min", "89 min", "1.5 h", "2.4 h"]
    assert summary([600.0, 1200.0]) == "2 runs left: ≈ 30 min, from the finished runs like them"
    assert summary([3600.0, None, 1800.0]) == "3 runs left: ≈ 1.5 h for 2 of them, from the finished runs like them; 1 with none like them"
    assert summary([None]) == "1 run left, none like a finished run to estimate from"
    assert summary([600.0], [3000.0]).endswith("; and 1 shared checkpoint to train first (≈ 50 min)")
    assert summary([600.0], [3000.0, None]).endswith("; and 2 shared checkpoints to train first (not estimated)")
