"""Benchmark: a masked training step against a dense one, side by side.

    python benchmarks/masked_step.py [--batch-size 128] [--sparsity 0.9] [--steps 1] [--repeats 20]
                                     [--threads N]

Two copies of the same ResNet-20 (channels_last, SGD with Nesterov momentum 0.9 and weight decay
5e-4, as `tkdlib.train.fit` uses) train on the same synthetic batch (random images and labels:
timing only); one holds a 90 %-sparse magnitude mask with `tkdlib.masks.HeldMask`, as `fit` does.
Their steps are timed alternately, `repeats` times `steps` steps each, so each masked timing has
a dense one beside it; the figure is the median of those paired ratios masked/dense, which a
machine whose load drifts disturbs least (the best time of each is printed as well). On CPU, and
on CUDA too when there is one. The mask's own work per step (its gradient hooks and its
re-masking after the optimizer step, two elementwise multiplies per masked tensor) is timed
alone as well, since on a busy machine it is far below the noise of a whole step. Prints
milliseconds per step and, on the last line, the median ratio masked/dense on CPU (goal ≤ 1.02).
Times depend on what else the machine runs: where other processes load the cores, ``--threads 1``
measures with far less noise (with two threads each op waits whenever either is descheduled;
here a loaded machine gave paired ratios within 0.88–1.16 with one thread, 0.27–3.2 with two),
and `run_all.py` uses it with 40 repeats.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from tkdlib.models import build_model
from tkdlib.throughput import add_step_timing_arguments, alternate_timings, masked_student, random_batch, time_alternately, timing_optimizer, train_step, use_threads

GOAL = 1.02  # read by run_all.py: the figure on the last line should be at most this


def masked_over_dense(device: str, batch_size: int, sparsity: float, steps: int, repeats: int) -> float:
    """Median over alternating timings of (seconds per masked step) / (seconds per dense step)
    of ResNet-20 on `device`."""
    torch.manual_seed(0)
    dense = build_model("resnet20", 10).to(device=device, memory_format=torch.channels_last).train()
    masked, masked_optimizer, held = masked_student(dense, sparsity)
    optimizers = {"dense": timing_optimizer(dense), "masked": masked_optimizer}
    x, y = random_batch(batch_size, 32, 10, device)
    with held:
        seconds = alternate_timings(
            {
                "dense": lambda: train_step(dense, optimizers["dense"], x, y),
                "masked": lambda: train_step(masked, optimizers["masked"], x, y),
            },
            calls=steps,
            repeats=repeats,
            device=device,
        )
        guard = time_alternately({"reapply": held.reapply}, calls=10, repeats=repeats, device=device)["reapply"]
    ratios = [m / d for m, d in zip(seconds["masked"], seconds["dense"])]
    best_dense, best_masked = min(seconds["dense"]), min(seconds["masked"])
    print(
        f"{device} ({torch.get_num_threads()} CPU threads): best dense step {best_dense * 1e3:.1f} ms, best masked step ({sparsity:.0%} sparse, HeldMask) "
        f"{best_masked * 1e3:.1f} ms; {repeats} paired ratios masked/dense of {steps} step(s) each: median "
        f"{statistics.median(ratios):.3f}, range {min(ratios):.3f}–{max(ratios):.3f}; the mask's own work ≈ "
        f"2 × {guard * 1e3:.3f} ms per step = {2 * guard / best_dense:.2%} of a dense step",
        flush=True,
    )
    return statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_timing_arguments(parser, steps=1, repeats=20)
    args = parser.parse_args()
    use_threads(args.threads)

    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    ratios = {device: masked_over_dense(device, args.batch_size, args.sparsity, args.steps, args.repeats) for device in devices}
    if len(ratios) > 1:
        print(f"cuda masked/dense step time: {ratios['cuda']:.3f}")
    print(f"masked/dense step time: {ratios['cpu']:.3f}")


if __name__ == "__main__":
    main()
