"""One experiment, end to end: `Config` in, a JSON run record out.

Phases: train the teacher → train the dense student → (teacher-guided method only) fine-tune
the student under the teacher → score → global one-shot mask → retrain under the fixed mask
(with KD or CE only) → evaluate. The teacher and the dense student are checkpoints shared by
every run that needs the same ones (keyed by the config fields they depend on), so a profile
trains each once. A run lives in ``<out_dir>/<hash of its config>/``; a run whose record exists
is returned without recomputation. Every file is written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from tkdlib import data as datasets
from tkdlib.io import save_torch, write_json
from tkdlib.losses import DistillationLoss, measure_gamma
from tkdlib.masks import Mask, global_mask, prunable_parameters, validate_sparsity
from tkdlib.models import ARCHITECTURES, build_model
from tkdlib.scoring import METHODS, ScoringInputs, score
from tkdlib.train import Distill, Schedule, cross_entropy, evaluate, fit

RECORD_NAME = "record.json"
PHASES = ("teacher", "dense", "calibrate", "guide", "score", "retrain")
T = TypeVar("T")


@dataclass(frozen=True)
class Config:
    """Everything that determines a run's result. Units: sparsity = fraction of prunable weights
    removed; epochs are full passes over the training set; lr is the one-cycle peak."""

    dataset: str = "cifar10-sample"
    arch: str = "resnet20"
    teacher_arch: str = "resnet56"
    method: str = "teacher_guided"
    sparsity: float = 0.9
    seed: int = 0
    batch_size: int = 128
    train_subset: int | None = None  # use only the first n training images (None = all)
    teacher_epochs: int = 30
    student_epochs: int = 30
    lr: float = 0.1  # teacher and dense student
    guide_epochs: int = 2  # teacher-guided fine-tuning of the dense student before scoring
    guide_lr: float = 0.01
    retrain_epochs: int = 10
    retrain_lr: float = 0.05
    retrain_with_kd: bool = True  # retrain with the joint loss (True) or CE only (False)
    weight_decay: float = 5e-4
    alpha: float = 0.9  # weight of CA-KLD in the joint loss
    temperature: float = 4.0
    gamma: float | None = None  # None: measure the teacher's confidence on calibration batches
    calibration_batches: int = 10
    normalize_logits: bool = True
    score_batches: int = 10
    prune_first_layer: bool = True
    prune_classifier: bool = True
    allow_layer_collapse: bool = False

    def __post_init__(self) -> None:
        _check_choice("dataset", self.dataset, datasets.DATASET_NAMES)
        _check_choice("arch", self.arch, ARCHITECTURES)
        _check_choice("teacher_arch", self.teacher_arch, ARCHITECTURES)
        _check_choice("method", self.method, METHODS)
        validate_sparsity(self.sparsity)
        for name in ("teacher_epochs", "student_epochs", "guide_epochs", "retrain_epochs"):
            _check_int(name, getattr(self, name), minimum=0)
        for name in ("batch_size", "score_batches", "calibration_batches"):
            _check_int(name, getattr(self, name), minimum=1)
        if self.train_subset is not None:
            _check_int("train_subset", self.train_subset, minimum=self.batch_size)
        for name in ("lr", "guide_lr", "retrain_lr", "temperature"):
            if not _is_number(getattr(self, name)) or not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        for name, value in (("alpha", self.alpha), ("gamma", 0.0 if self.gamma is None else self.gamma)):
            if not _is_number(value) or not 0 <= value <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
        if not _is_number(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be a number ≥ 0, got {self.weight_decay!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        unknown = set(values) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"Unknown config fields {sorted(unknown)}; known: {[f.name for f in dataclasses.fields(cls)]}")
        return cls(**values)

    def key(self, fields: tuple[str, ...] | None = None) -> str:
        """Short hash (12 hex digits) of the canonical JSON of `fields` (all fields when None)."""
        values = self.to_dict()
        chosen = values if fields is None else {name: values[name] for name in fields}
        canonical = json.dumps(chosen, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


# The config fields each shared checkpoint depends on.
_DATA_FIELDS = ("dataset", "seed", "batch_size", "train_subset", "weight_decay", "lr")
TEACHER_FIELDS = _DATA_FIELDS + ("teacher_arch", "teacher_epochs")
STUDENT_FIELDS = _DATA_FIELDS + ("arch", "student_epochs")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _check_int(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")


def _check_choice(name: str, value: object, choices: Any) -> None:
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; choose one of {', '.join(sorted(choices))}.")


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


class _Phases:
    """Times named phases and keeps their results for the record."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.history: dict[str, list[dict[str, Any]]] = {}

    def timed(self, name: str, work: Callable[[], T]) -> T:
        start = time.perf_counter()
        result = work()
        self.seconds[name] = round(time.perf_counter() - start, 3)
        return result


