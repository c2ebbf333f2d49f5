"""Benchmark: retraining steps under an eager teacher against a teacher with its batch norms folded.

    python benchmarks/teacher_forward.py [--batch-size 128] [--sparsity 0.9] [--steps 2] [--repeats 6]
                                         [--threads N]

Retraining under the ResNet-56 teacher is the bulk of a converged one-shot cell (about 27 of its
30 minutes on 2 cores), and the teacher's forward pass is a large share of each step. The
teacher is frozen and in eval mode, so each batch norm is an affine map that can be folded into
the convolution before it (``torch.fx.experimental.optimization.fuse``), and its forward can run
under ``torch.inference_mode`` instead of ``torch.no_grad``. Does that pay?

Four steps of a ResNet-20 student (channels_last, SGD with Nesterov momentum, a `sparsity`
magnitude mask held by `tkdlib.masks.HeldMask`) on one synthetic batch, at the precision
``precision="auto"`` picks, timed alternately `repeats` times `steps` steps each:

- the cross-entropy step (no teacher: what the teacher's forward adds is the difference);
- the distillation step as `tkdlib.train.Distill` takes it (α·CA-KLD + (1 − α)·CE at T = 4);
- the same step with the folded teacher under ``inference_mode``;
- the same again with the folded teacher ``torch.compile``d (inductor fuses the ReLUs and
  residual additions into the convolutions; compiling costs time once, printed).

Printed: images per second of each, the teacher's share of the eager distillation step, the
largest difference between the folded and the eager teacher's logits on the batch, relative to
the largest logit (folding changes rounding, not the function), and on the last line the better
of the two median paired speed-ups of the distillation step (goal ≥ 1.1: below that, a change of
the code in the middle of a grid is not worth its seconds).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from tkdlib.losses import DistillationLoss
from tkdlib.models import build_model
from tkdlib.runtime import Runtime
from tkdlib.throughput import add_step_timing_arguments, alternate_timings, masked_student, median_paired_speedup, random_batch, train_step, use_threads
from tkdlib.train import Distill, cross_entropy

GOAL = 1.1  # read by run_all.py: the figure on the last line should be at least this
HIGHER_IS_BETTER = True


class FoldedDistill(Distill):
    """`Distill` whose teacher has its batch norms folded into its convolutions (and, with
    `compiled`, goes through ``torch.compile``) and runs under ``torch.inference_mode``; the same
    loss."""

    def __init__(self, teacher: nn.Module, loss: DistillationLoss, compiled: bool = False) -> None:
        folded = fuse(teacher.eval()).to(memory_format=torch.channels_last)
        super().__init__(torch.compile(folded) if compiled else folded, loss)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            teacher_logits = self.teacher(x)
        return self.loss(model(x), teacher_logits.clone(), y)


def relative_logit_difference(eager: Distill, folded: Distill, x: torch.Tensor, runtime: Runtime) -> float:
    """The largest absolute difference between the two teachers' logits on `x` (B, 3, H, W),
    under `runtime`'s autocast, as a fraction of the eager teacher's largest absolute logit."""
    with torch.inference_mode(), runtime.autocast():
        reference = eager.teacher(x).float()
        return ((reference - folded.teacher(x).float()).abs().max() / reference.abs().max()).item()


def folding_speedup(batch_size: int, sparsity: float, steps: int, repeats: int) -> float:
    """Print the rates, the teacher's share, and per folded teacher the median paired speed-up of
    the distillation step and its logits' largest difference; return the better speed-up."""
    runtime = Runtime("cpu", "auto").resolved()
    torch.manual_seed(0)
    student, optimizer, held = masked_student(build_model("resnet20", 10).to(memory_format=torch.channels_last).train(), sparsity)
    teacher = build_model("resnet56", 10).to(memory_format=torch.channels_last)
    _give_batch_norms_statistics(teacher)
    loss = DistillationLoss(alpha=0.9, temperature=4.0, gamma=0.8)
    eager, folded, compiled = Distill(teacher, loss), FoldedDistill(teacher, loss), FoldedDistill(teacher, loss, compiled=True)
    x, y = random_batch(batch_size, 32, 10)

    def step(objective: Callable) -> Callable[[], None]:
        return lambda: train_step(student, optimizer, x, y, runtime, objective)

    start = time.perf_counter()
    step(compiled)()
    print(f"compiling the folded teacher (its first step): {time.perf_counter() - start:.0f} s", flush=True)
    kinds = {
        "cross-entropy": cross_entropy,
        "distillation, eager teacher": eager,
        "distillation, folded teacher": folded,
        "distillation, folded and compiled teacher": compiled,
    }
    seconds = alternate_timings({kind: step(objective) for kind, objective in kinds.items()}, calls=steps, repeats=repeats)
    held.remove()
    for kind, values in seconds.items():
        print(f"ResNet-20 {kind} step, {runtime.precision}, {sparsity:.0%} mask held: {batch_size / min(values):,.0f} img/s", flush=True)
    ce, distill = statistics.median(seconds["cross-entropy"]), statistics.median(seconds["distillation, eager teacher"])
    print(f"the eager teacher's share of the distillation step: {(distill - ce) / distill:.0%}", flush=True)
    speedups = []
    for kind, other in (("folded", folded), ("folded and compiled", compiled)):
        speedups.append(median_paired_speedup(seconds["distillation, eager teacher"], seconds[f"distillation, {kind} teacher"]))
        difference = relative_logit_difference(eager, other, x, runtime)
        print(f"{kind} teacher: median paired speed-up {speedups[-1]:.2f}×, largest logit difference from the eager teacher {difference:.2%} of its largest logit", flush=True)
    return max(speedups)


def _give_batch_norms_statistics(model: nn.Module) -> None:
    """Running statistics unlike a fresh network's zeros and ones, so that folding has work to do
    (a trained teacher's batch norms are never the identity)."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_timing_arguments(parser, steps=2, repeats=6)
    args = parser.parse_args()
    use_threads(args.threads)
    speedup = folding_speedup(args.batch_size, args.sparsity, args.steps, args.repeats)
    print(f"best speed-up of the distillation step (retraining under the teacher): {speedup:.2f}")


if __name__ == "__main__":
    main()
