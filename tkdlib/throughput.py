"""Throughput: images per second of batch loaders and of training steps.

Used by ``benchmarks/loader.py`` and ``scripts/check_data.py`` to compare `TensorLoader` with the
conventional torchvision pipeline on the same arrays, and to show whether loading or training
bounds an epoch. Rates are wall-clock images per second on whatever the machine is doing at the
time, so each is the best of `repeats` measurements.
"""

from __future__ import annotations

import argparse
import copy
import functools
import itertools
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from time import perf_counter

import torch
from torch import nn

from tkdlib.data import DatasetSpec, ImageArrays
from tkdlib.loaders import TensorLoader, torchvision_loader
from tkdlib.masks import HeldMask, global_mask, prunable_parameters
from tkdlib.models import build_model
from tkdlib.runtime import CPU, Runtime
from tkdlib.scoring import magnitude
from tkdlib.train import Objective, cross_entropy


def loader_rate(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], max_batches: int, warmup: int = 1) -> float:
    """Images per second drawn from one pass over `batches`: the first `warmup` batches (worker
    start-up, first touches) are drawn but not timed, then at most `max_batches` are timed."""
    iterator = iter(batches)
    for _ in itertools.islice(iterator, warmup):
        pass
    images = 0
    start = perf_counter()
    for _, y in itertools.islice(iterator, max_batches):
        images += len(y)
    seconds = perf_counter() - start
    if images == 0:
        raise ValueError(f"no batches left to time after {warmup} warm-up batches; use more data or smaller batches")
    return images / seconds


@dataclass(frozen=True)
class LoaderComparison:
    """Images per second of `TensorLoader` and of the torchvision pipeline on the same data."""

    tensor: float
    torchvision: float
    workers: int

    @property
    def ratio(self) -> float:
        return self.tensor / self.torchvision

    def describe(self) -> str:
        return (
            f"TensorLoader {self.tensor:,.0f} img/s, torchvision DataLoader + PIL transforms "
            f"({self.workers} workers) {self.torchvision:,.0f} img/s: ratio {self.ratio:.1f}×"
        )


def compare_loaders(
    data: ImageArrays, spec: DatasetSpec, batch_size: int = 128, workers: int = 2, max_batches: int = 100, repeats: int = 3
) -> LoaderComparison:
    """Training-mode (shuffle, crop, flip, normalize) rates of both loaders on `data`, measured
    alternately, `repeats` times each, best of each kept."""
    tensor, vision = [], []
    for repeat in range(repeats):
        fast = TensorLoader(data, batch_size, spec.mean, spec.std, train=True, seed=repeat, pad=spec.pad)
        tensor.append(loader_rate(fast, max_batches))
        vision.append(loader_rate(torchvision_loader(data, batch_size, spec, train=True, workers=workers, seed=repeat), max_batches))
    return LoaderComparison(max(tensor), max(vision), workers)


def train_step_rate(
    arch: str, batch_size: int, image_size: int, num_classes: int, steps: int = 10, warmup: int = 2, repeats: int = 2,
    runtime: Runtime = CPU,
) -> float:
    """Images per second of SGD training steps of a fresh `arch` (forward, cross-entropy, backward,
    update) on random (batch_size, 3, image_size, image_size) channels_last batches, under
    `runtime` (resolved; its device and autocast, never compiled nor distributed); best of `repeats`."""
    torch.manual_seed(0)
    model = build_model(arch, num_classes).to(runtime.torch_device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = random_batch(batch_size, image_size, num_classes, runtime.torch_device)
    step = functools.partial(train_step, model, optimizer, x, y, runtime)
    seconds = time_alternately({"train": step}, steps, warmup, repeats, device=runtime.torch_device)
    return batch_size / seconds["train"]


@functools.cache
def reference_rate(runtime: Runtime) -> float:
    """How fast this machine trains, as a run's record states it (``environment.reference_rate``):
    images per second of ResNet-20 training steps at batch 128 on 32 × 32 images, 10 classes,
    under `runtime` (resolved), the workload ``benchmarks/loader.py`` times. Best of 3 timings
    of 2 steps after a warm-up step: about 2 s on 2 CPU cores. Measured once per process and
    runtime, before its first run, so runs of one sitting share it; a run's wall seconds times it
    (the work done, in reference images) compare across machines of one name that differ in speed."""
    return train_step_rate("resnet20", 128, 32, 10, steps=2, warmup=1, repeats=3, runtime=runtime)


def add_step_timing_arguments(
    parser: argparse.ArgumentParser, *, steps: int, repeats: int, sparsity: float | None = 0.9
) -> None:
    """Add the options the step-timing benchmarks share: ``--batch-size`` (images per step),
    ``--sparsity`` (fraction of prunable weights the held mask removes; left out when `sparsity`
    is None, for steps without a mask), ``--steps`` (consecutive steps per timing, default
    `steps`), ``--repeats`` (paired timings of each kind of step, default `repeats`) and
    ``--threads`` (for `use_threads`)."""
    parser.add_argument("--batch-size", type=int, default=128, help="images per step")
    if sparsity is not None:
        parser.add_argument("--sparsity", type=float, default=sparsity, help="fraction of prunable weights removed")
    parser.add_argument("--steps", type=int, default=steps, help="consecutive steps per timing")
    parser.add_argument("--repeats", type=int, default=repeats, help="paired timings of each kind of step")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def use_threads(threads: int | None) -> None:
    """Let torch use `threads` CPU threads (None: leave torch's default). Where other processes
    load the cores, one thread times with far less noise: with two, every op waits whenever
    either thread is descheduled."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be a positive number, got {threads}")
        torch.set_num_threads(threads)


def random_batch(
    batch_size: int, image_size: int, num_classes: int, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Standard-normal images (batch_size, 3, image_size, image_size), channels_last, and uniform
    class indices (batch_size,): synthetic data, good for timing only."""
    x = torch.randn(batch_size, 3, image_size, image_size, device=device).contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, num_classes, (batch_size,), device=device)


