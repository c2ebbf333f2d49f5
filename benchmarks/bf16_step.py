"""Benchmark: a bf16-autocast training step against a float32 one on the CPU, side by side.

    python benchmarks/bf16_step.py [--batch-size 128] [--steps 2] [--repeats 6] [--threads N]

For ResNet-20 and ResNet-56 (CIFAR shapes, channels_last, SGD with Nesterov momentum as
`tkdlib.train.fit` uses), two copies of the same network train on the same synthetic batch
(random images and labels: timing only), one in float32 and one under
``torch.autocast("cpu", torch.bfloat16)`` (`tkdlib.runtime.Runtime("cpu", "bf16")`, what
``precision="auto"`` picks where the processor has native bf16). Their steps are timed
alternately, `repeats` times `steps` steps each; the figure per network is the median of the
paired ratios (seconds per fp32 step) / (seconds per bf16 step), the speed-up of bf16. The last
line gives the smaller of the two (goal ≥ 1.4 where bf16 is native); on a processor without
native bf16 (`tkdlib.runtime.native_cpu_bf16`) torch emulates it, and the line says "not native".
"""

from __future__ import annotations

import argparse
import copy

import torch

from tkdlib.models import build_model
from tkdlib.runtime import CPU, Runtime, native_cpu_bf16
from tkdlib.throughput import add_step_timing_arguments, alternate_timings, median_paired_speedup, random_batch, timing_optimizer, train_step, use_threads

GOAL = 1.4  # read by run_all.py: the figure on the last line should be at least this
HIGHER_IS_BETTER = True
BF16 = Runtime("cpu", "bf16")


def bf16_speedup(arch: str, batch_size: int, steps: int, repeats: int) -> tuple[float, float, float]:
    """Images per second of the best fp32 and the best bf16 step of `arch`, and the median paired
    speed-up fp32 seconds / bf16 seconds."""
    torch.manual_seed(0)
    fp32_model = build_model(arch, 10).to(memory_format=torch.channels_last).train()
    bf16_model = copy.deepcopy(fp32_model)
    optimizers = {"fp32": timing_optimizer(fp32_model), "bf16": timing_optimizer(bf16_model)}
    x, y = random_batch(batch_size, 32, 10)
    seconds = alternate_timings(
        {
            "fp32": lambda: train_step(fp32_model, optimizers["fp32"], x, y, CPU),
            "bf16": lambda: train_step(bf16_model, optimizers["bf16"], x, y, BF16),
        },
        calls=steps,
        repeats=repeats,
    )
    ratio = median_paired_speedup(seconds["fp32"], seconds["bf16"])
    return batch_size / min(seconds["fp32"]), batch_size / min(seconds["bf16"]), ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_timing_arguments(parser, steps=2, repeats=6, sparsity=None)
    args = parser.parse_args()
    use_threads(args.threads)
    native = native_cpu_bf16()
    ratios = []
    for arch in ("resnet20", "resnet56"):
        fp32, bf16, ratio = bf16_speedup(arch, args.batch_size, args.steps, args.repeats)
        ratios.append(ratio)
        print(f"{arch}: fp32 {fp32:,.0f} img/s, bf16 {bf16:,.0f} img/s, median paired speed-up {ratio:.2f}×", flush=True)
    where = "native bf16" if native else "not native: torch emulates bf16 on this processor"
    print(f"bf16/fp32 training-step speed-up, the smaller of ResNet-20 and ResNet-56 ({where}): {min(ratios):.2f}")


if __name__ == "__main__":
    main()
