"""How long the cells a batch has left should take, from the cells of its profile that finished.

A cell's cost is the wall time of its own phases (scoring, pruning, retraining: the shared teacher
and dense student left out, `own_seconds`). Cells that differ only in their seed cost the same, and
so do one-shot cells that differ only in their sparsity; an iterative cell (several pruning rounds)
is only compared with cells of its own sparsity, whose rounds prune as much. A cell to run is
estimated by the median of the finished cells like it (`like_key`), at the speeds of the sittings
that ran them; where none is, by those of the same method under other settings (an ablation, a
layer rule), which most settings do not make slower. Shared checkpoints still to train are not
counted.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from tkdlib.config import Config
from tkdlib.shared_networks import SHARED_PHASES

LikeKey = tuple[str, float | None, str | None]  #: method, sparsity (iterative cells only), the changes as text (None: any)


def own_seconds(record: dict[str, Any]) -> float:
    """Wall seconds a finished run spent on the phases it trained or scored itself, the shared
    teacher and dense student left out (their seconds are copied into every record that uses them)."""
    compute = record["compute"]
    return sum(compute["phases"][phase]["seconds"] for phase in compute["counted"] if phase not in SHARED_PHASES)


def like_key(config: Config, changes: dict[str, Any] | None = None) -> LikeKey:
    """What a cell shares with the cells that should cost as much: the method, the sparsity where
    the cell prunes in several rounds, and the profile's `changes` (its ablation switches or layer
    rule); without `changes`, the looser key of the method under any settings."""
    return config.method, config.sparsity if config.rounds > 1 else None, None if changes is None else repr(sorted(changes.items()))


def estimates(finished: Iterable[tuple[Config, dict[str, Any], float]]) -> dict[LikeKey, tuple[float, int]]:
    """Per like-key, strict and loose (`like_key`), the median `own_seconds` of the finished cells
    (config, changes, seconds) that have it and how many cells that is."""
    seconds: dict[LikeKey, list[float]] = defaultdict(list)
    for config, changes, value in finished:
        seconds[like_key(config, changes)].append(value)
        seconds[like_key(config)].append(value)
    return {key: (statistics.median(values), len(values)) for key, values in seconds.items()}


def estimate(costs: dict[LikeKey, tuple[float, int]], config: Config, changes: dict[str, Any]) -> tuple[float | None, str]:
    """The seconds a cell to run should take, from `costs` (`estimates`), and a note saying so
    (``"≈ 36 min, like 2 finished"``); ``(None, "")`` where no finished cell is like it."""
    if (found := costs.get(like_key(config, changes))) is not None:
        return found[0], f"≈ {duration(found[0])}, like {found[1]} finished"
    if (found := costs.get(like_key(config))) is not None:
        return found[0], f"≈ {duration(found[0])}, like {found[1]} finished with other settings"
    return None, ""


def duration(seconds: float) -> str:
    """`seconds` as minutes below 90 minutes, else as hours to one decimal: ``"36 min"``, ``"2.4 h"``."""
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def summary(to_run: list[float | None]) -> str:
    """One line on the cells left to run, given each one's estimated seconds (None: no finished cell like it)."""
    known = [seconds for seconds in to_run if seconds is not None]
    if not known:
        return f"{len(to_run)} to run, none like a finished cell to estimate from"
    unknown = len(to_run) - len(known)
    share = f" for {len(known)} of them" if unknown else ""
    return (
        f"{len(to_run)} to run: ≈ {duration(sum(known))}{share}, from finished cells like them"
        + (f"; {unknown} with none like them" if unknown else "")
        + " (own phases only: shared checkpoints still to train are not counted)"
    )
