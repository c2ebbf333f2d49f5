"""A batch's dry run estimates the cells left to run from the finished cells like them."""

from __future__ import annotations

import pytest

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
    assert same == Estimate(200.0, 2, basis="like") and same.note() == "≈ 3 min: 2 finished runs like it"
    assert estimates.cell(Config(method="magnitude", sparsity=0.98, seed=1), FLOOR).note() == "≈ 17 min: 1 finished run like it"
    other = estimates.cell(Config(method="magnitude", seed=1), {"retrain_with_kd": False})
    assert other == Estimate(300.0, 3, basis="method") and other.note() == "≈ 5 min: 3 finished runs of the method, other settings"



def test_a_method_that_never_finished_is_estimated_by_its_epochs_at_the_pace_of_its_objective():
    estimates = Estimates.from_records([  # magnitude retrains 10 epochs under the teacher: 10, 30 and 100 s an epoch
        (Config(method="magnitude", sparsity=s, seed=0, retrain_epochs=10), {}, _record(own)) for s, own in ((0.9, 100.0), (0.95, 300.0), (0.98, 1000.0))
    ])
    imp = estimates.cell(Config(method="imp", sparsity=0.9, retrain_epochs=10), {})  # 5 rounds of 10 epochs
    assert imp == Estimate(1500.0, 3, basis="epochs", epochs=50) and imp.note() == "≈ 25 min: 50 epochs at the pace of 3 finished runs"
    assert estimates.cell(Config(method="colt", sparsity=0.95, retrain_epochs=10), {}).epochs == 60  # a final training after the 5 rounds
    assert estimates.cell(Config(method="teacher_snip", guide_epochs=1, retrain_epochs=10), {}).seconds == 330.0  # and its guiding epoch
    assert estimates.cell(Config(method="epsd"), {}) is None  # self-distillation: no finished run trains under it
    assert estimates.cell(Config(method="snip", retrain_with_kd=False), {}) is None


def test_a_cell_stopped_midway_is_estimated_by_what_it_has_left():
    estimates = Estimates.from_records([(Config(method="magnitude", retrain_epochs=10), {}, _record(100.0))])
    imp = Config(method="imp", sparsity=0.9, retrain_epochs=10)
    resumed = estimates.cell(imp, {}, done=0.4)
    assert resumed.left == pytest.approx(300.0) and resumed.note() == "≈ 5 min left of ≈ 8 min: 50 epochs at the pace of 1 finished run"
    assert estimates.total(imp, {}, [], done=0.4) == pytest.approx(300.0)


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
    assert [duration(s) for s in (0.2, 59, 60, 36 * 60, 89 * 60, 90 * 60, 2.44 * 3600)] == ["0 s", "59 s", "1 min", "36 min", "89 min", "1.5 h", "2.4 h"]
    assert summary([600.0, 1200.0]) == "2 runs left: ≈ 30 min, from the finished runs"
    assert summary([3600.0, None, 1800.0]) == "3 runs left: ≈ 1.5 h for 2 of them, from the finished runs; 1 with nothing to estimate from"
    assert summary([None]) == "1 run left, nothing finished to estimate them from"
    assert summary([600.0], [3000.0]).endswith("; and 1 shared checkpoint to train first (≈ 50 min)")
    assert summary([600.0], [3000.0, None]).endswith("; and 2 shared checkpoints to train first (not estimated)")
