"""The batch runner executes the experiment and results notebooks with papermill, end to end."""

from __future__ import annotations

import json

import nbformat

from tkdlib.batch import run_batch
from tkdlib.experiment import load_record

PROFILE = """
description = "tiny test profile"
[config]
dataset = "cifar10-sample"
arch = "resnet20"
teacher_arch = "resnet20"
batch_size = 64
train_subset = 128
teacher_epochs = 1
student_epochs = 1
guide_epochs = 0
retrain_epochs = 1
score_batches = 1
calibration_batches = 1
[[grid]]
method = ["teacher_guided", "magnitude"]
sparsity = [0.8]
"""


def test_batch_runs_notebooks_and_resumes(tmp_path, capsys):
    profile = tmp_path / "tiny.toml"
    profile.write_text(PROFILE)
    out_dir, book_dir = tmp_path / "runs", tmp_path / "book"
    assert run_batch(profile, out_dir=out_dir, book_dir=book_dir) == 0
    records = sorted(out_dir.glob("*/record.json"))
    assert len(records) == 2
    executed = nbformat.read(records[0].parent / "experiment.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "hide-cell" in injected[0].metadata["tags"]
    results = nbformat.read(book_dir / "tiny" / "results.ipynb", as_version=4)
    glued = [o for c in results.cells for o in c.get("outputs", []) if "scrapbook" in o.get("metadata", {})]
    assert {o["metadata"]["scrapbook"]["name"] for o in glued} >= {"accuracy_at_max_teacher_guided", "accuracy_at_max_magnitude"}
    assert "retrained accuracy" in capsys.readouterr().out
    # A second batch finds every record and recomputes nothing.
    before = {path: path.stat().st_mtime_ns for path in records}
    assert run_batch(profile, out_dir=out_dir, book_dir=book_dir) == 0
    assert {path: path.stat().st_mtime_ns for path in records} == before
    assert all(load_record(path.parent)["config"]["sparsity"] == 0.8 for path in records)
    assert json.loads((records[0].parent / "config.json").read_text())["train_subset"] == 128
