"""Convert the uncompressed sparse students of earlier versions to gzip-compressed files.

Runs of earlier versions wrote their retrained pruned student to
``checkpoints/sparse/<config hash>.pt``; runs now write ``<config hash>.pt.gz``
(`tkdlib.checkpoints.sparse_model_path`). `compress_sparse_models` converts an out_dir's old
files, so that its committed checkpoints take a third to a half less of the repository's budget.

The compressed file is the old file's very bytes, gzip-compressed: it loads to the same tensors,
and gunzip gives back the file whose sha256 the record holds. For each finished record that
names an uncompressed student, in an order that a killed conversion resumes: the file is checked
against the record's sha256 (a mismatch stops the conversion before anything is written), the
compressed file and its sidecar are written, the record's ``checkpoints`` entry is updated to
name it and its sha256 (nothing else of the record changes), then the old file and its sidecar
are removed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tkdlib.checkpoints import digest_path, record_sha256
from tkdlib.experiment import RECORD_NAME
from tkdlib.io import GZIP_SUFFIX, atomic_gzip_write, sha256_of, write_json


@dataclass(frozen=True)
class Compressed:
    """One sparse student converted: its new file and both sizes in bytes."""

    path: Path
    bytes_before: int
    bytes_after: int


def compress_sparse_models(out_dir: str | Path) -> list[Compressed]:
    """Gzip every uncompressed sparse student that a finished record under `out_dir` names, and
    point the record at the new file (see the module's docstring); returns what it converted.

    Raises `ValueError`, before touching that run's files, when a record's student is missing or
    does not match the sha256 the record holds (restore it with git first)."""
    out_dir = Path(out_dir)
    converted = []
    for record_path in sorted(out_dir.glob(f"*/{RECORD_NAME}")):
        record = json.loads(record_path.read_text())
        name = record.get("checkpoints", {}).get("retrained")
        if record.get("status") != "finished" or name is None:
            continue
        old = out_dir / name
        if name.endswith(GZIP_SUFFIX):
            _remove_leftover(old.with_name(old.name.removesuffix(GZIP_SUFFIX)))
            continue
        expected = record["checkpoints"]["sha256"]["retrained"]
        if not old.is_file() or sha256_of(old) != expected:
            raise ValueError(
                f"{old} is missing or does not match the sha256 {expected[:12]}… that {record_path} holds: "
                f"restore it (git checkout -- {old}) and convert again"
            )
        new = old.with_name(old.name + GZIP_SUFFIX)
        with atomic_gzip_write(new) as packed:
            packed.write(old.read_bytes())
        record["checkpoints"]["retrained"] = new.relative_to(out_dir).as_posix()
        record["checkpoints"]["sha256"]["retrained"] = record_sha256(new)
        write_json(record_path, record)
        converted.append(Compressed(new, old.stat().st_size, new.stat().st_size))
        _remove_leftover(old)
    return converted


def _remove_leftover(old: Path) -> None:
    """Remove an uncompressed student and its sidecar once its record names the compressed one."""
    old.unlink(missing_ok=True)
    digest_path(old).unlink(missing_ok=True)
