"""Parking an unfinished run between sittings: its training states, packed into one committed file.

A run keeps each training phase's state after every epoch under ``<run>/partial/<phase>.pt``
(`tkdlib.train.EpochState`), so a killed run resumes where it stopped, on the same machine. Those
files are not committed: a fresh checkout would start the run again from its beginning. A cell
longer than a sitting (IMP and COLT prune in five rounds of retraining) would then never finish.

`park` packs a run's states into ``<run>/parked.pt.gz`` with its sha256 sidecar, a file made to
be committed: the state of a phase still training whole (model, optimizer, schedule, its history
and counted cost), that of a finished phase reduced to what resuming reads from it (the model,
its history and cost; its optimizer is never used again), gzip-compressed (a pruned network's
weights and momenta are mostly zeros). `unpark` writes them back under ``partial/`` before the
run resumes (`tkdlib.experiment.run` calls it), after checking the file against its sidecar;
states already under ``partial/`` are newer and win. A run that finishes removes its parked file
with its partial states. Resuming from a parked state gives the same weights, bit for bit, as
the uninterrupted run on the same kind of machine.

`stop_at` stops a running cell when a sitting's hours are over (`DeadlineReached`), so that a
batch can park it (``batch --hours H --park``).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from tkdlib.checkpoints import digest_path, record_sha256, verified_sha256
from tkdlib.io import load_checkpoint, load_torch, save_torch
from tkdlib.train import FINISHED_STEPS

__all__ = [
    "DeadlineReached", "FINISHED_STEPS", "PARKED_NAME", "PARTIAL_DIR", "Parked", "park", "parked_files", "read_parked", "stop_at", "unpark",
]

PARTIAL_DIR = "partial"  # a run's per-epoch training states (removed once it finishes)
PARKED_NAME = "parked.pt.gz"  # those states packed for committing


class Parked(dict[str, dict[str, Any]]):
    """Phase name → its training state (as `tkdlib.train.EpochState` saves it, or reduced when finished)."""

    def describe(self) -> str:
        """``"retrain1 done (20 epochs), retrain2 at epoch 7"``."""
        return ", ".join(_progress(name, state) for name, state in self.items())


def _progress(name: str, state: dict[str, Any]) -> str:
    epochs = len(state["history"])
    return f"{name} done ({epochs} epoch{'s' if epochs != 1 else ''})" if _finished(state) else f"{name} at epoch {epochs}"


def _finished(state: dict[str, Any]) -> bool:
    """Whether a phase's one-cycle schedule has taken all its steps (reduced states always have)."""
    return FINISHED_STEPS in state or state["scheduler"]["last_epoch"] >= state["scheduler"]["total_steps"]


def _reduced(state: dict[str, Any]) -> dict[str, Any]:
    """A finished phase's state without what resuming it never reads (optimizer, schedule,
    gradient scaler); any other state whole."""
    if FINISHED_STEPS in state or not _finished(state):
        return state
    return {"model": state["model"], "history": state["history"], "extra": state["extra"], FINISHED_STEPS: state["scheduler"]["total_steps"]}


def park(run_directory: Path) -> Parked:
    """Pack the states under ``<run_directory>/partial/`` into ``parked.pt.gz`` (atomically, with its
    sha256 sidecar); returns what it packed (empty, writing nothing, where there is no state)."""
    parked = Parked({name: _reduced(state) for name, state in _partial_states(run_directory).items()})
    if parked:
        target = run_directory / PARKED_NAME
        save_torch(target, dict(parked))
        record_sha256(target)
    return parked


def _read(source: Path) -> Parked:
    """The states of a parked file (empty where there is none)."""
    if not source.is_file():
        return Parked()
    return Parked(load_torch(source))


def unpark(run_directory: Path) -> Parked:
    """Write the states of ``<run_directory>/parked.pt.gz`` back under ``partial/``, unless states are
    there already (this checkout's own, newer); returns what it wrote. Raises
    `tkdlib.checkpoints.CheckpointHashError` when the file does not match its sidecar."""
    source = run_directory / PARKED_NAME
    partial = run_directory / PARTIAL_DIR
    if not source.is_file() or any(partial.glob("*.pt")):
        return Parked()
    verified_sha256(source)
    parked = _read(source)
    for name, state in parked.items():
        save_torch(partial / f"{name}.pt", state)
    return parked


def _partial_states(run_directory: Path) -> Parked:
    """The readable states under ``<run_directory>/partial/``, by phase name."""
    paths = sorted((run_directory / PARTIAL_DIR).glob("*.pt"))
    return Parked({path.stem: state for path in paths if (state := load_checkpoint(path)) is not None})


def read_parked(run_directory: Path) -> Parked:
    """What a run has kept to resume from: its states under ``partial/`` if any, else its parked
    file's (empty where it has neither)."""
    return _partial_states(run_directory) or _read(run_directory / PARKED_NAME)


def parked_files(run_directory: Path) -> list[Path]:
    """The parked file of a run and its sidecar, those that exist (what a finished run removes)."""
    source = run_directory / PARKED_NAME
    return [path for path in (source, digest_path(source)) if path.is_file()]


class DeadlineReached(BaseException):
    """A sitting's hours are over (`stop_at`). Like `KeyboardInterrupt` it is no `Exception`, so
    no run records it as its failure: the run is stopped, to be parked, not failed."""


@contextlib.contextmanager
def stop_at(seconds: float) -> Iterator[None]:
    """Raise `DeadlineReached` in the block after `seconds` (wall time) unless it ended before.

    Uses the process's real-time timer (``SIGALRM``): POSIX only, main thread only. The exception
    comes between two Python steps, never inside a torch operation; a file being written is left
    as it was (every write is atomic), so the states saved after the last finished epoch stand."""
    if seconds <= 0:
        raise DeadlineReached

    def raise_deadline(signum: int, frame: FrameType | None) -> None:
        raise DeadlineReached

    previous = signal.signal(signal.SIGALRM, raise_deadline)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
