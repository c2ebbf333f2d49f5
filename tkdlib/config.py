"""`Config`: everything that determines a run's result, validated before any work starts.

A config is identified by a short hash of its canonical JSON (sorted keys); shared checkpoints
(teacher, dense student) are identified by the hash of the fields they depend on. Fields added
after records existed (`LATER_FIELDS`) are left out of that JSON while they hold their default,
so adding one changes no existing run's hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from tkdlib import data as datasets
from tkdlib.masks import validate_layer_floor, validate_sparsity
from tkdlib.models import ARCHITECTURES
from tkdlib.scoring import METHODS as SCORING_METHODS

# Methods that are more than a score: iterative lottery-ticket pipelines and prune-at-init with
# self-distillation (see tkdlib.pipelines).
PIPELINE_METHODS = ("imp", "colt", "epsd")
METHODS = (*SCORING_METHODS, *PIPELINE_METHODS)
ITERATIVE_DEFAULT_ROUNDS = 5  # imp and colt, unless prune_rounds is given
SELF_TEACHER = "self"  # teacher_arch value: a frozen copy of the dense student
STORAGE_PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Config:
    """Units: sparsity = fraction of prunable weights removed (0.9 = 90 % zeros); epochs are
    full passes over the training set; every lr is the peak of a one-cycle schedule."""

    dataset: str = "cifar10-sample"
    arch: str = "resnet20"
    teacher_arch: str = "resnet56"  # or "self": a frozen copy of the dense student
    method: str = "teacher_guided"
    sparsity: float = 0.9
    seed: int = 0
    batch_size: int = 128
    train_subset: int | None = None  # use only the first n training images (None = all)
    teacher_epochs: int = 30
    student_epochs: int = 30
    lr: float = 0.1  # teacher and dense student (and EPSD's sparse training from scratch)
    guide_epochs: int = 2  # teacher-guided fine-tuning of the dense student before scoring
    guide_lr: float = 0.01
    retrain_epochs: int = 10  # per pruning round
    retrain_lr: float = 0.05
    retrain_with_kd: bool = True  # retrain with the joint loss (True) or CE only (False)
    weight_decay: float = 5e-4
    alpha: float = 0.9  # weight of CA-KLD in the joint loss
    temperature: float = 4.0
    gamma: float | None = None  # None: measure the teacher's confidence on calibration batches
    calibration_batches: int = 10
    normalize_logits: bool = True
    score_batches: int = 10
    prune_rounds: int | None = None  # None: 1 for one-shot methods, 5 for imp and colt
    rewind_epoch: int = 1  # imp and colt rewind to the dense student at this epoch (0 = init)
    prune_first_layer: bool = True
    prune_classifier: bool = True
    allow_layer_collapse: bool = False
    layer_floor: float = 0.0  # fraction of each layer's weights always kept (0 = off; tkdlib.masks.global_mask)
    teacher_seed: int | None = None  # the teacher's seed (None: `seed`); one value shares one teacher across seeds
    score_temperature: float | None = None  # T of the guiding and scoring loss (None: `temperature`)
    retrain_normalize_logits: bool | None = None  # z-scored logits in KD retraining (None: `normalize_logits`)
    storage_precision: str = "fp32"  # committed checkpoints' floats: "fp32", or "bf16" (half the bytes; tkdlib.checkpoints.stored_state)

    def __post_init__(self) -> None:
        _check_choice("dataset", self.dataset, datasets.DATASET_NAMES)
        _check_choice("arch", self.arch, ARCHITECTURES)
        _check_choice("teacher_arch", self.teacher_arch, (*ARCHITECTURES, SELF_TEACHER))
        _check_choice("method", self.method, METHODS)
        validate_sparsity(self.sparsity)
        validate_layer_floor(self.layer_floor)
        for name in ("teacher_epochs", "student_epochs", "guide_epochs", "retrain_epochs", "rewind_epoch", "seed"):
            _check_int(name, getattr(self, name), minimum=0)
        for name in ("batch_size", "score_batches", "calibration_batches"):
            _check_int(name, getattr(self, name), minimum=1)
        if self.teacher_seed is not None:
            _check_int("teacher_seed", self.teacher_seed, minimum=0)
        if self.score_temperature is not None and (not _is_number(self.score_temperature) or not self.score_temperature > 0):
            raise ValueError(f"score_temperature must be a positive number or unset, got {self.score_temperature!r}")
        if self.retrain_normalize_logits is not None and not isinstance(self.retrain_normalize_logits, bool):
            raise ValueError(f"retrain_normalize_logits must be true, false or unset, got {self.retrain_normalize_logits!r}")
        _check_choice("storage_precision", self.storage_precision, STORAGE_PRECISIONS)
        if self.prune_rounds is not None:
            _check_int("prune_rounds", self.prune_rounds, minimum=1)
        if self.method == "epsd" and self.rounds != 1:
            raise ValueError("epsd prunes once, at initialization: leave prune_rounds unset or 1")
        if self.train_subset is not None:
            _check_int("train_subset", self.train_subset, minimum=self.batch_size)
        if self.rewind_epoch > self.student_epochs:
            raise ValueError(f"rewind_epoch ({self.rewind_epoch}) must not exceed student_epochs ({self.student_epochs})")
        for name in ("lr", "guide_lr", "retrain_lr", "temperature"):
            if not _is_number(getattr(self, name)) or not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        for name, value in (("alpha", self.alpha), ("gamma", 0.0 if self.gamma is None else self.gamma)):
            if not _is_number(value) or not 0 <= value <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
        if not _is_number(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be a number ≥ 0, got {self.weight_decay!r}")
        for name in ("retrain_with_kd", "normalize_logits", "prune_first_layer", "prune_classifier", "allow_layer_collapse"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")

    @property
    def rounds(self) -> int:
        """Pruning rounds: `prune_rounds` if set, else 5 for imp and colt and 1 (one shot) otherwise."""
        if self.prune_rounds is not None:
            return self.prune_rounds
        return ITERATIVE_DEFAULT_ROUNDS if self.method in ("imp", "colt") else 1

    @property
    def guiding_temperature(self) -> float:
        """The temperature of the joint loss in guiding and scoring."""
        return self.temperature if self.score_temperature is None else self.score_temperature

    @property
    def retraining_normalizes(self) -> bool:
        """Whether KD retraining z-scores the logits."""
        return self.normalize_logits if self.retrain_normalize_logits is None else self.retrain_normalize_logits

    @property
    def teacher_config(self) -> Config:
        """This config as its teacher sees it: `seed` replaced by `teacher_seed` when that is set
        (so configs of different seeds that name one teacher seed share one teacher checkpoint)."""
        if self.teacher_seed is None:
            return self
        return dataclasses.replace(self, seed=self.teacher_seed, teacher_seed=None)

    def to_dict(self) -> dict[str, Any]:
        """Every field, except the `LATER_FIELDS` that hold their default."""
        values = dataclasses.asdict(self)
        return {name: value for name, value in values.items() if name not in LATER_FIELDS or value != LATER_FIELDS[name]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        known = [field.name for field in dataclasses.fields(cls)]
        unknown = set(values) - set(known)
        if unknown:
            raise ValueError(f"Unknown config fields {sorted(unknown)}; known: {known}")
        return cls(**values)

    def key(self, fields: tuple[str, ...] | None = None) -> str:
        """Short hash (12 hex digits) of the canonical JSON of `fields` (all fields when None)."""
        values = self.to_dict()
        chosen = values if fields is None else {name: values[name] for name in fields if name in values}
        canonical = json.dumps(chosen, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


# Fields added after run records existed, with their defaults: left out of `Config.to_dict` (and so
# of every hash and record) at these values.
LATER_FIELDS: dict[str, Any] = {
    "layer_floor": 0.0, "teacher_seed": None, "score_temperature": None, "retrain_normalize_logits": None, "storage_precision": "fp32",
}

# The config fields each shared checkpoint depends on.
_DATA_FIELDS = ("dataset", "seed", "batch_size", "train_subset", "weight_decay", "lr", "storage_precision")
TEACHER_FIELDS = _DATA_FIELDS + ("teacher_arch", "teacher_epochs")
STUDENT_FIELDS = _DATA_FIELDS + ("arch", "student_epochs")
# The guided, scored and masked student of a one-shot method depends on everything but retraining.
RETRAIN_ONLY_FIELDS = ("retrain_epochs", "retrain_lr", "retrain_with_kd", "retrain_normalize_logits")
PRUNED_FIELDS = tuple(field.name for field in dataclasses.fields(Config) if field.name not in RETRAIN_ONLY_FIELDS)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _check_int(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")


def _check_choice(name: str, value: object, choices: Any) -> None:
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; choose one of {', '.join(sorted(choices))}.")
