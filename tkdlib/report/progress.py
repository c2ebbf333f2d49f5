"""What a profile's grid has left to run, and how long that should take (`tkdlib.batch.to_run`)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from tkdlib.batch import ToRun, cells, to_run
from tkdlib.plan import Estimate
from tkdlib.profile import Profile
from tkdlib.report.records import variant_name
from tkdlib.report.style import label


def runs_left(out_dir: str | Path, profile: Profile) -> ToRun:
    """The cells of the profile's grid that have neither finished nor failed, in the grid's order,
    each with its estimate (`tkdlib.batch.to_run`)."""
    every = cells(profile, out_dir)
    return to_run(every, every)


def remaining_runs(left: ToRun) -> pd.DataFrame:
    """One row per cell of `left` (`runs_left`): ``run`` (its folder), method, sparsity (fraction
    of prunable weights removed), seed, variant, ``estimated minutes`` (what it has left to run,
    from the finished runs, `tkdlib.plan`; NaN where nothing is) and ``estimated from`` (which
    runs, and how)."""
    rows = [
        {
            "run": item.cell.directory.name, "method": label(item.cell.config.method), "sparsity": item.cell.config.sparsity,
            "seed": item.cell.config.seed, "variant": variant_name(item.cell.changes),
            "estimated minutes": math.nan if item.estimate is None else round(item.estimate.left / 60),
            "estimated from": _basis(item.estimate),
        }
        for item in left.cells
    ]
    return pd.DataFrame(rows, columns=["run", "method", "sparsity", "seed", "variant", "estimated minutes", "estimated from"])


def _basis(found: Estimate | None) -> str:
    if found is None:
        return "nothing finished to estimate from"
    return found.source() + ("" if not found.done else f"; {found.done:.0%} of it done")


def remaining_text(left: ToRun) -> str:
    """A sentence on what the grid has left (`runs_left`): how many runs, their estimated wall time
    and that of the shared checkpoints they train first (`tkdlib.batch.ToRun.summary`), or that
    none is left."""
    if not left.cells:
        return "Every run the grid plans has finished or failed."
    return (
        f"{left.summary()}. The estimates are median wall times of the finished runs like them (or, for a method none "
        "of whose runs finished, of their training epochs), on the machines that ran those; machines of one name differ by up to 2×."
    )
