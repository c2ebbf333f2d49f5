"""One experiment, end to end: `Config` in, a JSON run record out.

Phases: train the teacher → train the dense student → measure γ → run the method's pipeline
(`tkdlib.pipelines`: e.g. teacher-guided fine-tuning → score → global mask → retrain under the
fixed mask) → evaluate. The teacher and the dense student are checkpoints shared by every run
that needs the same ones (keyed by the config fields they depend on), so a profile trains each
once; they carry the cost of their training, so every record can count it. A run lives in
``<out_dir>/<hash of its config>/``; a run whose record exists is returned without
recomputation. Every file is written atomically.

How the run executes (device, precision, processes) is a `tkdlib.runtime.Runtime`, recorded in
the record's ``environment`` and not part of the config. Under a process group (torchrun) every
rank runs this code in step; only rank 0 writes files.
"""

from __future__ import annotations

import copy
import itertools
import json
import platform
import shutil
import subprocess
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tkdlib.checkpoints import CHECKPOINTS, CheckpointHashError, record_sha256, round_to_storage, sparse_model_path
from tkdlib.compute import ComputeMeter, PhaseCost, forward_flops
from tkdlib.config import SELF_TEACHER, Config
from tkdlib.io import save_torch, write_json
from tkdlib.losses import DistillationLoss, measure_gamma
from tkdlib.machine import cpu_identity
from tkdlib.masks import prunable_parameters
from tkdlib.parking import PARTIAL_DIR, parked_files, unpark
from tkdlib.pipelines import Workbench, counted_phases, pipeline_for
from tkdlib.runtime import Runtime, barrier, rank, tune_for, world_size
from tkdlib.shared_networks import RunData, SharedNetworks, check_writable
from tkdlib.sparse_checkpoint import save_sparse, save_sparse_mask
from tkdlib.throughput import reference_rate
from tkdlib.train import Distill, evaluate

__all__ = ["Config", "RECORD_NAME", "finished_records", "load_record", "read_record", "run", "run_dir"]

RECORD_NAME = "record.json"


def run_dir(config: Config, out_dir: str | Path) -> Path:
    """The folder of the run of `config` under `out_dir`."""
    return Path(out_dir) / config.key()


def read_record(directory: str | Path, config: Config | None = None) -> dict[str, Any] | None:
    """The complete record in `directory`, finished or failed (its ``status``), or None if there is none.

    A record that cannot be read, is incomplete or belongs to another config is reported with a
    warning and treated as absent, so the run is redone.
    """
    path = Path(directory) / RECORD_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        complete = record.get("status") in ("finished", "failed") and isinstance(record.get("config"), dict)
    except (OSError, json.JSONDecodeError, AttributeError) as error:
        warnings.warn(f"{path} is unreadable ({error}); the run will be redone", stacklevel=2)
        return None
    if not complete or (record["status"] == "finished" and not _REQUIRED_KEYS <= set(record)):
        warnings.warn(f"{path} is incomplete; the run will be redone", stacklevel=2)
        return None
    if config is not None and record["config"] != config.to_dict():
        warnings.warn(f"{path} holds the record of another config; the run will be redone", stacklevel=2)
        return None
    return record


def load_record(directory: str | Path, config: Config | None = None) -> dict[str, Any] | None:
    """The finished record in `directory`, or None if there is none (`read_record`); a failed
    run's record is absent too."""
    record = read_record(directory, config)
    return record if record is not None and record["status"] == "finished" else None


_REQUIRED_KEYS = {"config", "config_hash", "accuracy", "sparsity", "compute", "seconds", "data", "environment"}


def finished_records(out_dir: Path) -> list[dict[str, Any]]:
    """Every finished record directly under `out_dir` (`load_record` of each run folder)."""
    records = [load_record(path.parent) for path in sorted(out_dir.glob(f"*/{RECORD_NAME}"))]
    return [record for record in records if record is not None]