def _shared_model(
    path: Path, arch: str, num_classes: int, seed: int, train: Callable[[nn.Module], list[dict[str, Any]]]
) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Load the checkpoint at `path`, or build a model seeded with `seed`, train it and save it."""
    torch.manual_seed(seed)
    model = build_model(arch, num_classes).to(memory_format=torch.channels_last)
    if path.is_file():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model, []
    history = train(model)
    save_torch(path, model.state_dict())
    return model, history


def _weight_sparsity(parameters: dict[str, nn.Parameter]) -> float:
    """Fraction of exactly-zero entries over `parameters`, measured on the weights themselves."""
    total = sum(param.numel() for param in parameters.values())
    zeros = sum(int((param == 0).sum()) for param in parameters.values())
    return zeros / total


def run(
    config: Config,
    out_dir: str | Path,
    data_root: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run `config` (or return its existing record); the record is also written to disk."""
    directory = run_dir(config, out_dir)
    existing = load_record(directory)
    if existing is not None:
        return existing
    write_json(directory / "config.json", config.to_dict())
    checkpoints = Path(out_dir) / "checkpoints"
    phases = _Phases()
    started = time.perf_counter()

    train_data = datasets.load_dataset(config.dataset, "train", data_root)
    test_data = datasets.load_dataset(config.dataset, "test", data_root)
    if config.train_subset is not None:
        train_data = dataclasses.replace(
            train_data, images=train_data.images[: config.train_subset], labels=train_data.labels[: config.train_subset]
        )
    spec = datasets.dataset_spec(config.dataset)
    mean, std = spec.mean, spec.std

    def shuffled(phase: str) -> datasets.TensorLoader:
        """Augmented training batches with their own seed per phase, so loading a checkpoint
        instead of training it does not change the batches of later phases."""
        phase_seed = config.seed * 100 + PHASES.index(phase)
        return datasets.TensorLoader(train_data, config.batch_size, mean, std, train=True, seed=phase_seed, pad=spec.pad)

    train_plain = datasets.TensorLoader(train_data, config.batch_size, mean, std, train=False)
    test_batches = datasets.TensorLoader(test_data, 256, mean, std, train=False)
    num_classes = train_data.num_classes

    def dense_schedule(epochs: int) -> Schedule:
        return Schedule(epochs, config.lr, weight_decay=config.weight_decay)

    teacher, phases.history["teacher"] = phases.timed(
        "teacher",
        lambda: _shared_model(
            checkpoints / f"teacher-{config.key(TEACHER_FIELDS)}.pt", config.teacher_arch, num_classes, config.seed,
            lambda m: fit(m, shuffled("teacher"), dense_schedule(config.teacher_epochs), phase="teacher", progress=progress),
        ),
    )
    student, phases.history["dense"] = phases.timed(
        "dense",
        lambda: _shared_model(
            checkpoints / f"student-{config.key(STUDENT_FIELDS)}.pt", config.arch, num_classes, config.seed + 1,
            lambda m: fit(m, shuffled("dense"), dense_schedule(config.student_epochs), phase="dense", progress=progress),
        ),
    )
    accuracy = {"teacher": evaluate(teacher, test_batches), "dense": evaluate(student, test_batches)}

    gamma = config.gamma
    if gamma is None:
        gamma = phases.timed("calibrate", lambda: measure_gamma(teacher, itertools.islice(train_plain, config.calibration_batches)))
    distill = Distill(teacher, DistillationLoss(config.alpha, config.temperature, gamma, config.normalize_logits))

    if config.method == "teacher_guided":
        guide = Schedule(config.guide_epochs, config.guide_lr, weight_decay=config.weight_decay)
        phases.history["guide"] = phases.timed("guide", lambda: fit(student, shuffled("guide"), guide, distill, phase="guide", progress=progress))
        accuracy["guided"] = evaluate(student, test_batches)

    parameters = prunable_parameters(student, config.prune_first_layer, config.prune_classifier)
    inputs = ScoringInputs(student, parameters, shuffled("score"), config.score_batches, distill)
    scores = phases.timed("score", lambda: score(config.method, inputs))
    mask = global_mask(scores, config.sparsity, allow_layer_collapse=config.allow_layer_collapse)
    mask.save(directory / "mask.pt")
    with torch.no_grad():
        for name, keep in mask.items():
            parameters[name].mul_(keep)
    accuracy["pruned"] = evaluate(student, test_batches)

    retrain = Schedule(config.retrain_epochs, config.retrain_lr, weight_decay=config.weight_decay)
    objective = distill if config.retrain_with_kd else cross_entropy
    phases.history["retrain"] = phases.timed(
        "retrain", lambda: fit(student, shuffled("retrain"), retrain, objective, mask=mask, eval_batches=test_batches, phase="retrain", progress=progress)
    )
    accuracy["retrained"] = evaluate(student, test_batches)

    record = {
        "status": "finished",
        "config": config.to_dict(),
        "config_hash": config.key(),
        "gamma": gamma,
        "gamma_measured": config.gamma is None,
        "accuracy": accuracy,
        "sparsity": {
            "target": config.sparsity,
            "mask": mask.sparsity,
            "weights": _weight_sparsity(parameters),
            "prunable_weights": mask.total,
            "layers": mask.layer_report(),
        },
        "seconds": {**phases.seconds, "total": round(time.perf_counter() - started, 3)},
        "history": phases.history,
        "data": {"train": train_data.source, "train_images": len(train_data), "test_images": len(test_data)},
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": "cpu",
            "processor": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
        },
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(directory / RECORD_NAME, record)
    return record
