"""Benchmark: the teacher-guided scoring pass against one training epoch of the student.

    python benchmarks/scoring_pass.py [--steps 10] [--repeats 3] [--epoch-images 50000] [--threads N]

As the `cpu` profile runs it: a ResNet-56 teacher, a ResNet-20 student, CIFAR-sized inputs
(3×32×32, 10 classes), batch 128, channels_last, and `Config()`'s defaults for everything else
(`score_batches`, α, T; γ fixed at 0.5 instead of measured, which costs nothing extra). The
scoring pass is `tkdlib.scoring.score("teacher_guided", ...)`: for each of `score_batches`
batches a teacher forward and a student forward and backward through the joint loss. The epoch
is *extrapolated*: blocks of `steps` SGD training steps of the student (CE, the dense student's
training) are timed and scaled to the ⌈epoch_images / 128⌉ = 391 steps of one CIFAR-10 epoch,
since a whole epoch takes about 90 s on this machine. Inputs are synthetic (random images and
labels): the work per batch does not depend on the pixels. A scoring pass and a block of steps
take about as long, and they are timed alternately, `repeats` times; the figure is the median of
the paired ratios scoring pass / extrapolated epoch, which a machine whose load drifts disturbs
least. Prints the best times of each, the same ratio by FLOP count (which no load disturbs) and,
on the last line, the median timed ratio (goal ≤ 0.05). On a loaded machine ``--threads 1``
times with less noise (`run_all.py` uses it).
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch

from tkdlib.compute import forward_flops
from tkdlib.config import Config
from tkdlib.losses import DistillationLoss
from tkdlib.masks import prunable_parameters
from tkdlib.models import build_model
from tkdlib.scoring import ScoringInputs, score
from tkdlib.throughput import alternate_timings, random_batch, train_step, use_threads
from tkdlib.train import Distill

GOAL = 0.05  # read by run_all.py: the figure on the last line should be at most this
GAMMA = 0.5  # fixed CA-KLD mix weight: measuring it is a separate, calibration phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed block, scaled to one epoch")
    parser.add_argument("--repeats", type=int, default=3, help="alternating timings of each")
    parser.add_argument("--epoch-images", type=int, default=50_000, help="training images in one epoch")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    args = parser.parse_args()
    if min(args.steps, args.repeats, args.epoch_images) < 1:
        parser.error("--steps, --repeats and --epoch-images must be positive")
    use_threads(args.threads)

    config = Config(arch="resnet20", teacher_arch="resnet56")
    torch.manual_seed(config.seed)
    student = build_model(config.arch, 10).to(memory_format=torch.channels_last).train()
    teacher = build_model(config.teacher_arch, 10).to(memory_format=torch.channels_last)
    distill = Distill(teacher, DistillationLoss(config.alpha, config.temperature, GAMMA, config.normalize_logits))
    batch = random_batch(config.batch_size, 32, 10)
    inputs = ScoringInputs(student, prunable_parameters(student), [batch] * config.score_batches, config.score_batches, distill)
    optimizer = torch.optim.SGD(student.parameters(), lr=config.lr, momentum=0.9, weight_decay=config.weight_decay, nesterov=True)

    def steps() -> None:
        for _ in range(args.steps):
            train_step(student, optimizer, *batch)

    seconds = alternate_timings({"score": lambda: score("teacher_guided", inputs), "steps": steps}, calls=1, warmup=1, repeats=args.repeats)
    epoch_steps = math.ceil(args.epoch_images / config.batch_size)
    epochs = [block / args.steps * epoch_steps for block in seconds["steps"]]
    ratios = [scoring / epoch for scoring, epoch in zip(seconds["score"], epochs)]
    print(
        f"teacher-guided scoring pass ({config.score_batches} batches of {config.batch_size}, {config.teacher_arch} teacher, "
        f"{config.arch} student, synthetic inputs, {torch.get_num_threads()} CPU threads): best {min(seconds['score']):.2f} s of {args.repeats}",
        flush=True,
    )
    print(
        f"one {config.arch} training epoch, EXTRAPOLATED from {args.repeats} timings of {args.steps} steps: best "
        f"{min(seconds['steps']) / args.steps * 1e3:.0f} ms/step × {epoch_steps} steps ({args.epoch_images:,} images) = {min(epochs):.1f} s"
    )
    student_flops, teacher_flops = forward_flops(student, (3, 32, 32)), forward_flops(teacher, (3, 32, 32))
    flop_ratio = config.score_batches * config.batch_size * (3 * student_flops + teacher_flops) / (args.epoch_images * 3 * student_flops)
    print(f"by FLOP count (backward = 2 × forward, as tkdlib.compute counts; load-independent): {flop_ratio:.4f}")
    print(f"{args.repeats} paired ratios scoring pass/epoch: {', '.join(f'{ratio:.4f}' for ratio in ratios)}")
    print(f"scoring pass/training epoch (median): {statistics.median(ratios):.5f}")


if __name__ == "__main__":
    main()