def _code_commit(folder: Path = Path(__file__).resolve().parent) -> str | None:
    """The last git commit that changed the code in `folder` (this library; suffixed ``-dirty`` with
    uncommitted changes there), or None outside a git checkout. Not HEAD: a batch's records are
    committed while it runs, and those commits leave the code as it was, so every cell of one batch
    names the same commit."""
    try:
        commit = subprocess.run(["git", "-C", str(folder), "log", "-1", "--format=%H", "--", "."], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--", "."], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    if not commit:  # a folder git does not track
        return None
    return commit + ("-dirty" if dirty.strip() else "")


def _weight_sparsity(parameters: dict[str, nn.Parameter]) -> float:
    """Fraction of exactly-zero entries over `parameters`, measured on the weights themselves."""
    total = sum(param.numel() for param in parameters.values())
    zeros = sum(int((param == 0).sum()) for param in parameters.values())
    return zeros / total


def _compute_summary(meter: ComputeMeter, counted: tuple[str, ...]) -> dict[str, Any]:
    """Per-phase costs, which of them the method pays, and their totals."""
    phases = meter.as_dict()
    paid = [phases[name] for name in counted if name in phases]
    totals = {key: round(sum(cost[key] for cost in paid), 3) for key in ("seconds", "student_forward", "student_backward", "teacher_forward", "flops")}
    return {"phases": phases, "counted": [name for name in counted if name in phases], "total": totals}


def run(
    config: Config, out_dir: str | Path, data_root: str | Path | None = None, progress: bool = False, runtime: Runtime | None = None
) -> dict[str, Any]:
    """Run `config` (or return its existing record); the record is also written to disk.

    `runtime` (default `Runtime()`: CUDA when available, else the CPU in float32) says how it
    executes; settings the machine cannot honour fail here, before any work. Under a process
    group every rank calls `run` with the same arguments and gets the record; rank 0 writes.

    A run that fails (a non-finite loss or score, a layer collapse, ...) leaves a record with
    ``status: "failed"`` and the error, keeps the checkpoints finished before the failure, and
    raises; running it again redoes it from those checkpoints. A run killed midway resumes from
    the last finished epoch of the phase it was in (states under ``<run>/partial/``); its
    ``seconds.total`` then counts this process only and ``seconds.resumed`` is true, while
    ``compute`` counts every epoch once (a scoring pass repeated on resuming, in the iterative
    variants, is counted again). A teacher or dense-student checkpoint on disk is used only if
    its bytes match its sha256 (`tkdlib.checkpoints.CheckpointHashError` otherwise, before any
    training); a missing one is trained again, a new lineage. The record names the digests of
    the checkpoints it used and of its retrained student, saved sparse under
    ``<out_dir>/checkpoints/sparse/`` (`tkdlib.checkpoints.sparse_model_path`); a run with
    ``retrain_epochs = 0`` saves its mask there alone (`tkdlib.sparse_checkpoint.save_sparse_mask`).
    """
    runtime = (runtime or Runtime()).resolved()
    directory = run_dir(config, out_dir)
    existing = load_record(directory, config)
    if existing is not None:
        return existing
    started = time.perf_counter()
    if rank() == 0:
        unpark(directory)  # a run parked by an earlier sitting resumes where it stopped
    barrier()
    resumed = any((directory / PARTIAL_DIR).glob("*.pt"))
    tune_for(runtime)
    data = RunData(config, data_root, runtime)  # a missing or wrong dataset fails here, before anything is written
    environment = _environment(runtime)
    writes = rank() == 0
    if writes:
        check_writable(directory)
        write_json(directory / "config.json", config.to_dict())
    try:
        record = _execute(config, data, directory, Path(out_dir), runtime, progress) | {"environment": environment}
    except CheckpointHashError:
        raise  # not this run's failure but a damaged file's: the run has not happened, and stays to do
    except Exception as error:
        if writes:
            write_json(directory / RECORD_NAME, {
                "status": "failed",
                "config": config.to_dict(),
                "config_hash": config.key(),
                "error": f"{type(error).__name__}: {error}",
                "environment": environment,
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            })
        raise
    record["seconds"] = {"total": round(time.perf_counter() - started, 3), "resumed": resumed}
    if writes:
        write_json(directory / RECORD_NAME, record)
        shutil.rmtree(directory / PARTIAL_DIR, ignore_errors=True)
        for path in parked_files(directory):
            path.unlink()
    barrier()
    return record


def _environment(runtime: Runtime) -> dict[str, Any]:
    """Software and hardware of the run; `runtime` (resolved) adds device, precision, compile,
    world_size, and the machine's speed under it (``reference_rate``, images per second: see
    `tkdlib.throughput.reference_rate`)."""
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        **runtime.describe(),
        "processor": platform.processor() or platform.machine(),
        **cpu_identity(),  # model name, x86 family and model, the SIMD kernels torch runs: results differ across them
        "threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "code_commit": _code_commit(),
        "reference_rate": round(reference_rate(runtime), 1),
    }


