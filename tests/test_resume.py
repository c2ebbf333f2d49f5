"""A training killed after an epoch resumes from its saved state to the uninterrupted result."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from tkdlib.compute import ComputeMeter
from tkdlib.data import ImageArrays
from tkdlib.loaders import TensorLoader
from tkdlib.experiment import Config, run, run_dir
from tkdlib.parking import PARTIAL_DIR
from tkdlib.train import EpochState, Schedule, fit

from conftest import TINY_RUN, EpochCalls, Killed, TinyNet

EPOCHS = 3
SCHEDULE = Schedule(EPOCHS, lr=0.1)


def loader() -> TensorLoader:
    rng = np.random.default_rng(0)
    arrays = ImageArrays(rng.integers(0, 256, (48, 8, 8, 3), dtype=np.uint8), rng.integers(0, 4, 48), ("a", "b", "c", "d"), "synthetic")
    return TensorLoader(arrays, 16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), train=True, seed=3, pad=2)


def fresh_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().to(memory_format=torch.channels_last)


def kill_after(epoch: int):
    def on_epoch_end(finished: dict, model: torch.nn.Module) -> None:
        if finished["epoch"] == epoch:
            raise Killed

    return on_epoch_end


def train_metered(state: EpochState | None, meter: ComputeMeter, model: TinyNet, **kwargs) -> list[dict]:
    meter.watch(model)
    with meter.phase("train"):
        return fit(model, loader(), SCHEDULE, epoch_state=state, **kwargs)


@pytest.mark.parametrize("killed_after", [1, 2])
def test_resumed_training_ends_bitwise_equal_and_counts_every_epoch_once(tmp_path: Path, killed_after: int):
    reference, reference_meter = fresh_net(), ComputeMeter(1000)
    reference_history = train_metered(None, reference_meter, reference)

    path = tmp_path / "state.pt"
    first_meter = ComputeMeter(1000)
    state = EpochState.metered(path, first_meter)
    # The callback of epoch `killed_after + 1` dies: the state on disk is the one after `killed_after` epochs.
    with pytest.raises(Killed):
        train_metered(state, first_meter, fresh_net(), on_epoch_end=kill_after(killed_after + 1))
    assert len(torch.load(path, weights_only=True)["history"]) == killed_after

    resumed, meter = fresh_net(), ComputeMeter(1000)
    history = train_metered(EpochState.metered(path, meter), meter, resumed)

    assert [entry["epoch"] for entry in history] == list(range(1, EPOCHS + 1))
    assert [entry["loss"] for entry in history] == [entry["loss"] for entry in reference_history]
    for name, tensor in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], tensor), name
    assert meter.costs["train"].student_backward == reference_meter.costs["train"].student_backward == EPOCHS * 48
    assert meter.costs["train"].flops == reference_meter.costs["train"].flops


def test_a_finished_state_returns_its_history_without_training(tmp_path: Path):
    path = tmp_path / "state.pt"
    trained = fresh_net()
    history = fit(trained, loader(), SCHEDULE, epoch_state=EpochState(path))
    again = fresh_net()
    assert fit(again, loader(), SCHEDULE, epoch_state=EpochState(path)) == history
    for name, tensor in trained.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name


def test_stopping_after_an_epoch_gives_that_epoch_of_the_full_schedule():
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def keep(finished: dict, model: torch.nn.Module) -> None:
        snapshots[finished["epoch"]] = {name: tensor.clone() for name, tensor in model.state_dict().items()}

    fit(fresh_net(), loader(), SCHEDULE, on_epoch_end=keep)
    stopped = fresh_net()
    history = fit(stopped, loader(), dataclasses.replace(SCHEDULE, stop_after=2))
    assert [entry["epoch"] for entry in history] == [1, 2]
    for name, tensor in snapshots[2].items():
        assert torch.equal(stopped.state_dict()[name], tensor), name
    with pytest.raises(ValueError, match="stop_after must be between 0 and epochs"):
        dataclasses.replace(SCHEDULE, stop_after=EPOCHS + 1)


def test_meter_refuses_costs_outside_a_phase():
    meter = ComputeMeter(1000)
    with pytest.raises(RuntimeError, match="inside `phase"):
        meter.so_far()
    with pytest.raises(RuntimeError, match="inside `phase"):
        meter.resume({"seconds": 1.0, "student_forward": 0, "student_backward": 0, "teacher_forward": 0})


# A run killed inside a later training phase resumes there and ends with the uninterrupted record.
# Each entry: the config's changes, and which call of `train_epoch` dies (the teacher's and the
# dense student's single epochs are calls 1 and 2; the pipeline's epochs follow).
RESUMED_RUNS = {
    "imp": (dict(method="imp", prune_rounds=2, retrain_epochs=2), 6),  # round 2's second epoch: rewinding and masks recomputed
    "colt": (dict(method="colt", prune_rounds=2), 6),  # round 2's second ticket
    "epsd": (dict(method="epsd", retrain_epochs=2), 5),  # the last of 3 sparse epochs: the objective's random second views
    "teacher_guided": (dict(method="teacher_guided", guide_epochs=2, retrain_epochs=2), 6),  # after a resumed-over guiding phase
}


@pytest.mark.parametrize("name", sorted(RESUMED_RUNS))
def test_a_run_killed_midway_resumes_to_the_uninterrupted_record(tmp_path: Path, train_epochs: EpochCalls, name: str):
    changes, dies_at = RESUMED_RUNS[name]
    config = Config(**{**TINY_RUN, "train_subset": 192, **changes})
    reference = run(config, tmp_path / "reference")
    epochs_in_all = train_epochs.count

    out_dir = tmp_path / "killed"
    train_epochs.restart(dies_at)
    with pytest.raises(Killed):
        run(config, out_dir)
    assert any((run_dir(config, out_dir) / PARTIAL_DIR).glob("*.pt")), "the killed run kept no epoch state"

    train_epochs.restart()
    resumed = run(config, out_dir)
    assert train_epochs.count == epochs_in_all - (dies_at - 1), "the resumed run trained epochs it had finished"
    assert not (run_dir(config, out_dir) / PARTIAL_DIR).exists()
    assert resumed["accuracy"] == reference["accuracy"] and resumed["sparsity"] == reference["sparsity"]
    assert resumed["seconds"]["resumed"] and not reference["seconds"]["resumed"]
    for phase, cost in reference["compute"]["phases"].items():
        for key in ("student_forward", "student_backward", "teacher_forward"):
            assert resumed["compute"]["phases"][phase][key] == cost[key], (phase, key)
    for file in ("mask.pt", "model.pt"):
        a = torch.load(run_dir(config, tmp_path / "reference") / file, weights_only=True)
        b = torch.load(run_dir(config, out_dir) / file, weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a), file
