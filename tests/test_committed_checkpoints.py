"""The checkpoints committed under runs/: within the repository's size limits, each with a sidecar
whose sha256 matches its bytes (a mismatch would stop every run that uses it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tkdlib.checkpoints import digest_path
from tkdlib.io import sha256_of

REPO = Path(__file__).resolve().parents[1]
FILE_LIMIT = 12 * 10**6  # bytes a committed checkpoint may have
TOTAL_LIMIT = 60 * 10**6  # bytes all committed checkpoints together may have
CHECKPOINT_SUFFIXES = (".pt", ".pt.gz")  # weights and training states (parked runs, `tkdlib.parking`)


def committed_checkpoints() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z", "runs"], cwd=REPO, capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: which checkpoints are committed is unknown")
    return [REPO / name for name in listed.stdout.decode().split("\0") if name.endswith(CHECKPOINT_SUFFIXES)]


def test_committed_checkpoints_fit_the_size_limits():
    sizes = {path.relative_to(REPO).as_posix(): path.stat().st_size for path in committed_checkpoints()}
    too_large = {name: size for name, size in sizes.items() if size > FILE_LIMIT}
    assert not too_large, f"over {FILE_LIMIT:,} bytes: {too_large}; store weights in bf16 or keep them out of git"
    assert sum(sizes.values()) <= TOTAL_LIMIT, f"committed checkpoints total {sum(sizes.values()):,} bytes, over {TOTAL_LIMIT:,}"


def test_every_committed_checkpoint_matches_its_sha256_sidecar():
    for path in committed_checkpoints():
        sidecar = digest_path(path)
        assert sidecar.is_file(), f"{path.relative_to(REPO)} has no sha256 sidecar: commit {sidecar.name} with it"
        assert sidecar.read_text().strip() == sha256_of(path), f"{path.relative_to(REPO)} does not match {sidecar.name}"
