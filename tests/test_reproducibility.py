"""A lost shared checkpoint trained again must reproduce the one the finished records used, or its cells wait for a machine that does."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tkdlib.batch import cells, run_batch
from tkdlib.config import Config
from tkdlib.experiment import RECORD_NAME, load_record
from tkdlib.machine import describe
from tkdlib.profile import load_profile
from tkdlib.reproducibility import CHECKPOINTS, CheckpointNotReproducedError, RecordedTraining, missing_checkpoints

from conftest import TINY_RUN

LOSSES = [1.5, 1.0, 0.75]


HERE = {"device": "cpu", "cpu_model": "CPU B", "cpu_capability": "AVX2"}


def record_of(config: Config, dense_losses: list[float], processor: str | None = "CPU A", capability: str = "AVX2") -> dict:
    history = [{"epoch": epoch, "loss": loss} for epoch, loss in enumerate(dense_losses, start=1)]
    environment = {"device": "cpu", "cpu_model": processor, "cpu_capability": capability}
    return {"config": config.to_dict(), "history": {"teacher": [], "dense": history}, "environment": environment}


def test_recorded_training_checks_each_epoch_against_the_records_of_the_same_checkpoint(tmp_path: Path):
    config = Config(**TINY_RUN)
    same_student = Config(**{**TINY_RUN, "method": "magnitude", "sparsity": 0.9})  # another run, same dense student
    other_seed = Config(**{**TINY_RUN, "seed": 1})
    records = [record_of(other_seed, [9.0, 9.0]), record_of(same_student, LOSSES), record_of(config, LOSSES, None)]

    recorded = RecordedTraining.find(records, config, "dense", tmp_path, HERE)
    assert recorded is not None and recorded.runs == 2
    assert [describe(kind) for kind in recorded.machines] == ["CPU A (AVX2)", "an unrecorded processor"]
    recorded.check_machine()  # one record does not say where it ran: only the losses can tell
    for epoch, loss in enumerate(LOSSES, start=1):
        recorded.check({"epoch": epoch, "loss": loss})
    recorded.check({"epoch": 4, "loss": 123.0})  # longer than the records: nothing to compare with
    with pytest.raises(CheckpointNotReproducedError, match=r"dense student .* epoch 2 ends at training loss 1\.000001 here, 1\.000000"):
        recorded.check({"epoch": 2, "loss": 1.000001})
    with pytest.raises(CheckpointNotReproducedError, match=r"ran on CPU A \(AVX2\), an unrecorded processor; this machine: CPU B \(AVX2\)"):
        recorded.check({"epoch": 1, "loss": 1.4})
    # No record trained this teacher (the histories hold none), and none used seed 2's student.
    assert RecordedTraining.find(records, config, "teacher", tmp_path, HERE) is None
    assert RecordedTraining.find(records, Config(**{**TINY_RUN, "seed": 2}), "dense", tmp_path, HERE) is None


@pytest.mark.parametrize(
    ("recorded_on", "refused"),
    [
        ([("CPU B", "AVX2")], False),  # the same kind of machine
        ([("CPU B", "AVX512")], True),  # same model name, other kernels: another kind
        ([("CPU A", "AVX2"), ("CPU C", "AVX2")], True),  # every record ran elsewhere
        ([("CPU A", "AVX2"), (None, "AVX2")], False),  # one record does not say: train and compare losses
        ([("CPU A", "AVX2"), ("CPU B", "AVX2")], False),  # one of them ran here
    ],
)
def test_check_machine_refuses_before_training_only_when_every_record_ran_on_another_kind(tmp_path: Path, recorded_on, refused):
    config = Config(**TINY_RUN)
    records = [record_of(config, LOSSES, processor, capability) for processor, capability in recorded_on]
    recorded = RecordedTraining.find(records, config, "dense", tmp_path, HERE)
    if refused:
        with pytest.raises(CheckpointNotReproducedError, match=r"dense student .* is not on disk, and this machine would not train it again"):
            recorded.check_machine()
    else:
        recorded.check_machine()


def copy_records(source: Path, destination: Path, keep_record: set[str]) -> None:
    """Each run folder of `source` without the shared checkpoints; only the runs in `keep_record` keep their record."""
    for folder in source.iterdir():
        if folder.name != CHECKPOINTS and folder.is_dir():
            shutil.copytree(folder, destination / folder.name)
            if folder.name not in keep_record:
                (destination / folder.name / RECORD_NAME).unlink()


def edit_record(folder: Path, dense_loss_shift: float = 0.0, **environment: str | None) -> None:
    """Rewrite the record in `folder` as if made elsewhere: its first dense-student epoch loss
    shifted by `dense_loss_shift`, and `environment` fields replaced."""
    path = folder / RECORD_NAME
    record = json.loads(path.read_text())
    record["history"]["dense"][0]["loss"] += dense_loss_shift
    record["environment"].update(environment)
    path.write_text(json.dumps(record))


# The tiny profile's cells, then magnitude on a second seed: its own teacher and dense student.
TWO_SEEDS_GRID = """
[[grid]]
method = ["magnitude", "teacher_guided", "imp"]
sparsity = [0.8]

