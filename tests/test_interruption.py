"""A batch killed with SIGKILL at random points resumes to the same records as an uninterrupted one."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from tkdlib.experiment import load_record

from conftest import TINY_PROFILE

TRIALS = 3
# What must not depend on interruptions: everything but wall times, timestamps and the code commit.
VOLATILE = {"seconds", "finished_at", "environment", "compute", "history"}


def batch(profile: Path, out_dir: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "tkdlib", "batch", "--profile", str(profile), "--out-dir", str(out_dir), "--no-notebooks"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in VOLATILE}


def test_killed_batches_resume_to_the_uninterrupted_records(tmp_path):
    profile = tmp_path / "kill.toml"
    profile.write_text(TINY_PROFILE)  # teacher-guided, magnitude and IMP cells
    reference_dir = tmp_path / "reference"
    start = time.perf_counter()
    assert batch(profile, reference_dir).wait() == 0
    duration = time.perf_counter() - start
    reference = {path.parent.name: json.loads(path.read_text()) for path in reference_dir.glob("*/record.json")}
    assert len(reference) == 3

    chooser = random.Random(20261125)
    for trial in range(TRIALS):
        out_dir = tmp_path / f"trial{trial}"
        process = batch(profile, out_dir)
        time.sleep(chooser.uniform(0.2, 0.9) * duration)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        # Nothing on disk is partial: every record parses, every checkpoint loads.
        finished_before = {path: path.stat().st_mtime_ns for path in out_dir.glob("*/record.json")}
        for path in finished_before:
            assert load_record(path.parent) is not None
        for path in out_dir.glob("**/*.pt"):
            torch.load(path, weights_only=True)
        assert batch(profile, out_dir).wait() == 0
        for path, mtime in finished_before.items():
            assert path.stat().st_mtime_ns == mtime, f"trial {trial}: {path} was recomputed"
        resumed = {path.parent.name: json.loads(path.read_text()) for path in out_dir.glob("*/record.json")}
        assert resumed.keys() == reference.keys()
        for name in reference:
            assert stable(resumed[name]) == stable(reference[name]), f"trial {trial}: run {name} differs"
            for file in ("mask.pt", "model.pt"):
                a = torch.load(reference_dir / name / file, weights_only=True)
                b = torch.load(out_dir / name / file, weights_only=True)
                assert all(torch.equal(a[k], b[k]) for k in a), f"trial {trial}: {name}/{file} differs"
