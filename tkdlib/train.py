"""Training and evaluation for dense and masked models, with or without a teacher.

An *objective* maps ``(model, x, y)`` to a scalar loss: `cross_entropy` for plain training,
`Distill` for training under a frozen teacher with the joint loss α · CA-KLD + (1 − α) · CE.
`fit` runs SGD with Nesterov momentum under a one-cycle (cosine) learning-rate schedule; with a
`Mask` it holds the mask so pruned weights stay exactly zero. A `Runtime` says how training
executes (autocast precision, several processes, compilation); the default is float32 in one
process, on whatever device the model is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from tkdlib.compute import ComputeMeter
from tkdlib.loaders import random_crop_flip
from tkdlib.io import load_checkpoint
from tkdlib.losses import DistillationLoss, kd_kl
from tkdlib.masks import HeldMask, Mask
from tkdlib.runtime import CPU, Runtime, mean_across_ranks, save_shared

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CE(model(x), y): x (B, 3, H, W), y (B,) class indices; a scalar."""
    return F.cross_entropy(model(x), y)


class Distill:
    """The joint loss against a frozen teacher; the teacher is put in eval mode and never trained."""

    def __init__(self, teacher: nn.Module, loss: DistillationLoss) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.loss = loss

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        return self.loss(model(x), teacher_logits, y)


class SelfDistill:
    """Self-distillation without a teacher (EPSD's training signal; our choice of SD method).

    The model's own prediction on a second, independently augmented view of the batch (random
    shift by up to `pad` pixels and flip of the normalized images) is the detached target:
    L = (1 − weight) · CE(f(x), y) + weight · T² · KL(softmax(f(x')/T) ‖ softmax(f(x)/T)).
    """

    def __init__(self, weight: float = 0.5, temperature: float = 4.0, pad: int = 4, seed: int = 0) -> None:
        self.weight = weight
        self.temperature = temperature
        self.pad = pad
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = model(random_crop_flip(x, self.pad, self.generator))
        logits = model(x)
        distill = kd_kl(logits, target, self.temperature)
        return (1 - self.weight) * F.cross_entropy(logits, y) + self.weight * distill


@dataclass(frozen=True)
class Schedule:
    """SGD settings for one training phase. lr is the peak of the one-cycle schedule, which spans
    `epochs`; with `stop_after`, training stops after that many of them (the learning rate then
    follows the first `stop_after` epochs of the full schedule, as a snapshot of it would)."""

    epochs: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_fraction: float = 0.15
    stop_after: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be ≥ 0, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.stop_after is not None and not 0 <= self.stop_after <= self.epochs:
            raise ValueError(f"stop_after must be between 0 and epochs ({self.epochs}), got {self.stop_after}")

    @property
    def epochs_to_train(self) -> int:
        return self.epochs if self.stop_after is None else self.stop_after


@runtime_checkable
class RandomObjective(Protocol):
    """An objective that draws random numbers (`SelfDistill`'s second view) from its own generator."""

    generator: torch.Generator


@runtime_checkable
class EpochCounted(Protocol):
    """Batches whose order depends on how many epochs they have served (`TensorLoader`), so a
    resumed training can draw the batches it would have drawn."""

    epoch: int


FINISHED_STEPS = "finished_steps"  # in a finished phase's reduced state (no optimizer): the steps of its schedule


@dataclass
class EpochState:
    """Where `fit` keeps its whole training state after every epoch, so that a training killed
    midway continues from its last finished epoch instead of from the start.

    The file holds the model, optimizer, learning-rate schedule and gradient-scaler states, the
    history so far and whatever `save_extra` returns (the caller's own state, e.g. the compute
    counted so far); on resuming, `load_extra` gets that back. With `EpochCounted` batches and a
    deterministic device (the CPU) a resumed training ends with the same weights, bit for bit, as
    an uninterrupted one. `fit` leaves the file in place: the caller removes it once it has saved
    what the training produced (a `fit` that finds a finished state simply returns its history).
    A finished phase's state may be reduced to its model, history and extra, with its schedule's
    step count under `FINISHED_STEPS` in place of the optimizer (how `tkdlib.parking` commits it).
    """

    path: Path
    save_extra: Callable[[], dict[str, Any]] = dict
    load_extra: Callable[[dict[str, Any]], None] = lambda extra: None

    @classmethod
    def metered(cls, path: Path, meter: ComputeMeter, objective: Objective | None = None) -> EpochState:
        """An `EpochState` at `path` that also keeps the running phase's cost in `meter` and the
        random state of `objective` (one that draws numbers from its `generator`), so a resumed
        phase counts every image once and draws what the uninterrupted one would."""
        generator = objective.generator if isinstance(objective, RandomObjective) else None

        def save_extra() -> dict[str, Any]:
            return {"cost": meter.so_far(), "generator": generator.get_state() if generator is not None else None}

        def load_extra(extra: dict[str, Any]) -> None:
            meter.resume(extra["cost"])
            if generator is not None:
                generator.set_state(extra["generator"])

        return cls(path, save_extra, load_extra)

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                scaler: torch.amp.GradScaler, batches: Batches) -> list[dict[str, Any]]:
        """Load a saved state into the given objects; returns the history of the epochs it covers
        (empty when there is no readable state file)."""
        state = load_checkpoint(self.path)
        if state is None:
            return []
        model.load_state_dict(state["model"])
        if FINISHED_STEPS in state:  # a finished phase's reduced state (`tkdlib.parking`): nothing is left to train
            if state[FINISHED_STEPS] != scheduler.total_steps:
                raise ValueError(
                    f"{self.path} holds a finished training of {state[FINISHED_STEPS]} steps, but this phase takes "
                    f"{scheduler.total_steps}: it belongs to another schedule; delete it to train this phase again"
                )
        else:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
        self.load_extra(state["extra"])
        if isinstance(batches, EpochCounted):
            batches.epoch += len(state["history"])
        return state["history"]

    def save(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
             scaler: torch.amp.GradScaler, history: list[dict[str, Any]]) -> None:
        """Write the state after an epoch, atomically (rank 0; every rank must call it)."""
        save_shared(self.path, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "history": history, "extra": self.save_extra(),
        })


