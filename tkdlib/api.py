"""Prune your own model: `prune` and `retrain` for any `nn.Module` and any batches of (x, y).

    mask = prune(student, teacher, batches, sparsity=0.9)      # teacher-guided scores → global mask
    retrain(student, teacher, train_batches, mask, epochs=5)   # KD retraining, the mask held fixed
    mask.save("mask.pt"); Mask.load("mask.pt").apply(student)  # a plain state dict + a JSON report
    mask.to_torch_prune(student)                               # hand over to torch.nn.utils.prune

Units: *sparsity* is the fraction of prunable weights removed (0.9 = 90 % zeros); the prunable
weights are those of every Conv1d/2d/3d and Linear layer (`tkdlib.masks.prunable_parameters`),
biases and normalization layers never. Student and teacher may be different architectures; they
must return logits (B, C) with the same C. Models and batches are used as given: put them on one
device yourself. Unless given, the loss settings and learning rates are the experiments' defaults
(`tkdlib.config.Config`).

What can be checked is checked before any training or scoring, with an error that says what to
do: the sparsity, the method, the teacher, the first batch (x (B, ...), y (B,) int64 class indices
in [0, C)), that student and teacher agree on C, and that a mask fits the model.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from tkdlib.config import Config
from tkdlib.losses import DistillationLoss, measure_gamma
from tkdlib.masks import Mask, global_mask, prunable_parameters, validate_layer_floor, validate_sparsity
from tkdlib.scoring import METHODS, TEACHER_SCORED, ScoringInputs, model_restored, score
from tkdlib.train import Batches, Distill, Objective, Schedule, cross_entropy, fit

Batch = tuple[torch.Tensor, torch.Tensor]
Exclude = Iterable[str] | Callable[[str], bool]


def prune(
    student: nn.Module,
    teacher: nn.Module | None,
    batches: Iterable[Batch],
    sparsity: float = 0.9,
    method: str = "teacher_guided",
    *,
    exclude: Exclude = (),
    score_batches: int | None = None,
    guide_epochs: int = 0,
    guide_lr: float = Config.guide_lr,
    alpha: float = Config.alpha,
    temperature: float = Config.temperature,
    gamma: float | None = None,
    normalize_logits: bool = Config.normalize_logits,
    calibration_batches: int = Config.calibration_batches,
    weight_decay: float = Config.weight_decay,
    allow_layer_collapse: bool = False,
    layer_floor: float = 0.0,
    seed: int = 0,
    progress: bool = False,
) -> Mask:
    """Score every prunable weight of `student`, keep the top (1 − sparsity) of them globally, and
    zero the rest in `student` (in place). Returns the `Mask` (True = kept).

    student, teacher: any modules mapping x (B, ...) to logits (B, C); `teacher` may be None for
    the teacher-free methods (given, it only checks the classes). When it guides, it is put in eval
    mode and frozen (``requires_grad_(False)``).
    batches: (x, y) pairs, y (B,) int64 class indices; a DataLoader, a list, a
    `tkdlib.loaders.TensorLoader`. An iterator or a loader without ``len()`` is read into a list first.
    method: a key of `tkdlib.scoring.METHODS` (``teacher_guided``, ``ce_gradient``, ``snip``,
    ``grasp``, ``synflow``, ``magnitude``, ``random``); the gradient methods accumulate over the
    first `score_batches` batches (None: the experiments' 10, or every batch if there are fewer;
    a number larger than ``len(batches)`` is an error). exclude: weights left dense, by parameter
    name or a predicate on the name.
    guide_epochs: teacher-guided fine-tuning of the dense student before scoring (0 by default, so
    that `prune` only prunes; the experiments use 2 at lr `guide_lr`): it changes `student`.
    alpha, temperature, gamma, normalize_logits: the loss α · CA-KLD + (1 − α) · CE
    (`tkdlib.losses.DistillationLoss`); gamma None measures the teacher's confidence over
    `calibration_batches` batches. allow_layer_collapse: let a layer lose every weight instead of
    raising `tkdlib.masks.LayerCollapseError`. layer_floor: every layer keeps at least this
    fraction of its weights (its highest-scoring ones; 0 = off, see `tkdlib.masks.global_mask`).
    seed: for ``random`` scores.
    """
    validate_sparsity(sparsity)
    validate_layer_floor(layer_floor)
    if method not in METHODS:
        raise ValueError(
            f"Unknown method {method!r}; choose one of {', '.join(METHODS)} "
            "(imp, colt and epsd are whole pipelines: run them with `python -m tkdlib prune`)."
        )
    uses_teacher = method in TEACHER_SCORED or guide_epochs > 0
    if uses_teacher and teacher is None:
        raise ValueError(
            "teacher-guided scoring and guide_epochs > 0 need a teacher: pass one, or choose a "
            "teacher-free method such as method='ce_gradient' or 'magnitude'."
        )
    guide = Schedule(guide_epochs, guide_lr, weight_decay=weight_decay)
    parameters = prunable_parameters(student, exclude=exclude)
    batches = reiterable(batches)
    x, _ = check_batches(student, teacher, batches)
    if score_batches is None:
        score_batches = min(Config.score_batches, len(batches))
    if score_batches > len(batches):
        raise ValueError(f"score_batches is {score_batches} but batches holds {len(batches)}: pass score_batches={len(batches)} or more data.")
    distill = distillation(teacher, batches, alpha, temperature, gamma, normalize_logits, calibration_batches) if uses_teacher else None
    if guide_epochs > 0:
        fit(student, batches, guide, distill, phase="guide", progress=progress)
    inputs = ScoringInputs(student, parameters, batches, score_batches, distill, sparsity, tuple(x.shape[1:]), seed)
    mask = global_mask(score(method, inputs), sparsity, allow_layer_collapse=allow_layer_collapse, layer_floor=layer_floor)
    mask.apply(student)
    return mask


def retrain(
    student: nn.Module,
    teacher: nn.Module | None,
    batches: Iterable[Batch],
    mask: Mask,
    epochs: int = Config.retrain_epochs,
    lr: float = Config.retrain_lr,
    *,
    alpha: float = Config.alpha,
    temperature: float = Config.temperature,
    gamma: float | None = None,
    normalize_logits: bool = Config.normalize_logits,
    calibration_batches: int = Config.calibration_batches,
    weight_decay: float = Config.weight_decay,
    eval_batches: Batches | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Train `student` (in place) with `mask` held fixed: pruned weights stay exactly zero.

    With a teacher the loss is α · CA-KLD + (1 − α) · CE (settings as in `prune`); with
    ``teacher=None`` it is CE alone. SGD with Nesterov momentum, a one-cycle schedule peaking at
    `lr`, for `epochs` passes over `batches`. Returns one dict per epoch: loss, test_accuracy (top-1
    in [0, 1] on `eval_batches`, None without them) and seconds.
    """
    mask.check_fits(student)
    schedule = Schedule(epochs, lr, weight_decay=weight_decay)
    batches = reiterable(batches)
    check_batches(student, teacher, batches)
    objective: Objective = cross_entropy
    if teacher is not None:
        objective = distillation(teacher, batches, alpha, temperature, gamma, normalize_logits, calibration_batches)
    return fit(student, batches, schedule, objective, mask=mask, eval_batches=eval_batches, phase="retrain", progress=progress)