[[grid]]
method = ["magnitude"]
sparsity = [0.8]
seed = [1]
"""


def test_a_retrained_checkpoint_joins_the_records_here_and_holds_back_the_cells_where_it_differs(tiny_batch, tmp_path: Path, capsys):
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

    # Records made elsewhere: the first seed-0 cell to do fails without a record, the other one
    # that needs the same checkpoints is not attempted, and seed 1 still runs. Where the record
    # names another processor, before training anything; where it names none (made before
    # records kept it), after the first epoch, whose loss differs. Papermill reports the error
    # from the notebook's kernel; without notebooks it is raised in this process.
    two_seeds = tmp_path / "two-seeds.toml"
    two_seeds.write_text(tiny_batch.profile.read_text().split("[[grid]]")[0] + TWO_SEEDS_GRID)
    magnitude, guided, imp, other_seed = cells(load_profile(two_seeds), tiny_batch.out_dir)
    assert magnitude.done and (guided.config.seed, imp.config.seed, other_seed.config.seed) == (0, 0, 1)
    for name, changes, message, notebooks in [
        ("another-cpu", {"cpu_model": "Another CPU"}, r"is not on disk, and this machine would not train it again bit for bit \(they ran on Another CPU", True),
        ("unrecorded", {"cpu_model": None}, r"epoch 1 ends at training loss .* \(they ran on an unrecorded processor; this machine: ", False),
    ]:
        other = tmp_path / name
        copy_records(tiny_batch.out_dir, other, {magnitude.directory.name})
        edit_record(other / magnitude.directory.name, 0.25, **changes)
        capsys.readouterr()
        failures = run_batch(two_seeds, out_dir=other, book_dir=tmp_path / name / "book", notebooks=notebooks)
        assert failures == (2 if notebooks else 1)  # with notebooks, also the efficiency page: it needs a teacher-guided record
        output = capsys.readouterr().out
        assert re.search(rf"FAILED {re.escape(guided.label())}: The dense student .*{message}", output)
        assert f"NOT RUN {imp.label()}: it needs the teacher or dense student" in output
        assert [cell.done for cell in cells(load_profile(two_seeds), other)] == [True, False, False, True]
        assert not (other / guided.directory.name / RECORD_NAME).exists(), "not this cell's failure: it stays to do"
        assert set(missing_checkpoints(guided.config, other)) == {"dense", "teacher"}
        assert not missing_checkpoints(other_seed.config, other)


def test_dry_run_marks_the_cells_whose_checkpoints_only_another_kind_of_machine_trains_again(tiny_batch, tmp_path: Path, capsys):
    profile = load_profile(tiny_batch.profile)
    first = cells(profile, tiny_batch.out_dir)[0]
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    for out_dir, cpu in ((here, None), (elsewhere, "Another CPU")):
        copy_records(tiny_batch.out_dir, out_dir, {first.directory.name})
        if cpu is not None:
            edit_record(out_dir / first.directory.name, cpu_model=cpu)
    statuses = {}
    for out_dir in (here, elsewhere):
        assert run_batch(tiny_batch.profile, out_dir=out_dir, dry_run=True) == 0
        lines = capsys.readouterr().out.splitlines()
        statuses[out_dir.name] = [line.split()[0] for line in lines if line.split()[1] in {cell.directory.name for cell in cells(profile, out_dir)}]
        if out_dir is elsewhere:
            assert "elsewhere, for instance: The dense student" in lines[-1] and "they ran on Another CPU" in lines[-1]
    assert statuses == {"here": ["done", "todo", "todo"], "elsewhere": ["done", "elsewhere", "elsewhere"]}
