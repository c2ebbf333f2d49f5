"""Which kind of machine trained a run, as its record and the benchmarks name it.

On the CPU, training repeats bit for bit only on the same kind of processor: torch picks its SIMD
kernels by what the CPU supports (`torch.backends.cpu.get_cpu_capability`: ``AVX2``, ``AVX512``,
...) and oneDNN its blocking by CPU model, and both change the order of floating-point sums. The
model name alone does not tell the kind: a virtual machine may call both an AVX2 part of x86
family 23 (Zen 2) and an AVX512 part of family 25 just "AMD EPYC". The family and model numbers
and torch's capability do, so a record's ``environment`` keeps all of them (`cpu_identity`).
Shared checkpoints are committed files (`tkdlib.checkpoints`), so no run depends on repeating
another machine's training; the machine is recorded to explain timings and small differences.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["KIND_FIELDS", "cpu_identity", "describe", "machine_kind", "this_machine"]

#: The ``environment`` fields of a record that say which kind of machine trained it.
KIND_FIELDS = ("device", "cpu_model", "cpu_family", "cpu_model_number", "cpu_capability")
UNRECORDED = "an unrecorded processor"


def cpu_identity(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, str | None]:
    """This CPU as a record keeps it: ``cpu_model`` (the model name from `cpuinfo`, else what
    `platform` says), ``cpu_family`` and ``cpu_model_number`` (x86 family and model numbers as
    strings; None where `cpuinfo` has none) and ``cpu_capability`` (the SIMD kernels torch runs)."""
    fields = {"model name": None, "cpu family": None, "model": None}
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key in fields and fields[key] is None:  # the first processor's lines
                fields[key] = value
    return {
        "cpu_model": fields["model name"] or platform.processor() or platform.machine(),
        "cpu_family": fields["cpu family"],
        "cpu_model_number": fields["model"],
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def machine_kind(environment: Mapping[str, Any]) -> dict[str, str]:
    """The `KIND_FIELDS` that `environment` (a record's, or this machine's) names, without the
    missing ones: records made before a field existed simply lack it."""
    return {field: str(environment[field]) for field in KIND_FIELDS if environment.get(field) is not None}


def describe(kind: Mapping[str, str]) -> str:
    """`kind` in words: "AMD EPYC (family 23, model 49, AVX2)", "Intel(R) Xeon(R) Processor
    (AVX512)", a GPU's name where the device is not the CPU, or "an unrecorded processor"."""
    if kind.get("device", "cpu") != "cpu":
        return kind["device"]
    if "cpu_model" not in kind:
        return UNRECORDED
    details = [f"family {kind['cpu_family']}, model {kind['cpu_model_number']}"] if "cpu_family" in kind and "cpu_model_number" in kind else []
    details += [kind["cpu_capability"]] if "cpu_capability" in kind else []
    return kind["cpu_model"] + (f" ({', '.join(details)})" if details else "")


def this_machine(device: str) -> dict[str, str]:
    """The `machine_kind` of this machine when it trains on `device` (a resolved runtime's
    device name: ``cpu`` or the GPU's name)."""
    return machine_kind({"device": device, **cpu_identity()})
