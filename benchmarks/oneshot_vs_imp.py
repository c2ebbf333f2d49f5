"""Benchmark: the one-shot teacher-guided pipeline against IMP, from committed run records.

    python benchmarks/oneshot_vs_imp.py [--profile sample]

Reads the finished runs of the profile's main comparison (``runs/<profile>/<hash>/record.json``,
no retraining here), takes the highest sparsity at which both `teacher_guided` and `imp` (5
rounds by default) finished for the same seed, and compares the compute each paid, from each
record's ``compute`` section (`tkdlib.compute`): images through the student's backward pass,
estimated FLOPs (student forward + backward, teacher forwards) and wall seconds. Two views:

- whole cost: every phase the method pays, the teacher's and the dense student's training
  included (both methods pay the same for those when they share the checkpoints);
- pruning only: the same without the shared ``teacher`` and ``dense`` pretraining phases
  (what remains: calibration, guiding, scoring, retraining — for IMP its 5 prune-retrain rounds).

Seconds are whatever the runs measured on their machine at the time (a loaded machine inflates
them). Prints both views and, on the last line, the pruning-only FLOP ratio one-shot/IMP
(goal ≤ 0.25).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tkdlib.config import Config
from tkdlib.experiment import RECORD_NAME, load_record
from tkdlib.profile import load_profile

GOAL = 0.25  # read by run_all.py: the figure on the last line should be at most this
ONE_SHOT, ITERATIVE = "teacher_guided", "imp"
SHARED_PHASES = ("teacher", "dense")  # pretraining both methods start from
MEASURES = {"student_backward": "images through backward", "flops": "FLOPs", "seconds": "wall seconds"}
REPO = Path(__file__).resolve().parents[1]


def main_records(profile_name: str) -> list[dict[str, Any]]:
    """Finished records of the profile's main comparison (configs that differ from its base only
    in method, sparsity and seed), from its out_dir (relative to the repository)."""
    profile = load_profile(profile_name)
    folder = REPO / profile.out_dir
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist: profile {profile_name!r} has no runs here yet")
    records = [load_record(path.parent) for path in sorted(folder.glob(f"*/{RECORD_NAME}"))]
    return [r for r in records if r is not None and not profile.changes(Config.from_dict(r["config"]))]


def pair_at_highest_sparsity(records: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(one-shot, IMP) records of the highest sparsity, then the lowest seed, at which both exist."""
    found = {(r["config"]["method"], r["config"]["sparsity"], r["config"]["seed"]): r for r in records}
    both = sorted(((s, -seed) for (m, s, seed) in found if m == ONE_SHOT and (ITERATIVE, s, seed) in found), reverse=True)
    if not both:
        raise ValueError(f"no sparsity with finished runs of both {ONE_SHOT} and {ITERATIVE} in the main comparison")
    sparsity, seed = both[0][0], -both[0][1]
    return found[(ONE_SHOT, sparsity, seed)], found[(ITERATIVE, sparsity, seed)]


def cost(record: dict[str, Any], shared: bool) -> dict[str, float]:
    """Sum of each measure over the phases the run paid, with or without the shared pretraining."""
    compute = record["compute"]
    phases = [name for name in compute["counted"] if shared or name not in SHARED_PHASES]
    return {key: sum(compute["phases"][name][key] for name in phases) for key in MEASURES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="sample", help="profile whose committed run records are read")
    args = parser.parse_args()

    one_shot, imp = pair_at_highest_sparsity(main_records(args.profile))
    config = one_shot["config"]
    rounds = Config.from_dict(imp["config"]).rounds
    print(
        f"profile {args.profile}: {config['dataset']}, {config['arch']} student, {config['teacher_arch']} teacher, "
        f"{config['sparsity']:.0%} sparse, seed {config['seed']}: runs {one_shot['config_hash']} ({ONE_SHOT}) "
        f"and {imp['config_hash']} ({ITERATIVE}, {rounds} rounds); accuracy after retraining "
        f"{one_shot['accuracy']['retrained']:.2%} vs {imp['accuracy']['retrained']:.2%}"
    )
    ratios = {}
    for view, shared in (("whole cost", True), ("pruning only", False)):
        mine, theirs = cost(one_shot, shared), cost(imp, shared)
        ratios[view] = {key: mine[key] / theirs[key] for key in MEASURES}
        parts = ", ".join(f"{MEASURES[key]} {mine[key]:.4g} vs {theirs[key]:.4g} ({ratios[view][key]:.3f})" for key in MEASURES)
        print(f"{view} ({ONE_SHOT} vs {ITERATIVE}, ratio): {parts}")
    print(f"one-shot/IMP pruning FLOPs: {ratios['pruning only']['flops']:.3f}")


if __name__ == "__main__":
    main()
