"""Importance scores, one function per method; higher = more important = kept.

Every scorer returns ``dict[str, Tensor]``, keyed by parameter name, each tensor of the
weight's shape, for the parameters it is given (see `tkdlib.masks.prunable_parameters`).
Gradient scorers leave the model exactly as they found it: weights, BatchNorm running
statistics, ``.grad`` fields and train/eval mode. Gradients are taken in train mode (batch
statistics in BatchNorm, as during training) unless a method says otherwise.

- ``teacher_guided`` (ours): Σ_b |w ⊙ ∂L_b/∂w|, L = α · CA-KLD + (1 − α) · CE against the teacher.
- ``ce_gradient``: the same saliency with L = CE and no teacher (isolates the teacher's part).
- ``snip`` (Lee et al., 2019): |w ⊙ Σ_b ∂CE_b/∂w| (connection sensitivity; gradients summed
  over the scoring batches before the absolute value).
- ``grasp`` (Wang et al., 2020): the paper's score is S = −w ⊙ Hg (g the gradient of the loss at
  temperature 200, H its Hessian) and it removes the weights with the *largest* S, those whose
  removal reduces gradient flow least. We return w ⊙ Hg = −S, so that, as for every scorer
  here, the highest scores are kept and the same weights are removed.
- ``synflow`` (Tanaka et al., 2020): data-free and iterative; see `synflow`.
- ``magnitude``: |w|. ``random``: uniform noise from a seeded generator.
- Our extensions (not the paper's), for the study of what the teacher changes: ``teacher_snip``
  |w ⊙ Σ_b ∂L_b/∂w| and ``teacher_fisher`` ½ Σ_b (w ⊙ ∂L_b/∂w)² with the teacher's joint loss
  (after the same guiding as ours), and ``fisher`` ½ Σ_b (w ⊙ ∂CE_b/∂w)² without the teacher.

Under a process group (several processes, each with its slice of every batch) the gradients of
each batch are averaged over the ranks before they enter a score, so ∂L_b/∂w is the gradient of
the global batch and every rank holds the same scores, hence the same mask.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from tkdlib.masks import Mask, global_mask
from tkdlib.runtime import average_across_ranks
from tkdlib.train import Batches, Distill, Objective, cross_entropy

Scores = dict[str, torch.Tensor]
TEACHER_SCORED = ("teacher_guided", "teacher_snip", "teacher_fisher")  # score with the teacher's loss, after guiding
EXTENSIONS = ("teacher_snip", "teacher_fisher", "fisher")  # our saliency variants, not the paper's or a baseline's
GRASP_TEMPERATURE = 200.0  # Wang et al. (2020) take the gradient of CE(logits / 200)
SYNFLOW_ROUNDS = 100  # Tanaka et al. (2020)


def magnitude(parameters: Mapping[str, nn.Parameter]) -> Scores:
    """|w| for each parameter."""
    return {name: param.detach().abs().clone() for name, param in parameters.items()}


def random(parameters: Mapping[str, nn.Parameter], seed: int) -> Scores:
    """Uniform scores in [0, 1) from a generator seeded with `seed`: a random mask."""
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.rand(param.shape, generator=generator).to(param.device) for name, param in parameters.items()}


# How one batch's gradient g_b of a weight w enters its score (`gradient_saliency`), summed over batches.
PER_BATCH_TERMS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "first_order": lambda w, g: (w * g).abs(),  # Σ_b |w ⊙ g_b|: ours and the CE gradient
    "summed": lambda w, g: g,  # Σ_b g_b, made |w ⊙ Σ_b g_b| afterwards: SNIP's form
    "fisher": lambda w, g: 0.5 * (w * g) ** 2,  # ½ w² Σ_b g_b²: a diagonal Fisher / OBD estimate
}


def gradient_saliency(
    model: nn.Module,
    parameters: Mapping[str, nn.Parameter],
    batches: Batches,
    objective: Objective,
    score_batches: int,
    form: str = "first_order",
) -> Scores:
    """Saliency of `objective` over the first `score_batches` batches, all accumulated before
    masking, in one of the `PER_BATCH_TERMS` forms: ``first_order`` Σ_b |w ⊙ ∂L_b/∂w|,
    ``summed`` |w ⊙ Σ_b ∂L_b/∂w|, ``fisher`` ½ Σ_b (w ⊙ ∂L_b/∂w)²."""
    if form not in PER_BATCH_TERMS:
        raise ValueError(f"Unknown saliency form {form!r}; choose one of {', '.join(PER_BATCH_TERMS)}.")
    totals = _accumulate(model, parameters, batches, objective, score_batches, PER_BATCH_TERMS[form])
    if form != "summed":
        return totals
    with torch.no_grad():
        return {name: (parameters[name] * gradient).abs() for name, gradient in totals.items()}


def _accumulate(
    model: nn.Module,
    parameters: Mapping[str, nn.Parameter],
    batches: Batches,
    objective: Objective,
    score_batches: int,
    term: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> Scores:
    """Σ_b term(w, ∂L_b/∂w) per parameter, gradients taken in train mode; the model is restored."""
    if score_batches <= 0:
        raise ValueError(f"score_batches must be positive, got {score_batches}")
    totals = {name: torch.zeros_like(param) for name, param in parameters.items()}
    used = 0
    with model_restored(model):
        model.train()
        for x, y in itertools.islice(batches, score_batches):
            loss = objective(model, x, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"scoring: the loss is {float(loss.detach())} at batch {used}")
            gradients = torch.autograd.grad(loss, list(parameters.values()))
            average_across_ranks(gradients)
            with torch.no_grad():
                for (name, param), gradient in zip(parameters.items(), gradients):
                    totals[name] += term(param, gradient)
            used += 1
    if used < score_batches:
        raise ValueError(f"scoring asked for {score_batches} batches but the data gave only {used}")
    return totals


def teacher_guided(
    model: nn.Module, parameters: Mapping[str, nn.Parameter], batches: Batches, objective: Distill, score_batches: int
) -> Scores:
    """Ours: Σ_b |w ⊙ ∂L_b/∂w| of the joint loss α · CA-KLD + (1 − α) · CE under the teacher."""
    return gradient_saliency(model, parameters, batches, objective, score_batches)


def ce_gradient(model: nn.Module, parameters: Mapping[str, nn.Parameter], batches: Batches, score_batches: int) -> Scores:
    """Σ_b |w ⊙ ∂CE_b/∂w|: teacher-guided scoring without the teacher."""
    return gradient_saliency(model, parameters, batches, cross_entropy, score_batches)


def snip(model: nn.Module, parameters: Mapping[str, nn.Parameter], batches: Batches, score_batches: int) -> Scores:
    """SNIP: |w ⊙ Σ_b ∂CE_b/∂w|."""
    return gradient_saliency(model, parameters, batches, cross_entropy, score_batches, form="summed")


def grasp(model: nn.Module, parameters: Mapping[str, nn.Parameter], batches: Batches, score_batches: int) -> Scores:
    """w ⊙ Hg summed over batches (= −S of Wang et al.; highest kept, i.e. largest S removed).

    g = Σ_b ∂CE(f(x_b)/200, y_b)/∂w over the scoring batches (no graph); then for each batch,
    Hg = ∂(g · ∂CE_b/∂w)/∂w with a second backward pass.
    """

    def tempered(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x) / GRASP_TEMPERATURE, y)

    chosen = list(itertools.islice(batches, score_batches))
    g = _accumulate(model, parameters, chosen, tempered, score_batches, PER_BATCH_TERMS["summed"])
    hessian_gradient = {name: torch.zeros_like(param) for name, param in parameters.items()}
    with model_restored(model):
        model.train()
        for x, y in chosen:
            gradients = torch.autograd.grad(tempered(model, x, y), list(parameters.values()), create_graph=True)
            inner = sum((gradient * g[name]).sum() for name, gradient in zip(parameters, gradients))
            for name, product in zip(parameters, torch.autograd.grad(inner, list(parameters.values()))):
                hessian_gradient[name] += product
    average_across_ranks(list(hessian_gradient.values()))  # Hg is linear in the batch: the mean of the ranks' Hg
    with torch.no_grad():
        return {name: parameters[name] * hessian_gradient[name] for name in parameters}


def synflow(
    model: nn.Module,
    parameters: Mapping[str, nn.Parameter],
    input_shape: tuple[int, ...],
    sparsity: float,
    rounds: int = SYNFLOW_ROUNDS,
) -> Scores:
    """Iterative synaptic flow (Tanaka et al., 2020), data-free.

    On a copy whose state is replaced by its absolute values (eval mode, float64), for rounds
    k = 1..n: R = Σ f(1) on an all-ones input, score = |w ⊙ ∂R/∂w| with the current mask applied,
    then prune to density (1 − sparsity)^(k/n) (exponential schedule). The returned scores rank
    the survivors of the last round (by their last score) above every weight pruned earlier, and
    those by the round in which they fell, so `global_mask(scores, sparsity)` reproduces the
    final mask exactly.
    """
    with model_restored(model):
        originals = {name: value.detach().clone() for name, value in model.state_dict().items()}
        model.eval()
        model.double()
        with torch.no_grad():
            for value in model.state_dict().values():
                if value.is_floating_point():
                    value.abs_()
        ones = torch.ones((1, *input_shape), dtype=torch.float64, device=next(model.parameters()).device)
        survivors = {name: torch.ones_like(param, dtype=torch.bool) for name, param in parameters.items()}
        fell_in_round = {name: torch.zeros_like(param, dtype=torch.float64) for name, param in parameters.items()}
        weights = {name: param.detach().clone() for name, param in parameters.items()}
        for k in range(1, rounds + 1):
            with torch.no_grad():
                for name, param in parameters.items():
                    param.copy_(weights[name] * survivors[name])
            flow = model(ones).sum()
            gradients = torch.autograd.grad(flow, list(parameters.values()))
            scores = {name: (param * gradient).detach().abs() for (name, param), gradient in zip(parameters.items(), gradients)}
            round_sparsity = sparsity if k == rounds else 1 - (1 - sparsity) ** (k / rounds)
            ranked = {name: torch.where(survivors[name], score, torch.full_like(score, -1.0)) for name, score in scores.items()}
            kept = global_mask(ranked, round_sparsity, allow_layer_collapse=True)
            for name in parameters:
                fell_in_round[name][survivors[name] & ~kept[name]] = k
                survivors[name] = kept[name]
        model.float()
        with torch.no_grad():
            for name, value in model.state_dict().items():
                value.copy_(originals[name])
    # Survivors: 1 + normalized last score in (1, 2]; pruned in round k: k / (rounds + 1) in (0, 1).
    result = {}
    peak = max(float(score.max()) for score in scores.values()) or 1.0
    for name in parameters:
        last = 1 + scores[name] / peak
        result[name] = torch.where(survivors[name], last, fell_in_round[name] / (rounds + 1)).float()
    return result


@contextlib.contextmanager
def model_restored(model: nn.Module) -> Iterator[None]:
    """Snapshot weights, buffers, grads and train/eval modes; put them back on exit."""
    state = {name: value.detach().clone() for name, value in model.state_dict().items()}
    grads = {name: param.grad for name, param in model.named_parameters()}
    modes = {module: module.training for module in model.modules()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, value in model.state_dict().items():
                value.copy_(state[name])
        for name, param in model.named_parameters():
            param.grad = grads[name]
        for module, training in modes.items():
            module.training = training


def layer_statistics(scores: Scores) -> list[dict[str, float | str]]:
    """Per layer (in `scores`' order): name, mean, median and max of its scores, and its `share`
    of the network's summed score (the layer's sum over the network's). Beside the layer's share of
    the weights, `share` says why a global ranking thins a layer: one whose scores sum to a far
    smaller share than its weights keeps few of them."""
    exact = {name: values.double() for name, values in scores.items()}
    total = float(sum(float(values.sum()) for values in exact.values()))
    return [
        {
            "name": name,
            "mean": float(values.mean()),
            "median": float(values.median()),
            "max": float(values.max()),
            "share": float(values.sum()) / total if total else float("nan"),
        }
        for name, values in exact.items()
    ]


def restrict_to(scores: Scores, mask: Mask) -> Scores:
    """Scores with every weight outside `mask` ranked below all others (for later pruning rounds)."""
    floor = min(float(score.min()) for score in scores.values()) - 1.0
    return {
        name: torch.where(mask[name].to(score.device), score, torch.full_like(score, floor)) if name in mask else score
        for name, score in scores.items()
    }


@dataclass(frozen=True)
class ScoringInputs:
    """What any scoring method may use.

    `distill` is needed only by teacher-guided scoring; `sparsity` (the target) only by SynFlow;
    `input_shape` (one input without the batch dimension, e.g. (C, H, W)) only by SynFlow; `seed` only by random scoring.
    """

    model: nn.Module
    parameters: Mapping[str, nn.Parameter]
    batches: Batches
    score_batches: int
    distill: Distill | None = None
    sparsity: float = 0.0
    input_shape: tuple[int, ...] = (3, 32, 32)
    seed: int = 0

    def require_distill(self) -> Distill:
        if self.distill is None:
            raise ValueError("teacher-guided scoring needs a teacher: pass distill=Distill(teacher, loss)")
        return self.distill


METHODS: dict[str, Callable[[ScoringInputs], Scores]] = {
    "teacher_guided": lambda s: teacher_guided(s.model, s.parameters, s.batches, s.require_distill(), s.score_batches),
    "teacher_snip": lambda s: gradient_saliency(s.model, s.parameters, s.batches, s.require_distill(), s.score_batches, form="summed"),
    "teacher_fisher": lambda s: gradient_saliency(s.model, s.parameters, s.batches, s.require_distill(), s.score_batches, form="fisher"),
    "fisher": lambda s: gradient_saliency(s.model, s.parameters, s.batches, cross_entropy, s.score_batches, form="fisher"),
    "ce_gradient": lambda s: ce_gradient(s.model, s.parameters, s.batches, s.score_batches),
    "snip": lambda s: snip(s.model, s.parameters, s.batches, s.score_batches),
    "grasp": lambda s: grasp(s.model, s.parameters, s.batches, s.score_batches),
    "synflow": lambda s: synflow(s.model, s.parameters, s.input_shape, s.sparsity),
    "magnitude": lambda s: magnitude(s.parameters),
    "random": lambda s: random(s.parameters, s.seed),
}


def score(method: str, inputs: ScoringInputs) -> Scores:
    """Scores of the registered `method` (a key of `METHODS`)."""
    if method not in METHODS:
        raise ValueError(f"Unknown scoring method {method!r}; choose one of {', '.join(METHODS)}.")
    return METHODS[method](inputs)
