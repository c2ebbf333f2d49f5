"""Importance scores, one function per method; higher = more important = kept.

Every scorer returns ``dict[str, Tensor]``, keyed by parameter name, each tensor of the
weight's shape, for the parameters it is given (see `tkdlib.masks.prunable_parameters`).
Gradient scorers leave the model exactly as they found it: weights, BatchNorm running
statistics, ``.grad`` fields and train/eval mode.

- ``teacher_guided`` (ours): Σ over batches of |w ⊙ ∂L/∂w|, L = α · CA-KLD + (1 − α) · CE
  against the frozen teacher.
- ``ce_gradient``: the same saliency with L = CE and no teacher (isolates the teacher's part).
- ``magnitude``: |w|.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from tkdlib.train import Batches, Distill, Objective, cross_entropy

Scores = dict[str, torch.Tensor]


def magnitude(parameters: Mapping[str, nn.Parameter]) -> Scores:
    """|w| for each parameter."""
    return {name: param.detach().abs().clone() for name, param in parameters.items()}


def gradient_saliency(
    model: nn.Module,
    parameters: Mapping[str, nn.Parameter],
    batches: Batches,
    objective: Objective,
    score_batches: int,
) -> Scores:
    """Σ over the first `score_batches` batches of |w ⊙ ∂objective/∂w|, all accumulated before masking.

    Gradients are taken in train mode (batch statistics in BatchNorm, as during training); the
    model's weights, buffers, grads and mode are restored afterwards.
    """
    if score_batches <= 0:
        raise ValueError(f"score_batches must be positive, got {score_batches}")
    scores = {name: torch.zeros_like(param) for name, param in parameters.items()}
    used = 0
    with _model_restored(model):
        model.train()
        for x, y in itertools.islice(batches, score_batches):
            model.zero_grad(set_to_none=True)
            loss = objective(model, x, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"scoring: the loss is {float(loss)} at batch {used}")
            loss.backward()
            with torch.no_grad():
                for name, param in parameters.items():
                    scores[name] += (param * param.grad).abs()
            used += 1
    if used < score_batches:
        raise ValueError(f"scoring asked for {score_batches} batches but the data gave only {used}")
    return scores


def teacher_guided(
    model: nn.Module,
    parameters: Mapping[str, nn.Parameter],
    batches: Batches,
    objective: Distill,
    score_batches: int,
) -> Scores:
    """Ours: gradient saliency of the joint loss α · CA-KLD + (1 − α) · CE under the teacher."""
    return gradient_saliency(model, parameters, batches, objective, score_batches)


def ce_gradient(model: nn.Module, parameters: Mapping[str, nn.Parameter], batches: Batches, score_batches: int) -> Scores:
    """Gradient saliency of cross-entropy alone, no teacher."""
    return gradient_saliency(model, parameters, batches, cross_entropy, score_batches)


@contextlib.contextmanager
def _model_restored(model: nn.Module) -> Iterator[None]:
    """Snapshot weights, buffers, grads and train/eval modes; put them back on exit."""
    state = {name: value.detach().clone() for name, value in model.state_dict().items()}
    grads = {name: param.grad for name, param in model.named_parameters()}
    modes = {module: module.training for module in model.modules()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, value in model.state_dict().items():
                value.copy_(state[name])
        for name, param in model.named_parameters():
            param.grad = grads[name]
        for module, training in modes.items():
            module.training = training


@dataclass(frozen=True)
class ScoringInputs:
    """What any scoring method may use; `distill` is needed only by teacher-guided scoring."""

    model: nn.Module
    parameters: Mapping[str, nn.Parameter]
    batches: Batches
    score_batches: int
    distill: Distill | None = None

    def require_distill(self) -> Distill:
        if self.distill is None:
            raise ValueError("teacher-guided scoring needs a teacher: pass distill=Distill(teacher, loss)")
        return self.distill


METHODS: dict[str, Callable[[ScoringInputs], Scores]] = {
    "teacher_guided": lambda s: teacher_guided(s.model, s.parameters, s.batches, s.require_distill(), s.score_batches),
    "ce_gradient": lambda s: ce_gradient(s.model, s.parameters, s.batches, s.score_batches),
    "magnitude": lambda s: magnitude(s.parameters),
}


def score(method: str, inputs: ScoringInputs) -> Scores:
    """Scores of the registered `method` (a key of `METHODS`)."""
    if method not in METHODS:
        raise ValueError(f"Unknown scoring method {method!r}; choose one of {', '.join(METHODS)}.")
    return METHODS[method](inputs)
