"""Benchmark: `TensorLoader` against the torchvision DataLoader with PIL transforms, side by side.

    python benchmarks/loader.py [--root DATA_ROOT] [--batch-size 128] [--workers 2] [--batches 100]
                                [--repeats 3] [--steps 10]

Both loaders make the same training batches (shuffle, random crop after padding, horizontal flip,
normalize) from the same in-memory arrays: the bundled CIFAR-10 sample, and the full CIFAR-10
when a data root is given. Prints images per second of each and their ratio, then the ResNet-20
training-step rate (batch 128, channels_last), against the last data set's loaders, to show that
the loader is not what bounds an epoch, and on the last line the ratio TensorLoader/torchvision
of the last data set (goal ≥ 8). Rates are the best of `repeats` and depend on what else the
machine is running; ``--batches 20 --repeats 2 --steps 3`` is a quick run (`run_all.py` uses it).
"""

from __future__ import annotations

import argparse

from tkdlib import data
from tkdlib.throughput import compare_loaders, train_step_rate

GOAL = 8.0  # read by run_all.py: the figure on the last line should be at least this
HIGHER_IS_BETTER = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="data root holding CIFAR-10 (default: only the bundled sample)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--batches", type=int, default=100, help="batches timed per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each loader, best kept")
    parser.add_argument("--steps", type=int, default=10, help="training steps timed per measurement")
    args = parser.parse_args()

    for name in ("cifar10-sample", "cifar10") if args.root else ("cifar10-sample",):
        train = data.load_dataset(name, "train", args.root)
        comparison = compare_loaders(train, data.dataset_spec(name), args.batch_size, args.workers, args.batches, args.repeats)
        print(f"{name} ({len(train):,} train images), batch {args.batch_size}: {comparison.describe()}", flush=True)
    steps = train_step_rate("resnet20", args.batch_size, image_size=32, num_classes=10, steps=args.steps)
    print(
        f"ResNet-20 training steps (batch {args.batch_size}, channels_last): {steps:,.0f} img/s; making its batches "
        f"takes {steps / comparison.tensor:.1%} of a step's time with TensorLoader, "
        f"{steps / comparison.torchvision:.1%} with the torchvision pipeline"
    )
    print(f"TensorLoader/torchvision images per second: {comparison.ratio:.2f}")


if __name__ == "__main__":
    main()
