"""Check: a dense student trained under bf16 autocast lands within the seed spread of float32 ones.

    python benchmarks/bf16_accuracy.py [--fp32 runs/cpu] [--bf16 runs/cpu-bf16]

Reads finished run records only (no training): the `cpu` profile's dense students were trained in
float32 (seeds 0, 1 and 2), the `cpu-bf16` profile's with the very same config under bf16
autocast. For each seed that both trained (the same config fields, so the same data order and
initialization), it prints both test accuracies; then the spread of the float32 students across
seeds (max − min, in points). The figure on the last line is the largest |bf16 − fp32| of one
seed divided by that spread (goal ≤ 1: bf16 changes the result less than the seed does).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tkdlib.config import STUDENT_FIELDS, Config

GOAL = 1.0  # read by run_all.py: the figure on the last line should be at most this


def dense_accuracies(out_dir: Path, precision: str) -> dict[int, tuple[str, float]]:
    """Per seed: the dense student's config key and test accuracy, from the finished records under
    `out_dir` that trained in `precision` (records made before precision was recorded trained in fp32)."""
    found: dict[int, tuple[str, float]] = {}
    for path in sorted(out_dir.glob("*/record.json")):
        record = json.loads(path.read_text())
        if record.get("status") != "finished" or record["environment"].get("precision", "fp32") != precision:
            continue
        config = Config.from_dict(record["config"])
        found.setdefault(config.seed, (config.key(STUDENT_FIELDS), record["accuracy"]["dense"]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fp32", type=Path, default=Path("runs/cpu"), help="out_dir of float32 records")
    parser.add_argument("--bf16", type=Path, default=Path("runs/cpu-bf16"), help="out_dir of bf16 records")
    args = parser.parse_args()
    fp32, bf16 = dense_accuracies(args.fp32, "fp32"), dense_accuracies(args.bf16, "bf16")
    paired = sorted(seed for seed in fp32.keys() & bf16.keys() if fp32[seed][0] == bf16[seed][0])
    if not paired or len(fp32) < 2:
        raise SystemExit(f"need a seed trained in both precisions and two float32 seeds; found fp32 seeds {sorted(fp32)}, bf16 seeds {sorted(bf16)}")
    spread = 100 * (max(acc for _, acc in fp32.values()) - min(acc for _, acc in fp32.values()))
    for seed in paired:
        print(f"seed {seed}: dense ResNet-20 fp32 {100 * fp32[seed][1]:.2f} %, bf16 {100 * bf16[seed][1]:.2f} %")
    print(f"fp32 seeds {', '.join(map(str, sorted(fp32)))}: " + ", ".join(f"{100 * acc:.2f}" for _, acc in fp32.values()) + f" % (spread {spread:.2f} points)")
    worst = max(abs(100 * (bf16[seed][1] - fp32[seed][1])) for seed in paired)
    print(f"largest |bf16 − fp32| of one seed / fp32 seed spread: {worst / spread:.2f}")


if __name__ == "__main__":
    main()
