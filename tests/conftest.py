"""Shared fixtures: an isolated decode cache and small models."""

from __future__ import annotations

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


@pytest.fixture
def tiny_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


@pytest.fixture
def tiny_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 3, 8, 8, generator=generator), torch.randint(0, 4, (8,), generator=generator)) for _ in range(3)]
