"""Whether a shared checkpoint trained again reproduces the one that finished run records used.

The teacher and the dense student are trained once per out_dir and shared by every run that
needs them; each finished record keeps their per-epoch training history. A lost checkpoint is
trained again by the next run that needs it. On the CPU that training is bit for bit the same
*on the same kind of processor*; on another one (a different CPU model picks other SIMD kernels
and summation orders), or on a GPU, the weights come out different, and so would every run made
from them: those runs would not be one comparison with the records already there
(`tkdlib.report.per_seed` refuses to mix them, hours later). `RecordedTraining.check` compares
each epoch's training loss, as it finishes, with the recorded one and stops at the first epoch
that differs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tkdlib.config import STUDENT_FIELDS, TEACHER_FIELDS, Config
from tkdlib.runtime import cpu_model

__all__ = ["CheckpointNotReproducedError", "RecordedTraining"]

PHASES = {"teacher": TEACHER_FIELDS, "dense": STUDENT_FIELDS}  # shared-checkpoint phase → config fields that key it


class CheckpointNotReproducedError(RuntimeError):
    """A shared checkpoint trained here differs from the one the finished records were made with."""


@dataclass(frozen=True)
class RecordedTraining:
    """How finished records saw the training of one shared checkpoint.

    phase: ``teacher`` or ``dense``; history: its per-epoch entries (``epoch``, ``loss``, ...)
    as the first such record kept them; processors: the CPU models those records name; runs:
    how many records used it; out_dir: where they are.
    """

    phase: str
    history: list[dict[str, Any]]
    processors: tuple[str, ...]
    runs: int
    out_dir: Path

    @classmethod
    def find(cls, records: Iterable[dict[str, Any]], config: Config, phase: str, out_dir: Path) -> RecordedTraining | None:
        """The recorded training of the `phase` checkpoint that `config` uses, from finished
        `records` (whole record dicts); None when no record used it."""
        fields = PHASES[phase]
        matching = [  # a run whose teacher is the dense student itself (SELF_TEACHER) records no teacher history
            record for record in records
            if record.get("history", {}).get(phase) and Config.from_dict(record["config"]).key(fields) == config.key(fields)
        ]
        if not matching:
            return None
        processors = sorted({record["environment"].get("cpu_model") or "an unrecorded processor" for record in matching})
        return cls(phase, matching[0]["history"][phase], tuple(processors), len(matching), out_dir)

    def check(self, entry: dict[str, Any]) -> None:
        """Raise `CheckpointNotReproducedError` when `entry` (one epoch of the training running
        now: ``epoch`` from 1, ``loss``) differs from the recorded epoch; the message names this
        machine's processor (`cpu_model`). Losses must be equal exactly: a reproduced training is
        bit for bit."""
        epoch = entry["epoch"]
        if epoch > len(self.history) or entry["loss"] == self.history[epoch - 1]["loss"]:
            return
        what = "teacher" if self.phase == "teacher" else "dense student"
        raise CheckpointNotReproducedError(
            f"The {what} trained here does not reproduce the one that {self.runs} finished run record(s) in "
            f"{self.out_dir} were made with: its epoch {epoch} ends at training loss {entry['loss']:.6f} here, "
            f"{self.history[epoch - 1]['loss']:.6f} in those records (they ran on {', '.join(self.processors)}; this "
            f"machine: {cpu_model()}). Training repeats bit for bit only on the same kind of processor, so runs made from "
            "this checkpoint would not be one comparison with those records. Run on the kind of machine that made "
            "them (or restore their checkpoints folder), give the new runs another seed, or move those records out "
            "of the out_dir to start over."
        )
