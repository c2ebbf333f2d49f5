"""A lost shared checkpoint trained again must reproduce the one the finished records used, or stop the batch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tkdlib import reproducibility
from tkdlib.batch import cells, run_batch
from tkdlib.config import Config
from tkdlib.experiment import RECORD_NAME, load_record
from tkdlib.profile import load_profile
from tkdlib.reproducibility import CheckpointNotReproducedError, RecordedTraining

from conftest import TINY_RUN

LOSSES = [1.5, 1.0, 0.75]


def record_of(config: Config, dense_losses: list[float], processor: str | None = "CPU A") -> dict:
    history = [{"epoch": epoch, "loss": loss} for epoch, loss in enumerate(dense_losses, start=1)]
    return {"config": config.to_dict(), "history": {"teacher": [], "dense": history}, "environment": {"cpu_model": processor}}


def test_recorded_training_checks_each_epoch_against_the_records_of_the_same_checkpoint(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(reproducibility, "cpu_model", lambda: "CPU B")
    config = Config(**TINY_RUN)
    same_student = Config(**{**TINY_RUN, "method": "magnitude", "sparsity": 0.9})  # another run, same dense student
    other_seed = Config(**{**TINY_RUN, "seed": 1})
    records = [record_of(other_seed, [9.0, 9.0]), record_of(same_student, LOSSES), record_of(config, LOSSES, None)]

    recorded = RecordedTraining.find(records, config, "dense", tmp_path)
    assert recorded is not None and recorded.runs == 2
    assert recorded.processors == ("CPU A", "an unrecorded processor")
    for epoch, loss in enumerate(LOSSES, start=1):
        recorded.check({"epoch": epoch, "loss": loss})
    recorded.check({"epoch": 4, "loss": 123.0})  # longer than the records: nothing to compare with
    with pytest.raises(CheckpointNotReproducedError, match=r"dense student .* epoch 2 ends at training loss 1\.000001 here, 1\.000000"):
        recorded.check({"epoch": 2, "loss": 1.000001})
    with pytest.raises(CheckpointNotReproducedError, match=r"ran on CPU A, an unrecorded processor; this machine: CPU B"):
        recorded.check({"epoch": 1, "loss": 1.4})
    # No record trained this teacher (the histories hold none), and none used seed 2's student.
    assert RecordedTraining.find(records, config, "teacher", tmp_path) is None
    assert RecordedTraining.find(records, Config(**{**TINY_RUN, "seed": 2}), "dense", tmp_path) is None


def copy_records(source: Path, destination: Path, keep_record: set[str]) -> None:
    """Each run folder of `source` without the shared checkpoints; only the runs in `keep_record` keep their record."""
    for folder in source.iterdir():
        if folder.name != "checkpoints" and folder.is_dir():
            shutil.copytree(folder, destination / folder.name)
            if folder.name not in keep_record:
                (destination / folder.name / RECORD_NAME).unlink()


def test_a_retrained_checkpoint_joins_the_records_here_and_stops_the_batch_where_it_differs(tiny_batch, tmp_path: Path):
    profile = load_profile(tiny_batch.profile)
    first, rerun, _ = cells(profile, tiny_batch.out_dir)
    kept = {first.directory.name}

    # Same machine: the teacher and the dense student, trained again, end on the recorded losses.
    same = tmp_path / "same"
    copy_records(tiny_batch.out_dir, same, kept)
    assert run_batch(tiny_batch.profile, out_dir=same, only=f"*{rerun.config.method}*", notebooks=False) == 0
    for phase in ("teacher", "dense"):
        losses = [[entry["loss"] for entry in load_record(folder)["history"][phase]] for folder in (same / rerun.directory.name, first.directory)]
        assert losses[0] == losses[1]

    # Records made elsewhere (another dense-student loss, another processor): the batch stops at
    # the first cell, after one epoch, and leaves it to do (no failed record).
    other = tmp_path / "other"
    copy_records(tiny_batch.out_dir, other, kept)
    path = other / first.directory.name / RECORD_NAME
    record = json.loads(path.read_text())
    record["history"]["dense"][0]["loss"] += 0.25
    record["environment"]["cpu_model"] = "Another CPU"
    path.write_text(json.dumps(record))
    with pytest.raises(CheckpointNotReproducedError, match=r"dense student .* ran on Another CPU; this machine: .*\(see "):
        run_batch(tiny_batch.profile, out_dir=other, book_dir=tmp_path / "book")
    assert [cell.done for cell in cells(profile, other)] == [True, False, False]
    assert not (other / rerun.directory.name / RECORD_NAME).exists()
    assert not (tmp_path / "book").exists(), "a stopped batch runs no summary notebook"
