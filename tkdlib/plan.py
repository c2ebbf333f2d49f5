"""How long the cells a batch has left should take, from the cells of its profile that finished.

A cell's cost is the wall time of its own phases (scoring, pruning, retraining: the shared teacher
and dense student left out, `own_seconds`). Cells that differ only in their seed cost the same, and
so do one-shot cells that differ only in their sparsity; an iterative cell (several pruning rounds)
is only compared with cells of its own sparsity, whose rounds prune as much. A cell to run is
estimated by the median of the finished cells like it (`like_key`), at the speeds of the sittings
that ran them; where none is, by those of the same method under other settings (an ablation, a
layer rule), which most settings do not make slower. A shared checkpoint still to train is
estimated by the median time of the distinct checkpoints of its phase that finished records used.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

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


@dataclass(frozen=True)
class Estimates:
    """What finished runs took: per like-key (strict and loose, `like_key`) the median of their
    `own_seconds` and how many runs that is; per shared phase (``dense``, ``teacher``) the median
    seconds of the distinct checkpoints (by sha256) the records used."""

    cells: dict[LikeKey, tuple[float, int]]
    checkpoints: dict[str, float]

    @classmethod
    def from_records(cls, finished: Iterable[tuple[Config, dict[str, Any], dict[str, Any]]]) -> Estimates:
        """From (config, changes, record) of each finished cell."""
        seconds: dict[LikeKey, list[float]] = defaultdict(list)
        shared: dict[str, dict[str, float]] = defaultdict(dict)  # phase → sha256 → seconds
        for config, changes, record in finished:
            own = own_seconds(record)
            for key in (like_key(config, changes), like_key(config)):
                seconds[key].append(own)
            phases = record["compute"]["phases"]
            for phase, sha256 in record.get("checkpoints", {}).get("sha256", {}).items():
                if sha256 and phase in phases:
                    shared[phase][sha256] = phases[phase]["seconds"]
        return cls(
            {key: (statistics.median(values), len(values)) for key, values in seconds.items()},
            {phase: statistics.median(by_file.values()) for phase, by_file in shared.items()},
        )

    def cell(self, config: Config, changes: dict[str, Any]) -> Estimate | None:
        """What a cell to run should take: from the finished cells like it, else from those of its
        method under other settings; None where neither finished."""
        if (found := self.cells.get(like_key(config, changes))) is not None:
            return Estimate(*found, same_settings=True)
        if (found := self.cells.get(like_key(config))) is not None:
            return Estimate(*found, same_settings=False)
        return None

    def total(self, config: Config, changes: dict[str, Any], missing: Iterable[str]) -> float | None:
        """Seconds for a cell to run and the shared checkpoints of the `missing` phases it trains
        first; None where any of them has nothing to estimate from."""
        found = self.cell(config, changes)
        parts = [None if found is None else found.seconds, *(self.checkpoints.get(phase) for phase in missing)]
        return None if None in parts else sum(parts)


class Estimate(NamedTuple):
    """A cell's estimated wall seconds: the median of `runs` finished cells, of the same settings
    or of the same method under other settings."""

    seconds: float
    runs: int
    same_settings: bool

    def note(self) -> str:
        """``"≈ 36 min, like 2 finished"``, or ``"… like 2 finished with other settings"``."""
        return f"≈ {duration(self.seconds)}, like {self.runs} finished" + ("" if self.same_settings else " with other settings")


def duration(seconds: float) -> str:
    """`seconds` as minutes below 90 minutes, else as hours to one decimal: ``"36 min"``, ``"2.4 h"``."""
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def summary(cells: Sequence[float | None], checkpoints: Sequence[float | None] = ()) -> str:
    """One line on what is left to run, given each cell's estimated seconds and each shared
    checkpoint's still to train (None: nothing finished like it)."""
    known = [seconds for seconds in cells if seconds is not None]
    unknown = len(cells) - len(known)
    left = f"{len(cells)} run{'s' if len(cells) != 1 else ''} left"
    if not known:
        line = f"{left}, none like a finished run to estimate from"
    else:
        share = f" for {len(known)} of them" if unknown else ""
        line = f"{left}: ≈ {duration(sum(known))}{share}, from the finished runs like them"
        line += f"; {unknown} with none like them" if unknown else ""
    if checkpoints:
        trained = [seconds for seconds in checkpoints if seconds is not None]
        line += f"; and {len(checkpoints)} shared checkpoint{'s' if len(checkpoints) > 1 else ''} to train first"
        line += f" (≈ {duration(sum(trained))})" if len(trained) == len(checkpoints) else " (not estimated)"
    return line
