"""BatchNorm re-estimation: new statistics from the batches given, no weight or caller state changed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tkdlib.batchnorm import recalibrate_batchnorm, recalibrated_accuracy


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def _batches(count: int, shift: float = 0.0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 3, 8, 8, generator=generator) + shift, torch.randint(0, 3, (16,), generator=generator)) for _ in range(count)]


def test_statistics_become_the_average_over_the_batches_and_weights_stay():
    model = _net().eval()
    weights = {name: value.clone() for name, value in model.named_parameters()}
    batches = _batches(5, shift=3.0)
    recalibrate_batchnorm(model, batches, count=5)
    conv, norm = model[0], model[1]
    with torch.no_grad():
        means = torch.stack([conv(x).mean(dim=(0, 2, 3)) for x, _ in batches]).mean(dim=0)
    assert torch.allclose(norm.running_mean, means, atol=1e-5)  # equal batches: the mean of batch means
    assert norm.momentum == 0.1 and not model.training  # the layer's settings and the model's mode come back
    assert all(torch.equal(value, weights[name]) for name, value in model.named_parameters())


def test_recalibrated_accuracy_leaves_the_model_untouched_and_needs_batchnorm():
    model = _net()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    accuracy = recalibrated_accuracy(model, _batches(4, shift=3.0), _batches(2), count=4)
    assert 0.0 <= accuracy <= 1.0
    assert all(torch.equal(value, before[name]) for name, value in model.state_dict().items())
    with pytest.raises(ValueError, match="no BatchNorm"):
        recalibrate_batchnorm(nn.Linear(2, 2), [])
    with pytest.raises(ValueError, match="no training batch"):
        recalibrate_batchnorm(_net(), [], count=3)