def timing_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer of the step-timing benchmarks: SGD with Nesterov momentum and weight decay, as
    `tkdlib.train.fit` uses (the learning rate does not change a step's time)."""
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True)


def masked_student(seed_model: nn.Module, sparsity: float) -> tuple[nn.Module, torch.optim.Optimizer, HeldMask]:
    """A copy of `seed_model` with its `timing_optimizer` and a magnitude mask removing `sparsity`
    of its prunable weights, held by a `HeldMask` (call its ``remove`` when done, or use it as a
    context manager): the student of the step-timing benchmarks."""
    model = copy.deepcopy(seed_model)
    optimizer = timing_optimizer(model)
    held = HeldMask(model, global_mask(magnitude(prunable_parameters(model)), sparsity), optimizer)
    return model, optimizer, held


def median_paired_speedup(baseline_seconds: Sequence[float], candidate_seconds: Sequence[float]) -> float:
    """The median over the pairs of `alternate_timings` values of two tasks (the i-th of each,
    measured next to each other) of baseline seconds / candidate seconds: above 1 where the
    candidate is faster. Pairing cancels the machine's drift between repeats."""
    return statistics.median(b / c for b, c in zip(baseline_seconds, candidate_seconds, strict=True))


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, runtime: Runtime = CPU,
    objective: Objective = cross_entropy,
) -> None:
    """One SGD step: zero the gradients, forward and `objective` (cross-entropy by default; e.g. a
    `tkdlib.train.Distill`) under `runtime`'s autocast (float32 by default), backward, update."""
    optimizer.zero_grad(set_to_none=True)
    with runtime.autocast():
        loss = objective(model, x, y)
    loss.backward()
    optimizer.step()


def time_alternately(
    tasks: Mapping[str, Callable[[], object]],
    calls: int,
    warmup: int = 2,
    repeats: int = 3,
    summary: Callable[[list[float]], float] = min,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Per task name, `summary` (default: the best, `min`; or `statistics.median`) of the
    seconds per call that `alternate_timings` measures."""
    return {name: summary(values) for name, values in alternate_timings(tasks, calls, warmup, repeats, device).items()}


def alternate_timings(
    tasks: Mapping[str, Callable[[], object]],
    calls: int,
    warmup: int = 2,
    repeats: int = 3,
    device: str | torch.device = "cpu",
) -> dict[str, list[float]]:
    """Wall seconds per call of each task, measured side by side: per task, one value per repeat.

    Each task is first called `warmup` times untimed; then, `repeats` times over, each task in
    turn (in reverse order every other time, so none always follows another) is timed over
    `calls` consecutive calls, so a change in the machine's load hits all tasks alike and the
    i-th values of two tasks were measured next to each other. On CUDA the device is
    synchronized before each clock reading.
    """
    if calls < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"need calls ≥ 1, repeats ≥ 1, warmup ≥ 0; got {calls}, {repeats}, {warmup}")
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    for task in tasks.values():
        for _ in range(warmup):
            task()
    times: dict[str, list[float]] = {name: [] for name in tasks}
    for repeat in range(repeats):
        for name, task in list(tasks.items())[:: -1 if repeat % 2 else 1]:
            sync()
            start = perf_counter()
            for _ in range(calls):
                task()
            sync()
            times[name].append((perf_counter() - start) / calls)
    return times
