"""A training killed after an epoch resumes from its saved state to the uninterrupted result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tkdlib.compute import ComputeMeter
from tkdlib.data import ImageArrays, TensorLoader
from tkdlib.train import EpochState, Schedule, fit

from conftest import TinyNet

EPOCHS = 3
SCHEDULE = Schedule(EPOCHS, lr=0.1)


class Killed(Exception):
    """Stands for the process dying after an epoch."""


def loader() -> TensorLoader:
    rng = np.random.default_rng(0)
    arrays = ImageArrays(rng.integers(0, 256, (48, 8, 8, 3), dtype=np.uint8), rng.integers(0, 4, 48), ("a", "b", "c", "d"), "synthetic")
    return TensorLoader(arrays, 16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), train=True, seed=3, pad=2)


def fresh_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().to(memory_format=torch.channels_last)


def kill_after(epoch: int):
    def on_epoch_end(finished: int, model: torch.nn.Module) -> None:
        if finished == epoch:
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
    state = EpochState(path, save_extra=first_meter.so_far, load_extra=first_meter.credit)
    # The callback of epoch `killed_after + 1` dies: the state on disk is the one after `killed_after` epochs.
    with pytest.raises(Killed):
        train_metered(state, first_meter, fresh_net(), on_epoch_end=kill_after(killed_after + 1))
    assert len(torch.load(path, weights_only=True)["history"]) == killed_after

    resumed, meter = fresh_net(), ComputeMeter(1000)
    history = train_metered(EpochState(path, save_extra=meter.so_far, load_extra=meter.credit), meter, resumed)

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


def test_meter_refuses_costs_outside_a_phase():
    meter = ComputeMeter(1000)
    with pytest.raises(RuntimeError, match="inside `phase"):
        meter.so_far()
    with pytest.raises(RuntimeError, match="inside `phase"):
        meter.credit({"seconds": 1.0, "student_forward": 0, "student_backward": 0, "teacher_forward": 0})
