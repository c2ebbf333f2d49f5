"""Benchmark: the teacher-guided scoring pass against one training epoch of the student.

    python benchmarks/scoring_pass.py [--steps 10] [--repeats 3] [--epoch-images 50000]

As the `cpu` profile runs it: a ResNet-56 teacher, a ResNet-20 student, CIFAR-sized inputs
(3×32×32, 10 classes), batch 128, channels_last, and `Config()`'s defaults for everything else
(`score_batches`, α, T; γ fixed at 0.5 instead of measured, which costs nothing extra). The
scoring pass is `tkdlib.scoring.score("teacher_guided", ...)`: for each of `score_batches`
batches a teacher forward and a student forward and backward through the joint loss. The epoch
is *extrapolated*: `steps` SGD training steps of the student (CE, the dense student's training)
are timed and scaled to the ⌈epoch_images / 128⌉ = 391 steps of one CIFAR-10 epoch, since a
whole epoch takes about 90 s on this machine. Inputs are synthetic (random images and labels):
the work per batch does not depend on the pixels. Both are timed alternately, best of
`repeats`. Prints both and, on the last line, the ratio scoring pass / epoch (goal ≤ 0.05).
"""

from __future__ import annotations

import argparse
import math

import torch

from tkdlib.config import Config
from tkdlib.losses import DistillationLoss
from tkdlib.masks import prunable_parameters
from tkdlib.models import build_model
from tkdlib.scoring import ScoringInputs, score
from tkdlib.throughput import random_batch, time_alternately, train_step
from tkdlib.train import Distill

GOAL = 0.05  # read by run_all.py: the figure on the last line should be at most this
GAMMA = 0.5  # fixed CA-KLD mix weight: measuring it is a separate, calibration phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="training steps timed, then scaled to one epoch")
    parser.add_argument("--repeats", type=int, default=3, help="alternating timings of each")
    parser.add_argument("--epoch-images", type=int, default=50_000, help="training images in one epoch")
    args = parser.parse_args()
    if args.epoch_images < 1:
        parser.error("--epoch-images must be positive")

    config = Config(arch="resnet20", teacher_arch="resnet56")
    torch.manual_seed(config.seed)
    student = build_model(config.arch, 10).to(memory_format=torch.channels_last).train()
    teacher = build_model(config.teacher_arch, 10).to(memory_format=torch.channels_last)
    distill = Distill(teacher, DistillationLoss(config.alpha, config.temperature, GAMMA, config.normalize_logits))
    batch = random_batch(config.batch_size, 32, 10)
    inputs = ScoringInputs(student, prunable_parameters(student), [batch] * config.score_batches, config.score_batches, distill)
    optimizer = torch.optim.SGD(student.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay, nesterov=True)

    seconds = time_alternately(
        {"score": lambda: score("teacher_guided", inputs), "step": lambda: train_step(student, optimizer, *batch)},
        calls=1,
        warmup=1,
        repeats=args.repeats,
    )
    step_seconds = min(
        time_alternately({"steps": lambda: train_step(student, optimizer, *batch)}, args.steps, warmup=0, repeats=1)["steps"],
        seconds["step"],
    )
    epoch_steps = math.ceil(args.epoch_images / config.batch_size)
    epoch = step_seconds * epoch_steps
    print(
        f"teacher-guided scoring pass ({config.score_batches} batches of {config.batch_size}, {config.teacher_arch} teacher, "
        f"{config.arch} student, synthetic inputs): {seconds['score']:.2f} s (best of {args.repeats})",
        flush=True,
    )
    print(
        f"one {config.arch} training epoch, EXTRAPOLATED from the best of {args.repeats} single steps and {args.steps} "
        f"consecutive steps: {step_seconds * 1e3:.0f} ms/step × {epoch_steps} steps ({args.epoch_images:,} images) = {epoch:.1f} s"
    )
    print(f"scoring pass/training epoch: {seconds['score'] / epoch:.5f}")


if __name__ == "__main__":
    main()