def reiterable(batches: Iterable[Batch]) -> Batches:
    """`batches` as training needs them: one pass per epoch and a length (for the LR schedule).

    Lists, DataLoaders and `tkdlib.loaders.TensorLoader` are returned as they are. An iterator (a
    generator, ``iter(loader)``) or a loader without ``len()`` (over an IterableDataset) is read
    once into a list, so it must be finite and fit in memory.
    """
    if isinstance(batches, Iterator):
        return list(batches)
    try:
        len(batches)  # type: ignore[arg-type]
    except TypeError:
        return list(batches)
    return batches


def check_batches(student: nn.Module, teacher: nn.Module | None, batches: Batches) -> Batch:
    """Check the first batch and the models' outputs on it; return that batch (x, y).

    x (B, ...) must give logits (B, C) from the student and, if given, (B, C) from the teacher with
    the same C; y must be (B,) int64 class indices in [0, C). The models run in eval mode without
    gradients and are left exactly as they were.
    """
    first = next(iter(batches), None)
    if first is None:
        raise ValueError("batches is empty: give at least one (x, y) batch")
    if not (isinstance(first, (tuple, list)) and len(first) == 2 and all(isinstance(t, torch.Tensor) for t in first)):
        raise ValueError(f"each batch must be a pair (x, y) of tensors, got {type(first).__name__}")
    x, y = first
    if x.ndim == 0 or y.shape != (x.shape[0],):
        raise ValueError(
            f"labels must have shape (B,), one class index per input; inputs have shape {tuple(x.shape)} "
            f"but labels {tuple(y.shape)} (one-hot or soft labels? pass y.argmax(dim=1))"
        )
    if y.dtype != torch.long:
        raise ValueError(f"labels must be int64 class indices, got dtype {y.dtype}: pass y.long()")
    classes = _num_outputs(student, x, "student")
    if teacher is not None and (teacher_classes := _num_outputs(teacher, x, "teacher")) != classes:
        raise ValueError(f"the teacher has {teacher_classes} outputs but the student has {classes}: both must predict the same classes")
    if len(y) and not 0 <= int(y.min()) <= int(y.max()) < classes:
        raise ValueError(f"labels must lie in [0, {classes}) for a model with {classes} outputs; this batch has labels {int(y.min())} to {int(y.max())}")
    return x, y


def _num_outputs(model: nn.Module, x: torch.Tensor, role: str) -> int:
    """C of the logits (B, C) that `model` returns for x (B, ...), in eval mode; the model is restored."""
    with model_restored(model), torch.no_grad():
        model.eval()
        logits = model(x)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != x.shape[0]:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"the {role} must return logits of shape (B, C); for inputs of shape {tuple(x.shape)} it returned {got}")
    return logits.shape[1]


def distillation(
    teacher: nn.Module,
    batches: Batches,
    alpha: float,
    temperature: float,
    gamma: float | None,
    normalize_logits: bool,
    calibration_batches: int,
) -> Distill:
    """The joint loss against `teacher`; gamma None is measured on the first `calibration_batches` batches."""
    if gamma is None:
        gamma = measure_gamma(teacher, itertools.islice(batches, calibration_batches))
    return Distill(teacher, DistillationLoss(alpha, temperature, gamma, normalize_logits))
