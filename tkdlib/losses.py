"""Distillation losses: plain KD, CA-KLD and the joint objective.

All losses take logits of shape (B, C) and return a scalar (the mean over the batch of the
per-sample value) or, with ``reduction="none"``, the per-sample values (B,).

- ``normalize_logits``: per-sample z-score over the C classes (population std).
- ``kd_kl``: Hinton's KD, T² · KL(p_t ‖ p_s) with p = softmax(z / T) on raw logits.
- ``ca_kld``: T² · [γ · KL(p_s ‖ p_t) + (1 − γ) · KL(p_t ‖ p_s)] on z-scored logits; γ is the
  teacher's confidence (mean top-class probability). With ``normalize=False`` and γ = 0 it is
  exactly ``kd_kl``.
- ``DistillationLoss``: α · CA-KLD + (1 − α) · CE(s, y).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from tkdlib.runtime import global_mean

REDUCTIONS = ("mean", "none")


def normalize_logits(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """(z − mean(z)) / (std(z) + eps) over the last dimension; std is the population std."""
    mean = logits.mean(dim=-1, keepdim=True)
    std = logits.std(dim=-1, keepdim=True, correction=0)
    return (logits - mean) / (std + eps)


def _tempered_log_probs(logits: torch.Tensor, temperature: float, normalize: bool) -> torch.Tensor:
    z = normalize_logits(logits) if normalize else logits
    return F.log_softmax(z / temperature, dim=-1)


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) per sample, (B,), from log-probabilities (B, C)."""
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "none":
        return per_sample
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _check_pair(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> None:
    if student.shape != teacher.shape or student.ndim != 2:
        raise ValueError(f"student and teacher logits must both be (B, C), got {tuple(student.shape)} and {tuple(teacher.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")


def kd_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float, reduction: str = "mean") -> torch.Tensor:
    """Hinton's KD loss: T² · KL(softmax(t/T) ‖ softmax(s/T)); the teacher is not differentiated."""
    _check_pair(student, teacher, temperature)
    log_ps = _tempered_log_probs(student, temperature, normalize=False)
    log_pt = _tempered_log_probs(teacher.detach(), temperature, normalize=False)
    return _reduce(temperature**2 * _kl(log_pt, log_ps), reduction)


def ca_kld(
    student: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float,
    gamma: float,
    normalize: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    """Context-aware KL: T² · [γ · KL(p_s ‖ p_t) + (1 − γ) · KL(p_t ‖ p_s)].

    p = softmax(norm(z) / T) with `normalize`, softmax(z / T) without. γ ∈ [0, 1] weights the
    mode-seeking reverse KL; a confident teacher (γ near 1) pushes towards it.
    """
    _check_pair(student, teacher, temperature)
    if not 0 <= gamma <= 1:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    log_ps = _tempered_log_probs(student, temperature, normalize)
    log_pt = _tempered_log_probs(teacher.detach(), temperature, normalize)
    mixed = gamma * _kl(log_ps, log_pt) + (1 - gamma) * _kl(log_pt, log_ps)
    return _reduce(temperature**2 * mixed, reduction)


def teacher_confidence(teacher_logits: torch.Tensor) -> torch.Tensor:
    """Top-class probability of softmax(t) per sample, (B,), on the raw logits at T = 1."""
    return F.softmax(teacher_logits.float(), dim=-1).max(dim=-1).values


@torch.no_grad()
def measure_gamma(teacher: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """γ: the teacher's mean top-class probability over `batches` of (x, y), in eval mode (over
    every rank's batches under a process group)."""
    was_training = teacher.training
    teacher.eval()
    try:
        confidences = [teacher_confidence(teacher(x)) for x, _ in batches]
    finally:
        teacher.train(was_training)
    if not confidences:
        raise ValueError("measure_gamma needs at least one calibration batch")
    return global_mean(torch.cat(confidences))


@dataclass(frozen=True)
class DistillationLoss:
    """α · CA-KLD(s, t) + (1 − α) · CE(s, y).

    alpha: weight of the distillation term in [0, 1]; temperature: T > 0; gamma: the CA-KLD
    mix weight in [0, 1] (measure it with `measure_gamma`); normalize: z-score the logits.
    """

    alpha: float
    temperature: float
    gamma: float
    normalize: bool = True

    def __post_init__(self) -> None:
        for name in ("alpha", "gamma"):
            value = getattr(self, name)
            if math.isnan(value) or not 0 <= value <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")

    def __call__(self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        distill = ca_kld(student, teacher, self.temperature, self.gamma, self.normalize)
        return self.alpha * distill + (1 - self.alpha) * F.cross_entropy(student, labels)
