"""Benchmark: training steps of a `torch.compile`d student against eager ones, side by side.

    python benchmarks/compile_step.py [--batch-size 128] [--sparsity 0.9] [--steps 2] [--repeats 6]
                                      [--threads N]

Does ``--compile`` (`tkdlib.runtime.Runtime.compile`) pay for the phases of a converged grid on
this machine? Two copies of the same ResNet-20 student (channels_last, SGD with Nesterov momentum
as `tkdlib.train.fit` uses, a `sparsity` magnitude mask held by `tkdlib.masks.HeldMask`) train
on the same synthetic batch (random images and labels: timing only) at the precision
``precision="auto"`` picks (bf16 autocast where the processor has it); one runs through
`Runtime.trainer`, i.e. ``torch.compile``. Two steps are timed, alternately with their eager
twins, `repeats` times `steps` steps each:

- the cross-entropy step (how dense students are trained);
- the retraining step under a ResNet-56 teacher (`tkdlib.train.Distill`, α·CA-KLD + (1 − α)·CE
  at T = 4), where the teacher's forward stays eager, as `Runtime.trainer` leaves it.

Per step: the best images per second of each and the median of the paired ratios eager seconds /
compiled seconds. Compiling costs time once (the first compiled step, printed; torch caches the
compiled graph on disk, so later processes pay far less); the break-even says after how many steps the faster steps have paid it back. The last line is
the speed-up of the retraining step, the bulk of a one-shot cell (goal ≥ 1.2, what makes
compiling worth its start-up within a 20-epoch retraining).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from tkdlib.losses import DistillationLoss
from tkdlib.models import build_model
from tkdlib.runtime import Runtime
from tkdlib.throughput import add_step_timing_arguments, alternate_timings, masked_student, median_paired_speedup, random_batch, train_step, use_threads
from tkdlib.train import Distill, cross_entropy

GOAL = 1.2  # read by run_all.py: the figure on the last line should be at least this
HIGHER_IS_BETTER = True
DISTILLATION = "distillation step (eager ResNet-56 teacher)"
STEPS_PER_EPOCH = 390  # CIFAR-10's 50,000 training images in batches of 128


def compile_speedups(batch_size: int, sparsity: float, steps: int, repeats: int) -> float:
    """Print, per step kind, eager and compiled images per second and their median paired
    speed-up, the compile time and the break-even; return the retraining step's speed-up."""
    eager_runtime = Runtime("cpu", "auto").resolved()
    compiled_runtime = Runtime("cpu", eager_runtime.precision, compile=True)
    torch.manual_seed(0)
    seed_model = build_model("resnet20", 10).to(memory_format=torch.channels_last).train()
    teacher = build_model("resnet56", 10).to(memory_format=torch.channels_last).eval()
    distill = Distill(teacher, DistillationLoss(alpha=0.9, temperature=4.0, gamma=0.8))
    eager, eager_optimizer, eager_mask = masked_student(seed_model, sparsity)
    compiled, compiled_optimizer, compiled_mask = masked_student(seed_model, sparsity)
    trainer = compiled_runtime.trainer(compiled)
    x, y = random_batch(batch_size, 32, 10)

    def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, objective: Callable) -> Callable[[], None]:
        return lambda: train_step(model, optimizer, x, y, eager_runtime, objective)

    start = time.perf_counter()
    step(trainer, compiled_optimizer, cross_entropy)()
    compile_seconds = time.perf_counter() - start
    objectives = {"cross-entropy step": cross_entropy, DISTILLATION: distill}
    tasks = {}
    for kind, objective in objectives.items():
        tasks[f"{kind} / eager"] = step(eager, eager_optimizer, objective)
        tasks[f"{kind} / compiled"] = step(trainer, compiled_optimizer, objective)
    seconds = alternate_timings(tasks, calls=steps, repeats=repeats)
    eager_mask.remove()
    compiled_mask.remove()
    speedups = {}
    for kind in objectives:
        eager_seconds, compiled_seconds = seconds[f"{kind} / eager"], seconds[f"{kind} / compiled"]
        speedups[kind] = median_paired_speedup(eager_seconds, compiled_seconds)
        saved = statistics.median(eager_seconds) - statistics.median(compiled_seconds)
        payback = f"pays back the compile time after {compile_seconds / saved:,.0f} steps ({compile_seconds / saved / STEPS_PER_EPOCH:.1f} epochs)" if saved > 0 else "never pays back the compile time"
        print(
            f"ResNet-20 {kind}, {eager_runtime.precision}, {sparsity:.0%} mask held: eager {batch_size / min(eager_seconds):,.0f} img/s, "
            f"compiled {batch_size / min(compiled_seconds):,.0f} img/s, median paired speed-up {speedups[kind]:.2f}×; {payback}",
            flush=True,
        )
    print(f"compiling (the first compiled step): {compile_seconds:.0f} s, once per process (torch caches compiled graphs on disk: a second process pays less)", flush=True)
    return speedups[DISTILLATION]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_timing_arguments(parser, steps=2, repeats=6)
    args = parser.parse_args()
    use_threads(args.threads)
    speedup = compile_speedups(args.batch_size, args.sparsity, args.steps, args.repeats)
    print(f"compiled/eager speed-up of the distillation step (retraining under the teacher): {speedup:.2f}")


if __name__ == "__main__":
    main()
