"""One experiment, end to end: `Config` in, a JSON run record out.

Phases: train the teacher → train the dense student → measure γ → run the method's pipeline
(`tkdlib.pipelines`: e.g. teacher-guided fine-tuning → score → global mask → retrain under the
fixed mask) → evaluate. The teacher and the dense student are checkpoints shared by every run
that needs the same ones (keyed by the config fields they depend on), so a profile trains each
once; they carry the cost of their training, so every record can count it. A run lives in
``<out_dir>/<hash of its config>/``; a run whose record exists is returned without
recomputation. Every file is written atomically.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import platform
import subprocess
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tkdlib import data as datasets
from tkdlib.compute import ComputeMeter, PhaseCost, forward_flops
from tkdlib.config import SELF_TEACHER, STUDENT_FIELDS, TEACHER_FIELDS, Config
from tkdlib.io import save_torch, write_json
from tkdlib.losses import DistillationLoss, measure_gamma
from tkdlib.masks import prunable_parameters
from tkdlib.models import build_model
from tkdlib.pipelines import Workbench, counted_phases, pipeline_for
from tkdlib.train import Batches, Distill, Schedule, evaluate, fit

__all__ = ["Config", "RECORD_NAME", "load_record", "run", "run_dir"]

RECORD_NAME = "record.json"
SNAPSHOT_EPOCHS = (0, 1, 2, 3)  # dense-student epochs kept for rewinding (others are recomputed)


def run_dir(config: Config, out_dir: str | Path) -> Path:
    """The folder of the run of `config` under `out_dir`."""
    return Path(out_dir) / config.key()


def load_record(directory: str | Path) -> dict[str, Any] | None:
    """The finished record in `directory`, or None if there is none (or it is unreadable)."""
    path = Path(directory) / RECORD_NAME
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return record if record.get("status") == "finished" else None


class _Data:
    """The run's data: augmented training batches seeded per phase name, and test batches."""

    def __init__(self, config: Config, data_root: str | Path | None) -> None:
        train = datasets.load_dataset(config.dataset, "train", data_root)
        if config.train_subset is not None:
            train = dataclasses.replace(train, images=train.images[: config.train_subset], labels=train.labels[: config.train_subset])
        self.train = train
        self.test = datasets.load_dataset(config.dataset, "test", data_root)
        self.config = config
        self.mean, self.std = datasets.CHANNEL_STATS[config.dataset.removesuffix("-sample")]
        self.input_shape = (3, *train.images.shape[1:3])

    def _loader(self, arrays: datasets.ImageArrays, name: str) -> datasets.TensorLoader:
        seed = self.config.seed * 1_000_003 + zlib.crc32(name.encode())
        return datasets.TensorLoader(arrays, self.config.batch_size, self.mean, self.std, train=True, seed=seed)

    def shuffled(self, name: str) -> Batches:
        """Augmented training batches whose seed depends on the phase `name` only, so loading a
        checkpoint instead of training it does not change the batches of later phases."""
        return self._loader(self.train, name)

    def halves(self, name: str) -> tuple[Batches, Batches]:
        """Augmented batches of the first and the second half of the training set."""
        middle = len(self.train) // 2
        first = dataclasses.replace(self.train, images=self.train.images[:middle], labels=self.train.labels[:middle])
        second = dataclasses.replace(self.train, images=self.train.images[middle:], labels=self.train.labels[middle:])
        return self._loader(first, f"{name}/1"), self._loader(second, f"{name}/2")

    def plain_train(self) -> Batches:
        return datasets.TensorLoader(self.train, self.config.batch_size, self.mean, self.std, train=False)

    def test_batches(self) -> Batches:
        return datasets.TensorLoader(self.test, 256, self.mean, self.std, train=False)


