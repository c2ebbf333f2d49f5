"""Shared fixtures: an isolated decode cache, small models, and one tiny batch run through papermill."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True, scope="session")
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Decoded datasets go to a temporary cache, not ~/.cache."""
    patcher = pytest.MonkeyPatch()
    patcher.setenv("TKD_CACHE", str(tmp_path_factory.mktemp("cache")))
    patcher.delenv("TKD_DATA", raising=False)
    yield
    patcher.undo()


class TinyNet(nn.Module):
    """conv → BN → ReLU → pool → linear, for (B, 3, 8, 8) inputs and 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn(self.conv(x)))
        return self.fc(out.mean(dim=(2, 3)))


class Killed(Exception):
    """Stands for the process dying during or after an epoch."""


@dataclass
class EpochCalls:
    """Counts the calls of `tkdlib.train.train_epoch` (one per epoch trained, in any phase) since
    the last `restart`, and makes call number `dies_at` raise `error` instead of training."""

    count: int = 0
    dies_at: int | None = None
    error: type[BaseException] = Killed

    def restart(self, dies_at: int | None = None, error: type[BaseException] = Killed) -> None:
        """Count from zero again; call number `dies_at` (None: none) raises `error`."""
        self.count, self.dies_at, self.error = 0, dies_at, error


@pytest.fixture
def train_epochs(monkeypatch: pytest.MonkeyPatch) -> EpochCalls:
    """`tkdlib.train.train_epoch` counted (`EpochCalls`), for tests that stop a run midway."""
    from tkdlib import train

    real_epoch, calls = train.train_epoch, EpochCalls()

    def counted(*args, **kwargs):
        calls.count += 1
        if calls.count == calls.dies_at:
            raise calls.error
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train, "train_epoch", counted)
    return calls


@pytest.fixture
def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


@pytest.fixture
def tiny_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 3, 8, 8, generator=generator), torch.randint(0, 4, (8,), generator=generator)) for _ in range(3)]


# The smallest run that exercises every phase: 128 sample images, one epoch per phase, one batch
# per scoring or calibration step. Tests override what they measure.
TINY_RUN = dict(
    dataset="cifar10-sample", arch="resnet20", teacher_arch="resnet20", batch_size=64, train_subset=128,
    teacher_epochs=1, student_epochs=1, guide_epochs=1, retrain_epochs=1, score_batches=1, calibration_batches=1, sparsity=0.8,
)

TINY_PROFILE = """
description = "tiny test profile"
pages = ["results", "ablations", "efficiency", "masks", "runs", "saliency", "regimes"]
[compare]
profile = "cifar10-converged"
labels = ["tiny", "converged"]
[config]
dataset = "cifar10-sample"
arch = "resnet20"
teacher_arch = "resnet20"
batch_size = 64
train_subset = 128
teacher_epochs = 1
student_epochs = 1
guide_epochs = 0
retrain_epochs = 1
score_batches = 1
calibration_batches = 1
[[grid]]
method = ["teacher_guided", "magnitude", "imp"]
sparsity = [0.8]
"""


@dataclass(frozen=True)
class TinyBatch:
    """Where the tiny batch put things, and how many of its notebooks failed."""

    profile: Path
    out_dir: Path
    book_dir: Path
    failures: int

    @property
    def results(self) -> Path:
        """The executed results notebook, as the book includes it."""
        return self.book_dir / self.profile.stem / "results.ipynb"


@pytest.fixture(scope="session")
def tiny_batch(tmp_path_factory: pytest.TempPathFactory, isolated_cache: None) -> TinyBatch:
    """A three-cell profile (teacher-guided, magnitude and IMP at 80 %) run once with `run_batch`: ~40 s on 2 cores."""
    from tkdlib.batch import run_batch

    root = tmp_path_factory.mktemp("tiny-batch")
    profile = root / "tiny.toml"
    profile.write_text(TINY_PROFILE)
    out_dir, book_dir = root / "runs", root / "book"
    return TinyBatch(profile, out_dir, book_dir, run_batch(profile, out_dir=out_dir, book_dir=book_dir))
