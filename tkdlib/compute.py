"""Compute accounting: images passed forward and backward per phase, and a FLOP estimate.

FLOPs of one forward pass are counted once per model with `torch.utils.flop_counter.FlopCounterMode`
on a single image (dense: sparsity is not exploited by the kernels, so a pruned model costs the
same). A backward pass is counted as twice the forward FLOPs, the usual estimate. A training or
scoring forward of the student is one whose model is in train mode; the teacher's forwards are
counted in any mode. Evaluation passes (student in eval mode) are not counted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def forward_flops(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """FLOPs of one forward pass of `model` on one image of shape (C, H, W), in eval mode."""
    was_training = model.training
    model.eval()
    parameter = next(model.parameters())
    x = torch.zeros((1, *input_shape), device=parameter.device, dtype=parameter.dtype)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


@dataclass
class PhaseCost:
    """Cost of one phase: wall seconds, images through the student forward and backward,
    images through the teacher forward, and estimated FLOPs."""

    seconds: float = 0.0
    student_forward: int = 0
    student_backward: int = 0
    teacher_forward: int = 0
    flops: float = 0.0


class ComputeMeter:
    """Counts images through the watched students and teachers with forward hooks.

    Use `phase(name)` as a context manager around each phase; `costs` holds one `PhaseCost` per
    phase name (a name used again accumulates). With `processes` > 1 (a process group, each rank
    seeing its equal slice of every batch) each rank counts the images of all of them.
    """

    def __init__(self, student_flops: int, teacher_flops: int = 0, processes: int = 1) -> None:
        self.student_flops = student_flops
        self.teacher_flops = teacher_flops
        self.processes = processes
        self.costs: dict[str, PhaseCost] = {}
        self._current: PhaseCost | None = None
        self._started = 0.0
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def watch(self, student: nn.Module) -> None:
        """Count this model's train-mode forwards (and backwards) as the student's."""
        self._handles.append(student.register_forward_hook(self._count_student))

    def watch_teacher(self, teacher: nn.Module) -> None:
        """Count this model's forwards as the teacher's."""
        self._handles.append(teacher.register_forward_hook(self._count_teacher))

    def _count_student(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if self._current is not None and module.training:
            images = inputs[0].shape[0] * self.processes
            self._current.student_forward += images
            if torch.is_grad_enabled():
                self._current.student_backward += images

    def _count_teacher(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if self._current is not None:
            self._current.teacher_forward += inputs[0].shape[0] * self.processes

    @contextmanager
    def phase(self, name: str) -> Iterator[PhaseCost]:
        cost = self.costs.setdefault(name, PhaseCost())
        self._current = cost
        self._started = time.perf_counter()
        try:
            yield cost
        finally:
            cost.seconds += time.perf_counter() - self._started
            cost.flops = self._flops(cost)
            self._current = None

    def _flops(self, cost: PhaseCost) -> float:
        return (cost.student_forward + 2 * cost.student_backward) * self.student_flops + cost.teacher_forward * self.teacher_flops

    def so_far(self) -> dict[str, float]:
        """The running phase's cost until now (seconds included), as a dict of `PhaseCost` fields:
        what a resumable training saves beside its state."""
        if self._current is None:
            raise RuntimeError("so_far() is only meaningful inside `phase(...)`")
        cost = PhaseCost(**asdict(self._current))
        cost.seconds += time.perf_counter() - self._started
        cost.flops = self._flops(cost)
        return asdict(cost)

    def resume(self, cost: dict[str, float]) -> None:
        """Set the running phase's cost to `cost`, what `so_far` returned in an interrupted process
        at the point this one resumes from; time spent here from then on is added when the phase ends."""
        if self._current is None:
            raise RuntimeError("resume() is only meaningful inside `phase(...)`")
        for name in ("student_forward", "student_backward", "teacher_forward"):
            setattr(self._current, name, int(cost[name]))
        self._current.seconds = cost["seconds"]
        self._started = time.perf_counter()

    def add(self, name: str, cost: PhaseCost) -> None:
        """Record a phase measured elsewhere (e.g. a shared checkpoint's training, loaded from disk)."""
        self.costs[name] = cost

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {name: {**asdict(cost), "seconds": round(cost.seconds, 3)} for name, cost in self.costs.items()}