def _execute(config: Config, data: RunData, directory: Path, out_dir: Path, runtime: Runtime, progress: bool) -> dict[str, Any]:
    """Every phase of one run; returns its record (without its environment and the wall time of the whole run).
    Only rank 0 writes the mask and the models."""
    checkpoints = SharedNetworks(out_dir / CHECKPOINTS, config, data, runtime, progress)
    test_batches = data.test_batches()
    student, dense_cost, dense_history = checkpoints.student()
    if config.teacher_arch == SELF_TEACHER:
        teacher, teacher_cost, teacher_history = copy.deepcopy(student), PhaseCost(), []
    else:
        teacher, teacher_cost, teacher_history = checkpoints.teacher()
    accuracy = {"teacher": evaluate(teacher, test_batches), "dense": evaluate(student, test_batches)}

    meter = ComputeMeter(forward_flops(student, data.input_shape), forward_flops(teacher, data.input_shape), world_size())
    meter.add("teacher", teacher_cost)
    meter.add("dense", dense_cost)
    meter.watch(student)
    meter.watch_teacher(teacher)
    gamma = config.gamma
    if gamma is None:
        with meter.phase("calibrate"):
            gamma = measure_gamma(teacher, itertools.islice(data.plain_train(), config.calibration_batches))
    distill = Distill(teacher, DistillationLoss(config.alpha, config.guiding_temperature, gamma, config.normalize_logits))
    retrain_distill = Distill(teacher, DistillationLoss(config.alpha, config.temperature, gamma, config.retraining_normalizes))

    bench = Workbench(
        config, student, distill, data.shuffled, data.halves, test_batches, meter, data.input_shape,
        checkpoints.dense_state, lambda: checkpoints.build(config.arch, config.seed + 1), checkpoints.pruned_path(), progress, runtime,
        directory / PARTIAL_DIR, retrain_distill,
    )
    outcome = pipeline_for(config.method)(bench)
    meter.remove()
    accuracy.update(outcome.accuracy)
    retrained_state = round_to_storage(outcome.model, config.storage_precision)  # evaluated as stored
    accuracy["retrained"] = evaluate(outcome.model, test_batches)
    sparse_path = sparse_model_path(out_dir, config)
    if rank() == 0:
        outcome.mask.save(directory / "mask.pt")
        save_torch(directory / "model.pt", outcome.model.state_dict())
        if config.retrain_epochs == 0:  # a mask-only cell: its result is the mask, and its weights are the guided student's
            save_sparse_mask(outcome.mask, sparse_path)
        else:
            save_sparse(retrained_state, outcome.mask, sparse_path)
        checkpoints.digests["retrained"] = record_sha256(sparse_path)
    parameters = prunable_parameters(outcome.model, config.prune_first_layer, config.prune_classifier)
    return {
        "status": "finished",
        "config": config.to_dict(),
        "config_hash": config.key(),
        "gamma": gamma,
        "gamma_measured": config.gamma is None,
        "accuracy": accuracy,
        "sparsity": {
            "target": config.sparsity,
            "mask": outcome.mask.sparsity,
            "weights": _weight_sparsity(parameters),
            "prunable_weights": outcome.mask.total,
            "layers": outcome.mask.layer_report(),
        },
        "scores": {"layers": outcome.score_layers},
        "compute": _compute_summary(meter, counted_phases(config)),
        "checkpoints": {"sha256": checkpoints.digests, "retrained": sparse_path.relative_to(out_dir).as_posix()},
        "history": {"teacher": teacher_history, "dense": dense_history, **outcome.history},
        "data": {"train": data.train.source, "train_images": len(data.train), "test_images": len(data.test)},
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
