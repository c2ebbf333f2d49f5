"""Several processes: loader slices, one mask on every rank, DDP steps equal to one process's.

Two CPU processes with the gloo backend (torch.multiprocessing.spawn, a file:// rendezvous in a
temporary folder, so no port can clash) score and train a small network without BatchNorm (whose
per-rank statistics on the CPU would differ from the global batch's) and save what they hold;
the test compares it with the same work done in this one process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import distributed as dist
from torch import multiprocessing
from torch import nn

from tkdlib.data import ImageArrays
from tkdlib.loaders import TensorLoader
from tkdlib.masks import global_mask
from tkdlib.scoring import gradient_saliency
from tkdlib.train import Schedule, cross_entropy, fit

WORLD = 2
BATCH = 8  # the global batch; each rank gets BATCH / WORLD images
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


class PlainNet(nn.Module):
    """conv → ReLU → pool → linear for (B, 3, 8, 8) inputs and 3 classes; no BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def arrays(n: int = 16) -> ImageArrays:
    generator = np.random.default_rng(0)
    images = generator.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    return ImageArrays(images, np.arange(n) % 3, ("a", "b", "c"), "random")


def loader(rank: int = 0, world_size: int = 1) -> TensorLoader:
    return TensorLoader(arrays(), BATCH, MEAN, STD, train=True, seed=5, pad=1, rank=rank, world_size=world_size)


def score_and_train(rank: int = 0, world_size: int = 1) -> dict[str, object]:
    """Scores and a 50 % mask over 2 batches, then two one-epoch trainings under the mask (each
    its own DDP wrapper under a process group)."""
    torch.manual_seed(0)
    model = PlainNet()
    parameters = {"conv.weight": model.conv.weight, "fc.weight": model.fc.weight}
    scores = gradient_saliency(model, parameters, loader(rank, world_size), cross_entropy, score_batches=2)
    mask = global_mask(scores, 0.5)
    losses = [fit(model, loader(rank, world_size), Schedule(1, 0.1), mask=mask)[0]["loss"] for _ in range(2)]
    return {"scores": scores, "mask": mask.state_dict(), "losses": losses, "state": model.state_dict()}


def _worker(rank: int, folder: str) -> None:
    torch.set_num_threads(1)  # two processes on a shared machine: no intra-op threads competing
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=WORLD)
    try:
        torch.save(score_and_train(rank, WORLD), f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_slices_of_the_ranks_make_the_global_batch():
    (whole_x, whole_y), = [next(iter(loader()))]
    slices = [next(iter(loader(rank, WORLD))) for rank in range(WORLD)]
    assert all(x.shape == (BATCH // WORLD, 3, 8, 8) and x.is_contiguous(memory_format=torch.channels_last) for x, _ in slices)
    assert torch.equal(torch.cat([x for x, _ in slices]), whole_x)
    assert torch.equal(torch.cat([y for _, y in slices]), whole_y)


def test_a_batch_that_does_not_split_evenly_is_refused():
    with pytest.raises(ValueError, match="multiple of 3"):
        TensorLoader(arrays(), BATCH, MEAN, STD, train=True, rank=0, world_size=3)
    with pytest.raises(ValueError, match="rank"):
        TensorLoader(arrays(), BATCH, MEAN, STD, train=True, rank=2, world_size=2)


def test_two_processes_hold_one_mask_and_train_like_one(tmp_path: Path):
    multiprocessing.spawn(_worker, args=(str(tmp_path),), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(WORLD)]
    single = score_and_train()
    first, second = ranks
    for name in single["mask"]:
        assert torch.equal(first["mask"][name], second["mask"][name])  # (a) every rank builds the same mask
        assert torch.equal(first["scores"][name], second["scores"][name])
        torch.testing.assert_close(first["scores"][name], single["scores"][name], rtol=1e-5, atol=1e-7)
    for name, value in single["state"].items():  # (b) DDP steps on slices = steps on the global batch
        assert torch.equal(first["state"][name], second["state"][name])
        torch.testing.assert_close(first["state"][name], value, rtol=1e-5, atol=1e-6)
        if name in first["mask"]:
            assert not first["state"][name][~first["mask"][name]].any()  # pruned weights stayed exactly zero
    assert first["losses"] == second["losses"]
    assert first["losses"] == pytest.approx(single["losses"], rel=1e-5)
