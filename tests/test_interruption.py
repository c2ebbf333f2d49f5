"""A batch killed with SIGKILL at random points, or in the middle of a multi-epoch phase, resumes
to the same records and weights as an uninterrupted one."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tkdlib.checkpoints import sparse_model_of
from tkdlib.experiment import load_record
from tkdlib.sparse_checkpoint import load_sparse

from conftest import TINY_PROFILE

TRIALS = 3
# What must not depend on interruptions: everything but wall times, timestamps and the code commit.
# The checkpoints' digests are volatile too: a checkpoint file keeps its training's wall seconds.
VOLATILE = {"seconds", "finished_at", "environment", "compute", "history", "checkpoints"}


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


# One cell whose teacher, dense student and retraining each take three epochs of four batches.
MULTI_EPOCH_PROFILE = """
description = "one cell with multi-epoch phases"
[config]
dataset = "cifar10-sample"
arch = "resnet20"
teacher_arch = "resnet20"
batch_size = 64
train_subset = 256
teacher_epochs = 3
student_epochs = 3
guide_epochs = 0
retrain_epochs = 3
score_batches = 1
calibration_batches = 1
[[grid]]
method = ["magnitude"]
sparsity = [0.8]
"""


@pytest.fixture(scope="module")
def multi_epoch_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The profile file and the out_dir of its uninterrupted batch."""
    root = tmp_path_factory.mktemp("multi-epoch")
    profile = root / "multi.toml"
    profile.write_text(MULTI_EPOCH_PROFILE)
    assert batch(profile, root / "reference").wait() == 0
    return profile, root / "reference"


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.mark.parametrize(
    ("partial", "finished"),
    [  # the dense student trains through the same code as the teacher (`SharedNetworks._trained`)
        ("checkpoints/teacher-*.partial.pt", "checkpoints/teacher-????????????.pt"),
        ("*/partial/*.pt", "*/record.json"),
    ],
    ids=["teacher", "retraining"],
)
def test_a_kill_in_the_middle_of_a_multi_epoch_phase_resumes_bit_for_bit(tmp_path, multi_epoch_reference, partial, finished):
    profile, reference_dir = multi_epoch_reference
    out_dir = tmp_path / "killed"
    process = batch(profile, out_dir)
    deadline = time.perf_counter() + 300
    while not list(out_dir.glob(partial)):  # the phase's state after its first epoch
        assert process.poll() is None and time.perf_counter() < deadline, f"the batch never saved {partial}"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not list(out_dir.glob(finished)), "the kill came after the phase had finished: the test proves nothing"
    state = torch.load(next(out_dir.glob(partial)), weights_only=True)
    assert 1 <= len(state["history"]) < 3  # killed between epochs of the phase
    assert batch(profile, out_dir).wait() == 0

    (run,) = [path.parent.name for path in reference_dir.glob("*/record.json")]
    assert stable(json.loads((out_dir / run / "record.json").read_text())) == stable(json.loads((reference_dir / run / "record.json").read_text()))
    for pattern in ("checkpoints/teacher-????????????.pt", "checkpoints/student-????????????.pt"):
        (expected,), (resumed,) = reference_dir.glob(pattern), out_dir.glob(pattern)
        assert all(torch.equal(value, _weights(resumed)[key]) for key, value in _weights(expected).items()), pattern
    expected, resumed = load_sparse(sparse_model_of(reference_dir, run)), load_sparse(sparse_model_of(out_dir, run))
    assert expected.keys() == resumed.keys() and all(torch.equal(expected[key], resumed[key]) for key in expected)
