"""Where and how a run executes: device, precision, compilation and processes. None of it is the
science, so none of it is in `Config` or in a run's hash; the record's ``environment`` says it.

`Runtime` holds the settings; `Runtime.resolved()` turns "auto" into concrete choices and refuses
impossible ones before any work. The default (device and precision "auto") is the CPU in float32
where there is no GPU: bf16 autocast on a processor with native bf16 instructions
(`native_cpu_bf16`: AVX512-BF16 or AMX; 1.5× faster training here), float32 elsewhere; on CUDA
it is bf16 autocast (fp16 with a gradient scaler where bf16 is unsupported) and cuDNN autotuning.
`Runtime("cpu", "fp32")` (`CPU`) gives exactly the results of the CPU-only code.

Several processes (``torchrun``): `distributed(runtime)` joins the process group torchrun describes
in its environment variables (nccl on CUDA, gloo on the CPU). Then training wraps the model in
DistributedDataParallel (gradients averaged over ranks), each rank loads its slice of every global
batch (`tkdlib.loaders.TensorLoader`), gradient scores are averaged over ranks batch by batch, so every
rank builds the same mask, and only rank 0 writes files (`save_shared`). On CUDA, BatchNorm becomes
SyncBatchNorm: statistics over the global batch, as in one process (gloo has no SyncBatchNorm, so
on the CPU each rank normalizes over its own slice).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import distributed as dist
from torch import nn

from tkdlib.io import save_torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Runtime:
    """Execution settings of a run.

    device: "auto" (CUDA if available, else the CPU), "cpu", "cuda" or "cuda:N"; under torchrun a
    CUDA device without an index is the rank's own (``cuda:$LOCAL_RANK``). precision: "auto"
    (on the CPU bf16 where `native_cpu_bf16`, else fp32; bf16 on CUDA, or fp16 where bf16 is
    unsupported), "fp32", "bf16" or "fp16":
    training runs under autocast to that type (fp16 with a gradient scaler); scoring and evaluation
    stay in float32, so masks do not depend on the precision. compile: wrap the training model in
    `torch.compile` (off by default: it pays only for long phases).
    """

    device: str = "auto"
    precision: str = "auto"
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def resolved(self) -> Runtime:
        """These settings with "auto" replaced; a `ValueError` says what to change when the
        machine cannot honour them (no CUDA, fp16 on the CPU, bf16 on a GPU without it)."""
        name = ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
        try:
            device = torch.device(name)
        except RuntimeError:
            device = None
        if device is None or device.type not in ("cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(f"device {self.device!r} needs CUDA, which this machine lacks; use --device cpu (or auto)")
            if device.index is None:
                device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        precision = self.precision
        if precision == "auto":
            if device.type == "cpu":
                precision = "bf16" if native_cpu_bf16() else "fp32"
            else:
                precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        if precision == "fp16" and device.type == "cpu":
            raise ValueError("precision fp16 needs a CUDA device; on the CPU use bf16 (autocast) or fp32")
        if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"{torch.cuda.get_device_name(device)} does not support bf16; use precision fp16 (or fp32)")
        return replace(self, device=str(device), precision=precision)

    @property
    def torch_device(self) -> torch.device:
        """The device of resolved settings (`resolved()` first: "auto" is no device)."""
        if self.device == "auto" or self.precision == "auto":
            raise ValueError("these runtime settings are not resolved: call Runtime.resolved() first")
        return torch.device(self.device)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast to the precision's type for a forward pass; no context at all for fp32."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.torch_device.type, dtype=_AUTOCAST_DTYPES[self.precision])

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A loss scaler for fp16; a pass-through (scale(loss) is loss, step is optimizer.step) otherwise."""
        return torch.amp.GradScaler(self.torch_device.type, enabled=self.precision == "fp16")

    def prepare(self, model: nn.Module) -> nn.Module:
        """`model` on the device in channels_last memory format, with SyncBatchNorm on CUDA when
        several processes train it (parameters and buffers are kept; state_dict keys unchanged)."""
        model = model.to(self.torch_device, memory_format=torch.channels_last)
        if self.torch_device.type == "cuda" and world_size() > 1:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model

    def trainer(self, model: nn.Module) -> nn.Module:
        """What a training step calls forward on: `model` itself, or wrapped in
        DistributedDataParallel (several processes) and `torch.compile`; parameters are shared."""
        wrapped = model
        if world_size() > 1:
            device_ids = [self.torch_device.index] if self.torch_device.type == "cuda" else None
            wrapped = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        return torch.compile(wrapped) if self.compile else wrapped

    def describe(self) -> dict[str, Any]:
        """The record's account of these settings: device name, precision, compile, processes."""
        device = self.torch_device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        return {"device": name, "precision": self.precision, "compile": self.compile, "world_size": world_size()}


CPU = Runtime("cpu", "fp32")  #: float32 on the CPU in one process: what the code did before runtimes existed.


def native_cpu_bf16() -> bool:
    """Whether this processor computes in bf16 natively (AVX512-BF16 or AMX tiles), by torch's own
    capability checks: there bf16 autocast trains 1.4-1.6× faster than float32; elsewhere torch
    emulates bf16 and it is slower, so "auto" keeps float32."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def world_size() -> int:
    """Number of processes in the process group (1 without one)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_initialized() else 0


def barrier() -> None:
    """Wait until every process gets here (nothing to wait for in one process)."""
    if world_size() > 1:
        dist.barrier()


def average_across_ranks(tensors: Sequence[torch.Tensor]) -> None:
    """Replace each tensor, in place, by its mean over the ranks (untouched in one process)."""
    if world_size() == 1:
        return
    for tensor in tensors:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(world_size())


def mean_across_ranks(value: float) -> float:
    """The mean of a float over the ranks (`value` itself in one process)."""
    if world_size() == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=_collective_device())
    average_across_ranks([tensor])
    return float(tensor)


def global_mean(values: torch.Tensor) -> float:
    """The mean of `values` (any shape) over every rank's values, whatever their counts."""
    if world_size() == 1:
        return float(values.mean())
    totals = torch.tensor([float(values.sum()), values.numel()], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(totals, op=dist.ReduceOp.SUM)
    return float(totals[0] / totals[1])


def save_shared(path: str | Path, obj: Any) -> None:
    """Rank 0 saves `obj` to `path`; every rank then waits, so a later read on any rank finds it.
    Every rank must call it (it is a collective)."""
    if rank() == 0:
        save_torch(path, obj)
    barrier()


def _collective_device() -> torch.device:
    """Where small tensors for collectives live: nccl needs them on the rank's GPU."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


@contextlib.contextmanager
def distributed(runtime: Runtime) -> Iterator[None]:
    """Join the process group that torchrun describes (``WORLD_SIZE`` > 1 in the environment) for
    the duration, with nccl on CUDA and gloo on the CPU; nothing happens in a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield
        return
    device = runtime.resolved().torch_device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def tune_for(runtime: Runtime) -> None:
    """Process-wide speed settings for `runtime`'s device: cuDNN autotuning on CUDA (the
    convolution shapes are fixed within a run). Nothing on the CPU."""
    if runtime.torch_device.type == "cuda":
        torch.backends.cudnn.benchmark = True
