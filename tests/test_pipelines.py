from __future__ import annotations

import pytest
import torch
from torch import nn

from tkdlib.compute import forward_flops
from tkdlib.experiment import Config, run
from tkdlib.pipelines import overlap_scores, round_sparsities

from conftest import TINY_RUN

TINY = {**TINY_RUN, "train_subset": 256, "student_epochs": 2}
STEPS_PER_EPOCH = 256 // 64


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("pipelines")


def test_round_sparsities_remove_the_same_fraction_each_round():
    targets = round_sparsities(0.9, 4)
    assert targets[-1] == 0.9 and targets == sorted(targets)
    remaining = [1.0] + [1 - s for s in targets]
    ratios = [b / a for a, b in zip(remaining, remaining[1:])]
    assert max(ratios) == pytest.approx(min(ratios))
    assert round_sparsities(0.5, 1) == [0.5]


def test_overlap_scores_prefer_weights_high_in_both_tickets():
    first = {"w": torch.tensor([4.0, 3.0, 2.0, 1.0])}
    second = {"w": torch.tensor([1.0, 3.0, 2.0, 4.0])}
    overlap = overlap_scores(first, second)["w"]
    assert int(overlap.argmax()) == 1  # ranks 2nd in both; 0 and 3 are top in one, bottom in the other


def test_forward_flops_counts_multiply_adds_twice():
    assert forward_flops(nn.Sequential(nn.Flatten(), nn.Linear(12, 5)), (3, 2, 2)) == 2 * 12 * 5


@pytest.mark.parametrize(
    "method, extra, retrain_images",
    [
        # imp: 2 rounds of retraining on all images
        ("imp", {"prune_rounds": 2}, 2 * STEPS_PER_EPOCH * 64),
        # colt: 2 rounds × 2 halves (2 steps each) + the final training on all images
        ("colt", {"prune_rounds": 2}, (2 * 2 * 2 + STEPS_PER_EPOCH) * 64),
        # iterative teacher-guided: 3 rounds of score → prune → retrain
        ("teacher_guided", {"prune_rounds": 3}, 3 * STEPS_PER_EPOCH * 64),
    ],
)
def test_iterative_pipelines_reach_the_target_and_count_their_images(out_dir, method, extra, retrain_images):
    record = run(Config(method=method, **TINY, **extra), out_dir)
    assert abs(record["sparsity"]["weights"] - 0.8) <= 1 / record["sparsity"]["prunable_weights"]
    retrain = record["compute"]["phases"]["retrain"]
    assert retrain["student_forward"] == retrain["student_backward"] == retrain_images
    assert retrain["flops"] > 0 and record["compute"]["total"]["flops"] > retrain["flops"]


def test_epsd_trains_from_initialization_without_teacher_or_dense_student(out_dir):
    record = run(Config(method="epsd", **TINY), out_dir)
    assert record["compute"]["counted"] == ["score", "retrain"]
    retrain = record["compute"]["phases"]["retrain"]
    images = (TINY["student_epochs"] + TINY["retrain_epochs"]) * STEPS_PER_EPOCH * 64
    assert retrain["student_backward"] == images
    assert retrain["student_forward"] == 2 * images  # two views per batch
    assert retrain["teacher_forward"] == 0


def test_self_teacher_is_the_dense_student(out_dir):
    record = run(Config(method="magnitude", **{**TINY, "teacher_arch": "self"}), out_dir)
    assert record["accuracy"]["teacher"] == record["accuracy"]["dense"]
    assert record["compute"]["phases"]["teacher"]["seconds"] == 0


def test_one_shot_methods_count_the_shared_training_they_build_on(out_dir):
    record = run(Config(method="magnitude", **{**TINY, "retrain_with_kd": False}), out_dir)
    assert record["compute"]["counted"] == ["dense", "score", "retrain"]
    dense = record["compute"]["phases"]["dense"]
    assert dense["student_backward"] == TINY["student_epochs"] * STEPS_PER_EPOCH * 64


def test_epsd_refuses_several_rounds():
    with pytest.raises(ValueError, match="epsd"):
        Config(method="epsd", prune_rounds=3)
