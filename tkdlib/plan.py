"""How long the cells a batch has left should take, from the cells of its profile that finished.

A cell's cost is the wall time of its own phases (scoring, pruning, retraining: the shared teacher
and dense student left out, `own_seconds`). Cells that differ only in their seed cost the same, and
so do one-shot cells that differ only in their sparsity; an iterative cell (several pruning rounds)
is only compared with cells of its own sparsity, whose rounds prune as much. A cell to run is
estimated by the median of the finished cells like it (`like_key`), at the speeds of the sittings
that ran them; where none is, by those of the same method under other settings (an ablation, a
layer rule), which most settings do not make slower; where the method never finished (IMP and
COLT, hours each), by its training epochs (`tkdlib.pipelines.training_epochs`) at the median pace
of the finished cells that train under the same objective (`pace_key`: an epoch under the
teacher costs its forward passes too). A cell stopped midway is estimated by what it has left. A
shared checkpoint still to train is estimated by the median time of the distinct checkpoints of
its phase that finished records used.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from tkdlib.config import Config
from tkdlib.pipelines import training_epochs
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


def pace_key(config: Config) -> str:
    """The objective most of a cell's epochs train under, which sets what an epoch costs:
    ``self-distillation`` (EPSD), ``distillation`` (retraining under the teacher) or ``cross-entropy``."""
    if config.method == "epsd":
        return "self-distillation"
    return "distillation" if config.retrain_with_kd else "cross-entropy"


@dataclass(frozen=True)
class Estimates:
    """What finished runs took: per like-key (strict and loose, `like_key`) the median of their
    `own_seconds` and how many runs that is; per `pace_key` the median seconds per training epoch
    (`own_seconds` over `tkdlib.pipelines.training_epochs`) and how many runs; per shared phase
    (``dense``, ``teacher``) the median seconds of the distinct checkpoints (by sha256) the
    records used."""

    cells: dict[LikeKey, tuple[float, int]]
    checkpoints: dict[str, float]
    epoch_seconds: dict[str, tuple[float, int]]

    @classmethod
    def from_records(cls, finished: Iterable[tuple[Config, dict[str, Any], dict[str, Any]]]) -> Estimates:
        """From (config, changes, record) of each finished cell."""
        seconds: dict[LikeKey, list[float]] = defaultdict(list)
        paces: dict[str, list[float]] = defaultdict(list)
        shared: dict[str, dict[str, float]] = defaultdict(dict)  # phase → sha256 → seconds
        for config, changes, record in finished:
            own = own_seconds(record)
            for key in (like_key(config, changes), like_key(config)):
                seconds[key].append(own)
            if (epochs := training_epochs(config)) > 0:
                paces[pace_key(config)].append(own / epochs)
            phases = record["compute"]["phases"]
            for phase, sha256 in record.get("checkpoints", {}).get("sha256", {}).items():
                if sha256 and phase in phases:
                    shared[phase][sha256] = phases[phase]["seconds"]
        return cls(
            {key: (statistics.median(values), len(values)) for key, values in seconds.items()},
            {phase: statistics.median(by_file.values()) for phase, by_file in shared.items()},
            {key: (statistics.median(values), len(values)) for key, values in paces.items()},
        )

    def cell(self, config: Config, changes: dict[str, Any], done: float = 0.0) -> Estimate | None:
        """What a cell to run should take, `done` (a fraction) of its training epochs behind it:
        from the finished cells like it, else from those of its method under other settings, else
        from its epochs at the pace of the finished cells that train under its objective; None
        where nothing finished to estimate from."""
        if (found := self.cells.get(like_key(config, changes))) is not None:
            return Estimate(*found, basis="like", done=done)
        if (found := self.cells.get(like_key(config))) is not None:
            return Estimate(*found, basis="method", done=done)
        if (pace := self.epoch_seconds.get(pace_key(config))) is not None and (epochs := training_epochs(config)) > 0:
            return Estimate(pace[0] * epochs, pace[1], basis="epochs", done=done, epochs=epochs)
        return None

    def checkpoint_seconds(self, missing: Iterable[str]) -> float | None:
        """Seconds to train the shared checkpoints of the `missing` phases; None where any of them
        has nothing to estimate from."""
        parts = [self.checkpoints.get(phase) for phase in missing]
        return None if None in parts else sum(parts)

    def total(self, config: Config, changes: dict[str, Any], missing: Iterable[str], done: float = 0.0) -> float | None:
        """Seconds left for a cell to run (`done` of it behind it) and the shared checkpoints of
        the `missing` phases it trains first; None where any of them has nothing to estimate from."""
        found, checkpoints = self.cell(config, changes, done), self.checkpoint_seconds(missing)
        return None if found is None or checkpoints is None else found.left + checkpoints


class Estimate(NamedTuple):
    """A cell's estimated wall seconds, whole (`seconds`) and still to go (`left`, with a fraction
    `done` of its training behind it), from `runs` finished cells: the median of those of the same
    settings (`basis` ``"like"``) or of the same method under other settings (``"method"``), or
    its `epochs` at their median pace (``"epochs"``)."""

    seconds: float
    runs: int
    basis: str
    done: float = 0.0
    epochs: int | None = None

    @property
    def left(self) -> float:
        return self.seconds * (1 - self.done)

    def source(self) -> str:
        """What the estimate comes from: ``"2 finished runs like it"``, ``"3 finished runs of the
        method, other settings"`` or ``"50 epochs at the pace of 3 finished runs"``."""
        runs = f"{self.runs} finished run{'s' if self.runs != 1 else ''}"
        if self.basis == "epochs":
            return f"{self.epochs} epoch{'s' if self.epochs != 1 else ''} at the pace of {runs}"
        return f"{runs} like it" if self.basis == "like" else f"{runs} of the method, other settings"

    def note(self) -> str:
        """``"≈ 36 min: 2 finished runs like it"``; for a cell stopped midway ``"≈ 1.5 h left of ≈ 2.6 h: …"``."""
        whole = f"≈ {duration(self.seconds)}"
        return f"{whole}: {self.source()}" if not self.done else f"≈ {duration(self.left)} left of {whole}: {self.source()}"


def duration(seconds: float) -> str:
    """`seconds` as seconds below a minute, minutes below 90 minutes, else hours to one decimal:
    ``"45 s"``, ``"36 min"``, ``"2.4 h"``."""
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 90 * 60 else f"{seconds / 3600:.1f} h"


def summary(cells: Sequence[float | None], checkpoints: Sequence[float | None] = ()) -> str:
    """One line on what is left to run, given each cell's estimated seconds and each shared
    checkpoint's still to train (None: nothing finished like it)."""
    known = [seconds for seconds in cells if seconds is not None]
    unknown = len(cells) - len(known)
    left = f"{len(cells)} run{'s' if len(cells) != 1 else ''} left"
    if not known:
        line = f"{left}, nothing finished to estimate them from"
    else:
        share = f" for {len(known)} of them" if unknown else ""
        line = f"{left}: ≈ {duration(sum(known))}{share}, from the finished runs"
        line += f"; {unknown} with nothing to estimate from" if unknown else ""
    if checkpoints:
        trained = [seconds for seconds in checkpoints if seconds is not None]
        line += f"; and {len(checkpoints)} shared checkpoint{'s' if len(checkpoints) > 1 else ''} to train first"
        line += f" (≈ {duration(sum(trained))})" if len(trained) == len(checkpoints) else " (not estimated)"
    return line
