"""Check the datasets under a data root: sizes, classes, pixel statistics, load times, loader speed.

    python scripts/check_data.py [--root /work/shared/data] [--fresh-cache] [--loader-batches 50]

For the bundled sample and each dataset found under the root (default ``$TKD_DATA``), per split:
images, classes, per-channel mean and std of pixels / 255 (compare with the data READMEs and with
``CHANNEL_STATS``, printed beside them), the time of the first load (a decode when the cache had
no copy of the split, else a cache read: the line says which; ``--fresh-cache`` decodes into an
empty temporary cache) and of a second, cached load; then, on the train split, images per second
of `TensorLoader` and of the torchvision DataLoader with PIL transforms.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from tkdlib import data
from tkdlib.throughput import compare_loaders


def _timed_load(name: str, split: str, root: str | None) -> tuple[data.ImageArrays, float, str]:
    """Load a split; the seconds it took, and whether it decoded into the cache or read from it."""
    before = set(data.cache_dir().glob("*.npz"))
    start = time.perf_counter()
    arrays = data.load_dataset(name, split, root)
    seconds = time.perf_counter() - start
    written = set(data.cache_dir().glob("*.npz")) - before
    return arrays, seconds, "decoded and cached" if written else "read from cache or source"


def _triple(values: tuple[float, float, float]) -> str:
    return " ".join(f"{v:.4f}" for v in values)


def check(name: str, root: str | None, loader_batches: int) -> None:
    """Print the checks of one dataset; a dataset not found under the root is reported and skipped."""
    print(f"== {name} ==", flush=True)
    spec = data.dataset_spec(name)
    train = None
    for split in data.SPLITS:
        try:
            arrays, first, how = _timed_load(name, split, root)
        except FileNotFoundError as missing:
            print(f"not found: {missing}")
            return
        _, again, _ = _timed_load(name, split, root)
        mean, std = data.channel_stats(arrays.images)
        print(
            f"{split:5s}  {len(arrays):7,d} images {arrays.images.shape[1]}×{arrays.images.shape[2]}, "
            f"{arrays.num_classes} classes, mean {_triple(mean)}, std {_triple(std)}; "
            f"first load {first:.1f} s ({how}), second load {again:.2f} s",
            flush=True,
        )
        print(f"       source: {arrays.source}")
        train = arrays if split == "train" else train
    print(f"CHANNEL_STATS (used to normalize): mean {_triple(spec.mean)}, std {_triple(spec.std)}; crop padding {spec.pad}")
    print(f"loader, train split, batch 128: {compare_loaders(train, spec, max_batches=loader_batches).describe()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="data root (default: $TKD_DATA)")
    parser.add_argument("--fresh-cache", action="store_true", help="decode into an empty temporary cache, to time first decodes")
    parser.add_argument("--loader-batches", type=int, default=50, help="batches timed per loader measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tkd-check-") as fresh:
        if args.fresh_cache:
            os.environ[data.CACHE_ENV] = fresh
        print(f"cache: {data.cache_dir()}")
        for name in data.DATASET_NAMES:
            check(name, args.root, args.loader_batches)


if __name__ == "__main__":
    main()
