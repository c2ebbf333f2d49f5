"""Checkpoints as committed files, each identified by its sha256.

A profile's out_dir keeps its shared checkpoints in ``<out_dir>/checkpoints/``: the teacher and
the dense student of each seed (``teacher-<key>.pt``, ``student-<key>.pt``, keyed by the config
fields they depend on) and the dense student's early-epoch snapshots that IMP and COLT rewind to;
and, in ``checkpoints/sparse/<config hash>.pt.gz``, every run's retrained pruned student saved
sparse and gzip-compressed (`tkdlib.sparse_checkpoint`; runs of earlier versions wrote
``<config hash>.pt``, uncompressed: `tkdlib.compress_sparse` converts those). Each file has a
sidecar ``<file>.sha256`` holding its hex digest.
They are committed with the records, so a fresh checkout uses the very weights the records were
made with instead of training them again, and every record names the digests it used.

Before a checkpoint is used its bytes are checked against its sidecar (`verified_sha256`): a
mismatch is an error, never a silent retraining. A checkpoint that is missing is trained again;
it gets a new digest, and the runs made from it form a new *lineage*, which the report keeps
apart from the old one (`tkdlib.report.per_seed`).

A config's ``storage_precision`` says how their floats are stored: ``fp32``, or ``bf16`` (half
the bytes, for networks whose checkpoints would not fit the repository's limits otherwise). A
model stored in bf16 is rounded to the stored values in memory as well (`round_to_storage`)
before it is used, so the run that trained it computes with the very weights every later run
loads.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from tkdlib.config import STUDENT_FIELDS, TEACHER_FIELDS, Config
from tkdlib.io import GZIP_SUFFIX, atomic_write, sha256_of

__all__ = [
    "CHECKPOINTS", "CheckpointHashError", "checkpoint_path", "digest_path", "record_sha256",
    "round_to_storage", "sparse_model_of", "sparse_model_path", "stored_state", "verified_sha256",
]

CHECKPOINTS = "checkpoints"  # the folder of an out_dir that holds its checkpoints
SPARSE = "sparse"  # its subfolder of retrained pruned students, one per run, saved sparse
PHASES = {"teacher": TEACHER_FIELDS, "dense": STUDENT_FIELDS}  # shared-checkpoint phase → config fields that key it
FILE_PREFIX = {"teacher": "teacher", "dense": "student"}
DIGEST_SUFFIX = ".sha256"
STORAGE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}  # storage_precision → dtype of stored floats


class CheckpointHashError(ValueError):
    """A checkpoint's bytes do not match the sha256 recorded beside it."""


def checkpoint_path(folder: Path, config: Config, phase: str) -> Path:
    """Where the shared `phase` (``teacher`` or ``dense``) checkpoint that `config` uses is kept
    in `folder` (an out_dir's `CHECKPOINTS` folder)."""
    keyed = config.teacher_config if phase == "teacher" else config
    return folder / f"{FILE_PREFIX[phase]}-{keyed.key(PHASES[phase])}.pt"


SPARSE_SUFFIXES = (".pt" + GZIP_SUFFIX, ".pt")  # a sparse student's file: as written now, as written before it was compressed


def sparse_model_path(out_dir: str | Path, config: Config) -> Path:
    """Where the retrained pruned student of `config`'s run under `out_dir` is written, sparse and
    gzip-compressed."""
    return Path(out_dir) / CHECKPOINTS / SPARSE / f"{config.key()}{SPARSE_SUFFIXES[0]}"


def sparse_model_of(out_dir: str | Path, run: str) -> Path | None:
    """The sparse student that the run of config hash `run` under `out_dir` left: its compressed
    file, else an uncompressed one of an earlier version; None when there is neither."""
    folder = Path(out_dir) / CHECKPOINTS / SPARSE
    return next((path for suffix in SPARSE_SUFFIXES if (path := folder / f"{run}{suffix}").is_file()), None)


def digest_path(path: Path) -> Path:
    """The sidecar file holding `path`'s sha256."""
    return path.with_name(path.name + DIGEST_SUFFIX)


def record_sha256(path: Path) -> str:
    """Compute the sha256 of the checkpoint just written at `path` and store it in its sidecar;
    returns it. A sidecar that held another digest (the checkpoint was lost and trained again)
    is replaced, with a warning: runs made from the new file are a new lineage."""
    digest = sha256_of(path)
    sidecar = digest_path(path)
    previous = sidecar.read_text().strip() if sidecar.is_file() else None
    if previous not in (None, digest):
        warnings.warn(
            f"{path} was trained again: its sha256 is now {digest[:12]}…, not {previous[:12]}…; "
            "runs made from it form a new lineage, which the report keeps apart from the old records", stacklevel=2,
        )
    with atomic_write(sidecar, "w") as handle:
        handle.write(digest + "\n")
    return digest


def verified_sha256(path: Path) -> str:
    """The sha256 of the checkpoint at `path`, checked against its sidecar before any use.

    Raises `CheckpointHashError` naming both digests when they differ. A file without a sidecar
    (written by an earlier version, or copied in by hand) gets one now."""
    sidecar = digest_path(path)
    if not sidecar.is_file():
        return record_sha256(path)
    expected = sidecar.read_text().strip()
    actual = sha256_of(path)
    if actual != expected:
        raise CheckpointHashError(
            f"{path} has sha256 {actual}, but {sidecar.name} records {expected}: the file was changed or damaged. "
            f"Restore it (git checkout -- {path}), or delete both files to train it again as a new lineage."
        )
    return actual


def stored_state(state: Mapping[str, torch.Tensor], precision: str) -> Mapping[str, torch.Tensor]:
    """`state` as it is stored at `precision` (a `Config.storage_precision`): at ``fp32``, `state`
    itself (a float32 model's state_dict; its file stays byte-identical to earlier versions');
    otherwise a dict with every floating-point tensor cast (detached) and every other tensor
    (BatchNorm's counters) as it is."""
    dtype = STORAGE_DTYPES[precision]
    if dtype == torch.float32:
        return state
    return {name: tensor.detach().to(dtype) if tensor.is_floating_point() else tensor for name, tensor in state.items()}


def round_to_storage(model: nn.Module, precision: str) -> Mapping[str, torch.Tensor]:
    """Round `model`'s floats to `precision` in place (its parameters keep their dtype) and return
    the state to store (`stored_state`): loading it gives back exactly this model."""
    state = stored_state(model.state_dict(), precision)
    if STORAGE_DTYPES[precision] != torch.float32:
        model.load_state_dict(state)
    return state