@torch.no_grad()
def evaluate(model: nn.Module, batches: Batches) -> float:
    """Top-1 accuracy in [0, 1] over `batches`, in eval mode (the model's mode is restored)."""
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for x, y in batches:
            correct += int((model(x).argmax(dim=-1) == y).sum())
            total += len(y)
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("evaluate got no batches")
    return correct / total


def train_epoch(
    model: nn.Module,
    batches: Batches,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    description: str = "train",
    progress: bool = False,
    runtime: Runtime = CPU,
    scaler: torch.amp.GradScaler | None = None,
) -> float:
    """One pass over `batches`; returns the mean loss (over every rank's batches). Stops on a
    non-finite loss, naming the step.

    `model` may be the wrapper that `Runtime.trainer` makes; forwards run under
    ``runtime.autocast()``; backward and step go through `scaler` (default
    ``runtime.grad_scaler()``: loss scaling for fp16, a pass-through otherwise).
    """
    scaler = scaler or runtime.grad_scaler()
    model.train()
    total_loss, steps = 0.0, 0
    for step, (x, y) in enumerate(tqdm(batches, desc=description, leave=False, disable=not progress)):
        with runtime.autocast():
            loss = objective(model, x, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{description}: the loss is {float(loss.detach())} at batch {step}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        total_loss += float(loss.detach())
        steps += 1
    return mean_across_ranks(total_loss / max(steps, 1))


def fit(
    model: nn.Module,
    train_batches: Batches,
    schedule: Schedule,
    objective: Objective = cross_entropy,
    mask: Mask | None = None,
    eval_batches: Batches | None = None,
    phase: str = "train",
    progress: bool = False,
    on_epoch_end: Callable[[dict[str, Any], nn.Module], None] | None = None,
    runtime: Runtime = CPU,
    epoch_state: EpochState | None = None,
) -> list[dict[str, Any]]:
    """Train `model` for `schedule.epochs_to_train`; returns one dict per epoch (loss, test accuracy, seconds).

    `train_batches` must be re-iterable (one pass per epoch) and have a length. With `mask`, the
    pruned weights are zeroed before training and stay exactly zero throughout. `on_epoch_end`
    is called after each epoch with its history entry (``epoch`` counted from 1, ``loss``, ...)
    and the model. `runtime` (resolved)
    sets the precision and, under a process group, trains through DistributedDataParallel. With
    `epoch_state`, training resumes from the state saved there and saves it after every epoch.
    """
    if schedule.epochs_to_train == 0:
        return []
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=schedule.lr,
        momentum=schedule.momentum,
        weight_decay=schedule.weight_decay,
        nesterov=schedule.momentum > 0,
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=schedule.lr,
        total_steps=schedule.epochs * len(train_batches),  # type: ignore[arg-type]
        pct_start=schedule.warmup_fraction,
    )
    scaler = runtime.grad_scaler()
    history = epoch_state.restore(model, optimizer, scheduler, scaler, train_batches) if epoch_state else []
    held = HeldMask(model, mask, optimizer) if mask is not None else None
    trainer = runtime.trainer(model)
    try:
        for epoch in range(len(history), schedule.epochs_to_train):
            start = time.perf_counter()
            description = f"{phase} epoch {epoch + 1}/{schedule.epochs}"
            loss = train_epoch(trainer, train_batches, objective, optimizer, scheduler, description, progress, runtime, scaler)
            seconds = time.perf_counter() - start
            accuracy = evaluate(model, eval_batches) if eval_batches is not None else None
            history.append({"epoch": epoch + 1, "loss": loss, "test_accuracy": accuracy, "seconds": seconds})
            if on_epoch_end is not None:
                on_epoch_end(history[-1], model)
            if epoch_state is not None:  # after the callback, so a resumed training never skips it
                epoch_state.save(model, optimizer, scheduler, scaler, history)
    finally:
        if held is not None:
            held.remove()
    return history
