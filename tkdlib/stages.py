"""A walkthrough's stages, measured: wall seconds, test accuracy and weight density after each.

Used by ``notebooks/own_model.ipynb`` so that the notebook only calls functions::

    stages = Stages(test_batches)
    with stages.stage("dense", student):
        fit(student, train_batches, Schedule(3, 0.1))
    stages.table()
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
from torch import nn

from tkdlib.masks import Mask, prunable_parameters
from tkdlib.train import Batches, evaluate


def density(model: nn.Module) -> float:
    """Fraction of the prunable (conv and linear) weights of `model` that are not exactly zero."""
    return 1 - Mask({name: param != 0 for name, param in prunable_parameters(model).items()}).sparsity


class Stages:
    """One row per stage: its name, the model's class, wall seconds of the stage, then the model's
    top-1 accuracy on `test_batches` (in [0, 1]) and its density, measured after the stage (the
    evaluation is not counted in the seconds)."""

    def __init__(self, test_batches: Batches) -> None:
        self.test_batches = test_batches
        self.rows: list[dict[str, Any]] = []

    @contextmanager
    def stage(self, name: str, model: nn.Module) -> Iterator[None]:
        """Time the body of the ``with`` block, then measure `model`."""
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.rows.append(
            {
                "stage": name,
                "model": type(model).__name__,
                "seconds": round(seconds, 1),
                "test accuracy": evaluate(model, self.test_batches),
                "density": density(model),
            }
        )

    def table(self) -> pd.DataFrame:
        """The rows so far, one per stage, indexed by stage name."""
        return pd.DataFrame(self.rows).set_index("stage")
