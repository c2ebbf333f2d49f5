"""Pruning pipelines: from the trained dense student (or, for EPSD, its initialization) to a
sparse, retrained model. `tkdlib.experiment.run` prepares a `Workbench` and calls one of
`PIPELINES`; every pipeline returns an `Outcome`.

- ``score_and_retrain`` (every scoring method: teacher_guided, ce_gradient, magnitude, random,
  snip, grasp, synflow): teacher-guided fine-tuning first (teacher_guided only), then
  `config.rounds` rounds of score → global mask → retrain. One round is one-shot pruning; more
  rounds give the iterative variant of a method (an ablation).
- ``imp``: iterative magnitude pruning with rewinding (Frankle et al., 2020).
- ``colt``: cyclic overlapping lottery tickets (Hossain et al., 2022), our re-implementation.
- ``epsd``: early pruning with self-distillation (Chen et al., 2024), our re-implementation.

Sparsity schedule of iterative methods: round i of R reaches 1 − (1 − s)^(i/R), the same
fraction of the remaining weights removed each round, and exactly s after the last round.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tkdlib.batchnorm import recalibrated_accuracy
from tkdlib.compute import ComputeMeter, PhaseCost
from tkdlib.config import Config
from tkdlib.io import load_checkpoint
from tkdlib.masks import Mask, global_mask, prunable_parameters
from tkdlib.runtime import CPU, Runtime, save_shared
from tkdlib.scoring import TEACHER_SCORED, ScoringInputs, gradient_saliency, layer_statistics, magnitude, restrict_to, score
from tkdlib.train import Batches, Distill, EpochState, Objective, Schedule, SelfDistill, cross_entropy, evaluate, fit

History = list[dict[str, Any]]


@dataclass
class Workbench:
    """Everything a pipeline needs, prepared by `tkdlib.experiment.run`.

    student: the dense trained student (pipelines change it in place); distill: the joint loss
    against the teacher (guiding and scoring; also retraining unless `retrain_distill` is
    given); shuffled(name) / halves(name): augmented training batches (all data, or two
    disjoint halves) seeded by a phase name; dense_state(epoch): the dense student's
    state_dict after that many epochs of its training (0 = initialization); build_student(): a
    new student of the same architecture, in the training memory format; pruned_checkpoint: where
    a one-shot method keeps its guided, scored and masked student, shared by every run that
    differs only in retraining; runtime: how training executes (`tkdlib.runtime.Runtime`);
    partial_dir: where each training phase of the run keeps its state after every epoch
    (`tkdlib.train.EpochState`), so a run killed midway resumes at the epoch it reached: the
    pipeline runs again from its start, phases already finished load their end state instead of
    training, and steps without training (masks, cheap scores) are recomputed, identically.
    """

    config: Config
    student: nn.Module
    distill: Distill
    shuffled: Callable[[str], Batches]
    halves: Callable[[str], tuple[Batches, Batches]]
    test_batches: Batches
    meter: ComputeMeter
    input_shape: tuple[int, int, int]
    dense_state: Callable[[int], dict[str, torch.Tensor]]
    build_student: Callable[[], nn.Module]
    pruned_checkpoint: Path | None = None
    progress: bool = False
    runtime: Runtime = CPU
    partial_dir: Path | None = None
    retrain_distill: Distill | None = None  # the joint loss of KD retraining, when it differs from `distill`

    def parameters(self, model: nn.Module) -> dict[str, nn.Parameter]:
        return prunable_parameters(model, self.config.prune_first_layer, self.config.prune_classifier)

    def mask_from(self, scores: dict[str, torch.Tensor], sparsity: float, previous: Mask | None = None) -> Mask:
        """Global mask at `sparsity`; weights already pruned by `previous` stay pruned."""
        ranked = restrict_to(scores, previous) if previous is not None else scores
        return global_mask(ranked, sparsity, allow_layer_collapse=self.config.allow_layer_collapse, layer_floor=self.config.layer_floor)

    def retrain(
        self,
        model: nn.Module,
        mask: Mask | None,
        seed_name: str,
        batches: Batches | None = None,
        schedule: Schedule | None = None,
        objective: Objective | None = None,
    ) -> History:
        """Train under `mask` (the config's retraining schedule and objective unless given),
        counted in the ``retrain`` phase."""
        c = self.config
        schedule = schedule or Schedule(c.retrain_epochs, c.retrain_lr, weight_decay=c.weight_decay)
        objective = objective or ((self.retrain_distill or self.distill) if c.retrain_with_kd else cross_entropy)
        with self.meter.phase("retrain"):
            return fit(
                model, batches or self.shuffled(seed_name), schedule, objective, mask=mask,
                eval_batches=self.test_batches, phase=seed_name, progress=self.progress, runtime=self.runtime,
                epoch_state=self.epoch_state(seed_name, objective),
            )

    def epoch_state(self, name: str, objective: Objective) -> EpochState | None:
        """Where training phase `name` of this run keeps its state (None: not resumable)."""
        return EpochState.metered(self.partial_dir / f"{name}.pt", self.meter, objective) if self.partial_dir else None


@dataclass
class Outcome:
    """A pipeline's result: the sparse model, its mask, accuracies it measured on the way
    (``guided``: after teacher-guided fine-tuning; ``pruned``: right after the final pruning
    step, before its retraining; ``pruned_bn``: the same with BatchNorm statistics re-estimated),
    per-phase training histories, and per-layer statistics of the last scores (`layer_statistics`;
    empty where a pruned checkpoint saved before they existed was loaded)."""

    model: nn.Module
    mask: Mask
    accuracy: dict[str, float] = field(default_factory=dict)
    history: dict[str, History] = field(default_factory=dict)
    score_layers: list[dict[str, float | str]] = field(default_factory=list)  # `layer_statistics` of the last scoring step


def round_sparsities(sparsity: float, rounds: int) -> list[float]:
    """Target sparsity after each of `rounds` rounds: 1 − (1 − s)^(i/R), the last exactly s."""
    return [1 - (1 - sparsity) ** (i / rounds) for i in range(1, rounds)] + [sparsity]


def score_and_retrain(bench: Workbench) -> Outcome:
    """Teacher-guided fine-tuning (teacher_guided only), then rounds of score → mask → retrain.

    With one round, the pruned student (before retraining) is a checkpoint: a run that finds it
    resumes at retraining.
    """
    c, student = bench.config, bench.student
    outcome = Outcome(student, Mask({}))
    if c.rounds == 1:
        outcome.mask = _pruned_once(bench, outcome)
        outcome.history["retrain1"] = bench.retrain(student, outcome.mask, "retrain1")
        return outcome
    _guide(bench, outcome)
    mask: Mask | None = None
    for index, sparsity in enumerate(round_sparsities(c.sparsity, c.rounds), start=1):
        mask = _score_and_mask(bench, outcome, index, sparsity, mask)
        outcome.history[f"retrain{index}"] = bench.retrain(student, mask, f"retrain{index}")
    outcome.mask = mask
    return outcome


def _guide(bench: Workbench, outcome: Outcome) -> None:
    """Teacher-guided fine-tuning of the dense student (the `TEACHER_SCORED` methods, with guide_epochs > 0)."""
    c = bench.config
    if c.method in TEACHER_SCORED and c.guide_epochs > 0:
        guide = Schedule(c.guide_epochs, c.guide_lr, weight_decay=c.weight_decay)
        with bench.meter.phase("guide"):
            outcome.history["guide"] = fit(
                bench.student, bench.shuffled("guide"), guide, bench.distill, phase="guide", progress=bench.progress, runtime=bench.runtime,
                epoch_state=bench.epoch_state("guide", bench.distill),
            )
        outcome.accuracy["guided"] = evaluate(bench.student, bench.test_batches)


def _score_and_mask(bench: Workbench, outcome: Outcome, index: int, sparsity: float, previous: Mask | None) -> Mask:
    """Score the student, mask it at `sparsity` (keeping `previous` pruned) and measure it."""
    c, student = bench.config, bench.student
    parameters = bench.parameters(student)
    inputs = ScoringInputs(
        student, parameters, bench.shuffled(f"score{index}"), c.score_batches, bench.distill, sparsity, bench.input_shape, c.seed
    )
    with bench.meter.phase("score"):
        scores = score(c.method, inputs)
    outcome.score_layers = layer_statistics(scores)
    mask = bench.mask_from(scores, sparsity, previous)
    mask.apply(student)
    outcome.accuracy.update(_pruned_accuracy(bench, student, final=index == c.rounds))
    return mask


def _pruned_accuracy(bench: Workbench, model: nn.Module, final: bool = True) -> dict[str, float]:
    """Test accuracy of the pruned `model` as it is (``pruned``) and, after the `final` pruning
    step only (earlier rounds' values are overwritten), after re-estimating its BatchNorm
    statistics on training batches (``pruned_bn``, `tkdlib.batchnorm`; measured on a copy, not
    counted in any phase's cost: it judges the mask, it is not part of any method)."""
    accuracy = {"pruned": evaluate(model, bench.test_batches)}
    if final:
        accuracy["pruned_bn"] = recalibrated_accuracy(model, bench.shuffled("recalibrate"), bench.test_batches)
    return accuracy


def _pruned_once(bench: Workbench, outcome: Outcome) -> Mask:
    """Guide, score and mask once, or load all three from the pruned checkpoint."""
    saved = load_checkpoint(bench.pruned_checkpoint) if bench.pruned_checkpoint else None
    if saved is not None:
        bench.student.load_state_dict(saved["state_dict"])
        outcome.accuracy.update(saved["accuracy"])
        outcome.history.update(saved["history"])
        outcome.score_layers = saved.get("score_layers", [])
        for phase, cost in saved["costs"].items():
            bench.meter.add(phase, PhaseCost(**cost))
        if "pruned_bn" not in outcome.accuracy:  # saved before the BatchNorm measure existed
            outcome.accuracy.update(_pruned_accuracy(bench, bench.student))
        return Mask(saved["mask"])
    _guide(bench, outcome)
    mask = _score_and_mask(bench, outcome, 1, bench.config.sparsity, None)
    if bench.pruned_checkpoint is not None:
        costs = {phase: dataclasses.asdict(bench.meter.costs[phase]) for phase in ("guide", "score") if phase in bench.meter.costs}
        save_shared(bench.pruned_checkpoint, {
            "state_dict": bench.student.state_dict(), "mask": mask.state_dict(),
            "accuracy": dict(outcome.accuracy), "history": dict(outcome.history), "costs": costs, "score_layers": outcome.score_layers,
        })
    return mask


def imp(bench: Workbench) -> Outcome:
    """Iterative magnitude pruning with rewinding (Frankle et al., 2020).

    Round i: global magnitude mask of the current weights at the round's sparsity (weights pruned
    before stay pruned) → rewind the surviving weights (and BatchNorm) to the dense student at
    `rewind_epoch` → retrain for `retrain_epochs`. Round 1 starts from the trained dense student.
    """
    c, student = bench.config, bench.student
    outcome = Outcome(student, Mask({}))
    parameters = bench.parameters(student)
    mask: Mask | None = None
    for index, sparsity in enumerate(round_sparsities(c.sparsity, c.rounds), start=1):
        with bench.meter.phase("score"):
            mask = bench.mask_from(magnitude(parameters), sparsity, mask)
        student.load_state_dict(bench.dense_state(c.rewind_epoch))
        mask.apply(student)
        outcome.accuracy.update(_pruned_accuracy(bench, student, final=index == c.rounds))
        outcome.history[f"retrain{index}"] = bench.retrain(student, mask, f"retrain{index}")
    outcome.mask = mask
    return outcome


def overlap_scores(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per weight, the smaller of its two global percentile ranks: high only where both tickets
    rank it high, so the top-k of these scores is the largest overlap of two top sets."""

    def ranks(scores: dict[str, torch.Tensor]) -> torch.Tensor:
        flat = torch.cat([s.reshape(-1) for s in scores.values()])
        positions = torch.empty_like(flat)
        positions[torch.argsort(flat, stable=True)] = torch.arange(flat.numel(), dtype=flat.dtype, device=flat.device)
        return positions / flat.numel()

    combined = torch.minimum(ranks(first), ranks(second))
    parts = combined.split([s.numel() for s in first.values()])
    return {name: part.reshape(s.shape) for (name, s), part in zip(first.items(), parts)}


def colt(bench: Workbench) -> Outcome:
    """Cyclic overlapping lottery tickets (Hossain et al., 2022), our re-implementation.

    The training data is split into two disjoint halves. Each round, the same starting weights
    (round 1: the trained dense student; later rounds: the rewound ticket) are trained twice
    under the current mask, once on each half, for `retrain_epochs` (together the images of one
    full-data training); the new mask keeps the weights with the largest *overlapping* magnitude
    (`overlap_scores`) at the round's sparsity; the ticket is rewound to the dense student at
    `rewind_epoch`. After the last round the ticket is trained on all data. Choices of ours: two
    halves, overlap by the smaller percentile rank (exact sparsity), the same rewinding as IMP.
    """
    c, student = bench.config, bench.student
    outcome = Outcome(student, Mask({}))
    parameters = bench.parameters(student)
    start = copy.deepcopy(student.state_dict())
    mask: Mask | None = None
    for index, sparsity in enumerate(round_sparsities(c.sparsity, c.rounds), start=1):
        tickets = []
        for half, batches in enumerate(bench.halves(f"colt{index}"), start=1):
            student.load_state_dict(start)
            if mask is not None:
                mask.apply(student)
            outcome.history[f"round{index}_half{half}"] = bench.retrain(student, mask, f"round{index}_half{half}", batches=batches)
            tickets.append(magnitude(parameters))
        with bench.meter.phase("score"):
            mask = bench.mask_from(overlap_scores(*tickets), sparsity, mask)
        start = bench.dense_state(c.rewind_epoch)
    student.load_state_dict(start)
    mask.apply(student)
    outcome.accuracy.update(_pruned_accuracy(bench, student))
    outcome.history["retrain_final"] = bench.retrain(student, mask, "retrain_final")
    outcome.mask = mask
    return outcome


def epsd(bench: Workbench) -> Outcome:
    """Early pruning with self-distillation (Chen et al., 2024), our re-implementation.

    Step 1: at the dense student's initialization (no pre-training, no teacher), score every
    weight by Σ_b |w ⊙ ∂L_SD/∂w| over `score_batches` batches, L_SD the self-distillation loss
    (`tkdlib.train.SelfDistill`), and prune globally to the target sparsity in one step. Step 2:
    train the sparse network from there with L_SD for `student_epochs + retrain_epochs` epochs at
    the dense learning rate `lr`: the same images as dense training plus retraining in the other
    pipelines. Choices of ours: scoring at initialization (i = 0 steps), two-view
    self-distillation (weight 0.5, T = 4) as the SD method.
    """
    c = bench.config
    model = bench.build_student()
    model.load_state_dict(bench.dense_state(0))
    bench.meter.watch(model)
    self_distill = SelfDistill(seed=c.seed)
    with bench.meter.phase("score"):
        scores = gradient_saliency(model, bench.parameters(model), bench.shuffled("score1"), self_distill, c.score_batches)
    mask = bench.mask_from(scores, c.sparsity)
    mask.apply(model)
    outcome = Outcome(model, mask, _pruned_accuracy(bench, model))
    schedule = Schedule(c.student_epochs + c.retrain_epochs, c.lr, weight_decay=c.weight_decay)
    outcome.history["retrain1"] = bench.retrain(model, mask, "retrain1", schedule=schedule, objective=self_distill)
    return outcome


PIPELINES: dict[str, Callable[[Workbench], Outcome]] = {"imp": imp, "colt": colt, "epsd": epsd}


def pipeline_for(method: str) -> Callable[[Workbench], Outcome]:
    """The pipeline that runs `method`: its own for imp, colt and epsd, else `score_and_retrain`."""
    return PIPELINES.get(method, score_and_retrain)


def counted_phases(config: Config) -> tuple[str, ...]:
    """Phases whose cost a method pays: EPSD needs neither teacher nor dense student; the others
    need the dense student, and the teacher when it guides, scores or retrains."""
    if config.method == "epsd":
        return ("score", "retrain")
    uses_teacher = config.method in TEACHER_SCORED or config.retrain_with_kd
    teacher_phases = ("teacher", "calibrate") if uses_teacher else ()
    return (*teacher_phases, "dense", "guide", "score", "retrain")


def training_epochs(config: Config) -> int:
    """Passes over the training data that a run of `config` trains in its own phases (the shared
    teacher and dense student left out): guiding (the `TEACHER_SCORED` methods) and every
    retraining round; COLT's two half-data tickets of a round count as one pass, its final
    training as another; EPSD's sparse training lasts ``student_epochs + retrain_epochs``."""
    c = config
    if c.method == "epsd":
        return c.student_epochs + c.retrain_epochs
    if c.method == "colt":
        return (c.rounds + 1) * c.retrain_epochs
    guide = c.guide_epochs if c.method in TEACHER_SCORED else 0
    return guide + c.rounds * c.retrain_epochs


def epochs_trained(phases: Mapping[str, int]) -> float:
    """The passes over the training data, in the units of `training_epochs`, that the phases of a
    stopped run finished (phase name → its finished epochs): an epoch of a COLT ticket
    (``round<i>_half<j>``, half the data) counts half."""
    return sum(epochs / 2 if "_half" in name else epochs for name, epochs in phases.items())
