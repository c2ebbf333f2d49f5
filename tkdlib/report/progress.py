"""What a profile's grid has left to run, and how long that should take (`tkdlib.batch.to_run`)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from tkdlib.batch import cells, to_run
from tkdlib.plan import Estimate
from tkdlib.profile import Profile
from tkdlib.report.records import variant_name
from tkdlib.report.style import label


def remaining_runs(out_dir: str | Path, profile: Profile) -> pd.DataFrame:
    """One row per cell the profile's grid plans that has neither finished nor failed, in the
    grid's order: ``run`` (its folder under `out_dir`), method, sparsity (fraction of prunable
    weights removed), seed, variant, ``estimated minutes`` (what it has left to run, from the
    finished runs, `tkdlib.plan`; NaN where none is) and ``estimated from`` (which runs, and how)."""
    every = cells(profile, out_dir)
    rows = [
        {
            "run": cell.directory.name, "method": label(cell.config.method), "sparsity": cell.config.sparsity, "seed": cell.config.seed,
            "variant": variant_name(cell.changes), "estimated minutes": math.nan if found is None else round(found.left / 60),
            "estimated from": _basis(found),
        }
        for cell, found in to_run(every, every).cells
    ]
    return pd.DataFrame(rows, columns=["run", "method", "sparsity", "seed", "variant", "estimated minutes", "estimated from"])


def _basis(found: Estimate | None) -> str:
    if found is None:
        return "nothing finished to estimate from"
    return found.source() + ("" if not found.done else f"; {found.done:.0%} of it done")


def remaining_text(out_dir: str | Path, profile: Profile) -> str:
    """A sentence on what the grid has left: how many runs, their estimated wall time and that of
    the shared checkpoints they train first (`tkdlib.batch.ToRun.summary`), or that none is left."""
    every = cells(profile, out_dir)
    left = to_run(every, every)
    if not left.cells:
        return "Every run the grid plans has finished or failed."
    return (
        f"{left.summary()}. The estimates are median wall times of the finished runs like them (or, for a method none "
        "of whose runs finished, of their training epochs), on the machines that ran those; machines of one name differ by up to 2×."
    )
