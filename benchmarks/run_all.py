"""Run every benchmark, one after another, and write their figures to ``benchmarks/results.json``.

    python benchmarks/run_all.py [--only NAME ...] [--note TEXT] [--out benchmarks/results.json]

Each benchmark is a script in this folder that prints its figure on its last line (``label:
number``) and defines ``GOAL`` (and ``HIGHER_IS_BETTER = True`` when the figure should be at
least the goal; otherwise at most). Each runs in its own process, in a quick mode where it has
one, so the whole set takes a few minutes on 2 cores. The results file is written atomically:
per benchmark its figure, goal, whether the goal is met, every printed line, its command and
wall seconds; and the machine (CPU model, cores, torch version, device, date, load average
before and after, and `--note`, e.g. that other processes were running). Exits non-zero when
a benchmark fails (its error is recorded too); a missed goal is recorded, not an error. With
`--only`, the file holds only those benchmarks.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from tkdlib.io import write_json
from tkdlib.machine import describe, this_machine

HERE = Path(__file__).resolve().parent
# Each benchmark with the arguments of its quick mode, in the order they run.
BENCHMARKS: dict[str, list[str]] = {
    "loader": ["--batches", "20", "--repeats", "2", "--steps", "3"],
    "masked_step": ["--threads", "1", "--repeats", "40"],
    "scoring_pass": ["--threads", "1"],
    "oneshot_vs_imp": [],
    "sparse_checkpoint": [],
    "bf16_step": [],
    "compile_step": ["--repeats", "4"],
    "teacher_forward": ["--repeats", "4"],
}


def machine(note: str | None) -> dict[str, Any]:
    return {
        "cpu": describe(this_machine("cpu")),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": f"cuda ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else "cpu",
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_average_before": [round(load, 2) for load in os.getloadavg()],
        "note": note,
    }


def figure_of(last_line: str) -> float:
    """The number after the last colon of a benchmark's last line, e.g. ``ratio: 1.03`` → 1.03."""
    return float(last_line.rsplit(":", 1)[1].split()[0])


def run_one(name: str, arguments: list[str]) -> dict[str, Any]:
    """Run benchmark `name` in a subprocess; its figure, goal and printed lines."""
    module = importlib.import_module(name)
    goal, higher = float(module.GOAL), bool(getattr(module, "HIGHER_IS_BETTER", False))
    command = [sys.executable, str(HERE / f"{name}.py"), *arguments]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=HERE.parent)
    lines = done.stdout.strip().splitlines()
    result: dict[str, Any] = {
        "command": " ".join(["python", f"benchmarks/{name}.py", *arguments]),
        "seconds": round(time.perf_counter() - start, 1),
        "goal": goal,
        "goal_is": "at least" if higher else "at most",
        "lines": lines,
        "figure": None,
        "met": False,
    }
    if done.returncode != 0 or not lines:
        result["error"] = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit status {done.returncode}, no output"
        return result
    figure = figure_of(lines[-1])
    return {**result, "figure": figure, "met": figure >= goal if higher else figure <= goal}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--note", default=None, help="recorded with the machine, e.g. what else was running")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()

    sys.path.insert(0, str(HERE))
    about = machine(args.note)
    results = {}
    for name in args.only or BENCHMARKS:
        result = results[name] = run_one(name, BENCHMARKS[name])
        verdict = f"goal {result['goal_is']} {result['goal']:g}: {'met' if result['met'] else 'NOT met'}"
        outcome = result.get("error") or f"{result['lines'][-1]} ({verdict})"
        print(f"{name} ({result['seconds']:.0f} s): {outcome}", flush=True)
    about["load_average_after"] = [round(load, 2) for load in os.getloadavg()]
    write_json(args.out, {"machine": about, "benchmarks": results})
    print(f"wrote {args.out}")
    if any("error" in result for result in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
