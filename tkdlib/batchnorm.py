"""Re-estimating BatchNorm statistics after pruning, without changing any weight.

Removing 90 % of a network's weights changes the distribution every BatchNorm layer sees, while
its running mean and variance still describe the dense network; evaluated as it is, a pruned
network can sit near chance although its mask is good. `recalibrated_accuracy` measures the
mask apart from that: on a copy, it resets every BatchNorm layer's running statistics, forwards
training batches in train mode without gradients (cumulative averages, ``momentum=None``), and
evaluates. The model given is never changed.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn

from tkdlib.train import Batches, evaluate

RECALIBRATION_BATCHES = 200  # training batches forwarded to re-estimate the statistics (25,600 images at batch 128)


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Batches, count: int = RECALIBRATION_BATCHES) -> nn.Module:
    """Replace the running statistics of every BatchNorm layer of `model`, in place, by their
    cumulative averages over the first `count` of `batches` (forwarded in train mode, no
    gradient, weights untouched); returns `model` in the mode it had. Raises ValueError when
    the model has no BatchNorm layer or the batches run out before one was seen."""
    layers = batchnorm_layers(model)
    if not layers:
        raise ValueError("the model has no BatchNorm layer: there are no statistics to re-estimate")
    momenta = [layer.momentum for layer in layers]
    was_training = model.training
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    seen = 0
    try:
        for x, _ in itertools.islice(batches, count):
            model(x)
            seen += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        model.train(was_training)
    if seen == 0:
        raise ValueError("no training batch to re-estimate the BatchNorm statistics from")
    return model


def recalibrated_accuracy(model: nn.Module, train_batches: Batches, test_batches: Batches, count: int = RECALIBRATION_BATCHES) -> float:
    """Top-1 test accuracy in [0, 1] of a copy of `model` whose BatchNorm statistics were
    re-estimated on `count` training batches (`recalibrate_batchnorm`); `model` is unchanged."""
    return evaluate(recalibrate_batchnorm(copy.deepcopy(model), train_batches, count), test_batches)
