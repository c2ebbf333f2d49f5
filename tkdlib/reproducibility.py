"""Whether a shared checkpoint trained again reproduces the one that finished run records used.

The teacher and the dense student are trained once per out_dir and shared by every run that
needs them; each finished record keeps their per-epoch training history. A lost checkpoint is
trained again by the next run that needs it. On the CPU that training is bit for bit the same
*on the same kind of processor*; on another one (a different CPU model picks other SIMD kernels
and summation orders), or on a GPU, the weights come out different, and so would every run made
from them: those runs would not be one comparison with the records already there
(`tkdlib.report.per_seed` refuses to mix them, hours later). `RecordedTraining.check_machine`
refuses, before any epoch, a machine of another kind than every record names (`tkdlib.machine`);
where a record names none, `RecordedTraining.check` compares each epoch's training loss, as it
finishes, with the recorded one and stops at the first epoch that differs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tkdlib.config import SELF_TEACHER, STUDENT_FIELDS, TEACHER_FIELDS, Config
from tkdlib.machine import describe, machine_kind, same_kind

__all__ = ["CHECKPOINTS", "CheckpointNotReproducedError", "RecordedTraining", "checkpoint_path", "missing_checkpoints", "needs_another_machine"]

WAY_ON = (
    "Training repeats bit for bit only on the same kind of processor, so runs made from this checkpoint would not "
    "be one comparison with those records. Run on the kind of machine that made them (or restore their checkpoints "
    "folder), give the new runs another seed, or move those records out of the out_dir to start over."
)
PHASES = {"teacher": TEACHER_FIELDS, "dense": STUDENT_FIELDS}  # shared-checkpoint phase → config fields that key it
FILE_PREFIX = {"teacher": "teacher", "dense": "student"}
CHECKPOINTS = "checkpoints"  # the folder of an out_dir that holds its shared checkpoints


class CheckpointNotReproducedError(RuntimeError):
    """A shared checkpoint trained here differs from the one the finished records were made with."""


@dataclass(frozen=True)
class RecordedTraining:
    """How finished records saw the training of one shared checkpoint, and the machine that would
    train it again.

    phase: ``teacher`` or ``dense``; history: its per-epoch entries (``epoch``, ``loss``, ...)
    as the first such record kept them; machines: the distinct kinds of machine those records
    ran on (`tkdlib.machine.machine_kind`); runs: how many records used it; out_dir: where they
    are; here: the kind of machine training now.
    """

    phase: str
    history: list[dict[str, Any]]
    machines: tuple[dict[str, str], ...]
    runs: int
    out_dir: Path
    here: dict[str, str]

    @classmethod
    def find(
        cls, records: Iterable[dict[str, Any]], config: Config, phase: str, out_dir: Path, here: dict[str, str]
    ) -> RecordedTraining | None:
        """The recorded training of the `phase` checkpoint that `config` uses, from finished
        `records` (whole record dicts), to be trained again on `here`; None when no record used it."""
        fields = PHASES[phase]
        matching = [  # a run whose teacher is the dense student itself (SELF_TEACHER) records no teacher history
            record for record in records
            if record.get("history", {}).get(phase) and Config.from_dict(record["config"]).key(fields) == config.key(fields)
        ]
        if not matching:
            return None
        kinds = {tuple(sorted(machine_kind(record.get("environment", {})).items())) for record in matching}
        machines = tuple(sorted((dict(kind) for kind in kinds), key=describe))
        return cls(phase, matching[0]["history"][phase], machines, len(matching), out_dir, here)

    @property
    def what(self) -> str:
        return "teacher" if self.phase == "teacher" else "dense student"

    def _ran_on(self) -> str:
        return f"they ran on {', '.join(describe(kind) for kind in self.machines)}; this machine: {describe(self.here)}"

    def machine_mismatch(self) -> str | None:
        """Why training here would not repeat the records' training, when every record names its
        machine and none is of the kind training now (`tkdlib.machine.same_kind`); else None."""
        if any(same_kind(kind, self.here) is not False for kind in self.machines):
            return None
        return (
            f"The {self.what} that {self.runs} finished run record(s) in {self.out_dir} were made with is not on disk, "
            f"and this machine would not train it again bit for bit ({self._ran_on()}). {WAY_ON}"
        )

    def check_machine(self) -> None:
        """Raise `CheckpointNotReproducedError` before training where `machine_mismatch` says
        why: the training would not repeat theirs, and the first epoch would be spent to find out."""
        mismatch = self.machine_mismatch()
        if mismatch is not None:
            raise CheckpointNotReproducedError(mismatch)

    def check(self, entry: dict[str, Any]) -> None:
        """Raise `CheckpointNotReproducedError` when `entry` (one epoch of the training running
        now: ``epoch`` from 1, ``loss``) differs from the recorded epoch; the message names both
        kinds of machine. Losses must be equal exactly: a reproduced training is bit for bit."""
        epoch = entry["epoch"]
        if epoch > len(self.history) or entry["loss"] == self.history[epoch - 1]["loss"]:
            return
        raise CheckpointNotReproducedError(
            f"The {self.what} trained here does not reproduce the one that {self.runs} finished run record(s) in "
            f"{self.out_dir} were made with: its epoch {epoch} ends at training loss {entry['loss']:.6f} here, "
            f"{self.history[epoch - 1]['loss']:.6f} in those records ({self._ran_on()}). {WAY_ON}"
        )


def checkpoint_path(folder: Path, config: Config, phase: str) -> Path:
    """Where the shared `phase` (``teacher`` or ``dense``) checkpoint that `config` uses is kept
    in `folder` (an out_dir's `CHECKPOINTS` folder)."""
    return folder / f"{FILE_PREFIX[phase]}-{config.key(PHASES[phase])}.pt"


def missing_checkpoints(config: Config, out_dir: Path) -> dict[str, Path]:
    """The shared checkpoints that `config` needs and that are not on disk in `out_dir`: phase
    (``dense``, then ``teacher`` unless the teacher is the dense student itself) → its path."""
    phases = ("dense",) if config.teacher_arch == SELF_TEACHER else ("dense", "teacher")
    paths = {phase: checkpoint_path(out_dir / CHECKPOINTS, config, phase) for phase in phases}
    return {phase: path for phase, path in paths.items() if not path.is_file()}


def needs_another_machine(config: Config, out_dir: Path, records: list[dict[str, Any]], here: dict[str, str]) -> str | None:
    """Why `config` cannot run in `out_dir` on a machine of kind `here` (the message of the
    `CheckpointNotReproducedError` that would stop it before training), or None when it can or
    only training can tell. `records`: the out_dir's finished records."""
    for phase in missing_checkpoints(config, out_dir):
        recorded = RecordedTraining.find(records, config, phase, out_dir, here)
        mismatch = None if recorded is None else recorded.machine_mismatch()
        if mismatch is not None:
            return mismatch
    return None