class _Checkpoints:
    """Shared checkpoints in ``<out_dir>/checkpoints``: the trained teacher and dense student
    (state, training cost and history), and early-epoch snapshots of the dense student."""

    def __init__(self, folder: Path, config: Config, data: _Data, progress: bool) -> None:
        self.folder, self.config, self.data, self.progress = folder, config, data, progress
        self.student_path = folder / f"student-{config.key(STUDENT_FIELDS)}.pt"

    def build(self, arch: str, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build_model(arch, self.data.train.num_classes).to(memory_format=torch.channels_last)

    def teacher(self) -> tuple[nn.Module, PhaseCost, list[dict[str, Any]]]:
        path = self.folder / f"teacher-{self.config.key(TEACHER_FIELDS)}.pt"
        return self._trained(path, self.config.teacher_arch, self.config.seed, "teacher", self.config.teacher_epochs)

    def student(self) -> tuple[nn.Module, PhaseCost, list[dict[str, Any]]]:
        return self._trained(self.student_path, self.config.arch, self.config.seed + 1, "dense", self.config.student_epochs, SNAPSHOT_EPOCHS)

    def snapshot_path(self, epoch: int) -> Path:
        return self.student_path.with_name(f"{self.student_path.stem}-epoch{epoch}.pt")

    def dense_state(self, epoch: int) -> dict[str, torch.Tensor]:
        """The dense student's state after `epoch` epochs of its training (0 = initialization);
        a snapshot not kept is recomputed by training again (deterministic on the CPU)."""
        if epoch == self.config.student_epochs:
            return torch.load(self.student_path, map_location="cpu", weights_only=True)["state_dict"]
        if not self.snapshot_path(epoch).is_file():
            self._train(self.config.arch, self.config.seed + 1, "dense", self.config.student_epochs, (epoch,))
        return torch.load(self.snapshot_path(epoch), map_location="cpu", weights_only=True)

    def _trained(
        self, path: Path, arch: str, seed: int, phase: str, epochs: int, snapshots: tuple[int, ...] = ()
    ) -> tuple[nn.Module, PhaseCost, list[dict[str, Any]]]:
        if path.is_file():
            model = self.build(arch, seed)
            saved = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(saved["state_dict"])
            return model, PhaseCost(**saved["cost"]), saved["history"]
        model, cost, history = self._train(arch, seed, phase, epochs, snapshots)
        save_torch(path, {"state_dict": model.state_dict(), "cost": dataclasses.asdict(cost), "history": history})
        return model, cost, history

    def _train(
        self, arch: str, seed: int, phase: str, epochs: int, snapshots: tuple[int, ...]
    ) -> tuple[nn.Module, PhaseCost, list[dict[str, Any]]]:
        model = self.build(arch, seed)

        def keep_snapshot(epoch: int, trained: nn.Module) -> None:
            if epoch in snapshots:
                save_torch(self.snapshot_path(epoch), trained.state_dict())

        keep_snapshot(0, model)
        meter = ComputeMeter(forward_flops(model, self.data.input_shape))
        meter.watch(model)
        schedule = Schedule(epochs, self.config.lr, weight_decay=self.config.weight_decay)
        with meter.phase(phase) as cost:
            history = fit(model, self.data.shuffled(phase), schedule, phase=phase, progress=self.progress, on_epoch_end=keep_snapshot)
        meter.remove()
        return model, cost, history


def _code_commit() -> str | None:
    """The git commit of the checkout running this code (suffixed ``-dirty`` with local changes), if any."""
    folder = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--", "."], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
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


def run(config: Config, out_dir: str | Path, data_root: str | Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Run `config` (or return its existing record); the record is also written to disk."""
    directory = run_dir(config, out_dir)
    existing = load_record(directory)
    if existing is not None:
        return existing
    started = time.perf_counter()
    data = _Data(config, data_root)
    write_json(directory / "config.json", config.to_dict())
    checkpoints = _Checkpoints(Path(out_dir) / "checkpoints", config, data, progress)
    test_batches = data.test_batches()

    student, dense_cost, dense_history = checkpoints.student()
    if config.teacher_arch == SELF_TEACHER:
        teacher, teacher_cost, teacher_history = copy.deepcopy(student), PhaseCost(), []
    else:
        teacher, teacher_cost, teacher_history = checkpoints.teacher()
    accuracy = {"teacher": evaluate(teacher, test_batches), "dense": evaluate(student, test_batches)}

    meter = ComputeMeter(forward_flops(student, data.input_shape), forward_flops(teacher, data.input_shape))
    meter.add("teacher", teacher_cost)
    meter.add("dense", dense_cost)
    meter.watch(student)
    meter.watch_teacher(teacher)
    gamma = config.gamma
    if gamma is None:
        with meter.phase("calibrate"):
            gamma = measure_gamma(teacher, itertools.islice(data.plain_train(), config.calibration_batches))
    distill = Distill(teacher, DistillationLoss(config.alpha, config.temperature, gamma, config.normalize_logits))

    bench = Workbench(
        config, student, distill, data.shuffled, data.halves, test_batches, meter, data.input_shape,
        checkpoints.dense_state, lambda: checkpoints.build(config.arch, config.seed + 1), progress,
    )
    outcome = pipeline_for(config.method)(bench)
    meter.remove()
    accuracy.update(outcome.accuracy)
    accuracy["retrained"] = evaluate(outcome.model, test_batches)
    outcome.mask.save(directory / "mask.pt")
    save_torch(directory / "model.pt", outcome.model.state_dict())
    parameters = prunable_parameters(outcome.model, config.prune_first_layer, config.prune_classifier)

    record = {
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
        "compute": _compute_summary(meter, counted_phases(config)),
        "seconds": {"total": round(time.perf_counter() - started, 3)},
        "history": {"teacher": teacher_history, "dense": dense_history, **outcome.history},
        "data": {"train": data.train.source, "train_images": len(data.train), "test_images": len(data.test)},
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": "cpu",
            "processor": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "code_commit": _code_commit(),
        },
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(directory / RECORD_NAME, record)
    return record
