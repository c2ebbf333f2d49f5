"""A run stopped midway and parked resumes in a fresh checkout, from the committed files alone, to
the record of the uninterrupted run."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from tkdlib.__main__ import main
from tkdlib.checkpoints import CheckpointHashError, digest_path
from tkdlib.experiment import Config, run, run_dir
from tkdlib.parking import PARKED_NAME, PARTIAL_DIR, DeadlineReached, park, read_parked, stop_at, unpark
from tkdlib.train import FINISHED_STEPS, EpochState, fit

from conftest import TINY_PROFILE, TINY_RUN, EpochCalls, Killed
from test_resume import SCHEDULE, fresh_net, kill_after, loader

IMP = Config(**{**TINY_RUN, "train_subset": 192, "method": "imp", "prune_rounds": 2, "retrain_epochs": 2})
UNCOMMITTED = shutil.ignore_patterns(PARTIAL_DIR, "*.partial.pt", "pruned-*.pt", "mask.pt", "model.pt")  # as .gitignore


def test_a_parked_run_resumes_in_a_fresh_checkout_to_the_uninterrupted_record(tmp_path: Path, train_epochs: EpochCalls):
    reference = run(IMP, tmp_path / "reference")
    train_epochs.restart(dies_at=6)  # round 2's second epoch: round 1 finished, round 2 at epoch 1
    with pytest.raises(Killed):
        run(IMP, tmp_path / "killed")
    train_epochs.restart()
    parked = park(run_dir(IMP, tmp_path / "killed"))
    assert parked.describe() == "retrain1 done (2 epochs), retrain2 at epoch 1"
    assert FINISHED_STEPS in parked["retrain1"] and "optimizer" not in parked["retrain1"], "a finished phase is parked whole"
    assert "optimizer" in parked["retrain2"]

    fresh = tmp_path / "fresh"
    shutil.copytree(tmp_path / "killed", fresh, ignore=UNCOMMITTED)
    directory = run_dir(IMP, fresh)
    assert not (directory / PARTIAL_DIR).exists() and (directory / PARKED_NAME).is_file()
    assert read_parked(directory).describe() == parked.describe()
    resumed = run(IMP, fresh)

    assert resumed["seconds"]["resumed"]
    assert resumed["accuracy"] == reference["accuracy"] and resumed["sparsity"] == reference["sparsity"]
    for phase, cost in reference["compute"]["phases"].items():
        assert resumed["compute"]["phases"][phase]["student_backward"] == cost["student_backward"], phase
    assert resumed["history"]["retrain1"] == parked["retrain1"]["history"]  # read back from the parked state, not trained again
    assert not (directory / PARKED_NAME).exists() and not digest_path(directory / PARKED_NAME).exists()
    assert not (directory / PARTIAL_DIR).exists()


def test_a_damaged_parked_file_stops_the_run_before_any_training(tmp_path: Path):
    state = tmp_path / PARTIAL_DIR / "retrain1.pt"
    with pytest.raises(Killed):
        fit(fresh_net(), loader(), SCHEDULE, epoch_state=EpochState(state), on_epoch_end=kill_after(2))
    park(tmp_path)
    shutil.rmtree(tmp_path / PARTIAL_DIR)
    digest_path(tmp_path / PARKED_NAME).write_text("0" * 64 + "\n")
    with pytest.raises(CheckpointHashError, match="records 0000"):
        unpark(tmp_path)
    assert not (tmp_path / PARTIAL_DIR).exists()


def test_states_of_this_checkout_win_over_a_parked_file(tmp_path: Path):
    state = tmp_path / PARTIAL_DIR / "retrain1.pt"
    with pytest.raises(Killed):
        fit(fresh_net(), loader(), SCHEDULE, epoch_state=EpochState(state), on_epoch_end=kill_after(2))
    park(tmp_path)  # after epoch 1
    with pytest.raises(Killed):  # this checkout goes on to epoch 2
        fit(fresh_net(), loader(), SCHEDULE, epoch_state=EpochState(state), on_epoch_end=kill_after(3))
    assert not unpark(tmp_path)
    assert read_parked(tmp_path).describe() == "retrain1 at epoch 2"


def test_a_finished_state_of_another_schedule_is_refused(tmp_path: Path):
    state = tmp_path / PARTIAL_DIR / "retrain1.pt"
    fit(fresh_net(), loader(), SCHEDULE, epoch_state=EpochState(state))
    park(tmp_path)
    shutil.rmtree(tmp_path / PARTIAL_DIR)
    unpark(tmp_path)
    longer = type(SCHEDULE)(SCHEDULE.epochs + 1, SCHEDULE.lr)
    with pytest.raises(ValueError, match="belongs to another schedule"):
        fit(fresh_net(), loader(), longer, epoch_state=EpochState(state))


def test_park_command_packs_each_stopped_cell_and_the_dry_run_shows_what_it_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from tkdlib.batch import cells
    from tkdlib.profile import load_profile

    profile_file, out_dir = tmp_path / "tiny.toml", tmp_path / "runs"
    profile_file.write_text(TINY_PROFILE)
    assert main(["park", "--profile", str(profile_file), "--out-dir", str(out_dir)]) == 0
    assert "no unfinished cell of tiny has training states to park" in capsys.readouterr().out

    imp_cell = cells(load_profile(profile_file), out_dir, ["imp"])[0]
    with pytest.raises(Killed):
        fit(fresh_net(), loader(), SCHEDULE, epoch_state=EpochState(imp_cell.directory / PARTIAL_DIR / "retrain1.pt"), on_epoch_end=kill_after(2))
    assert main(["park", "--profile", str(profile_file), "--out-dir", str(out_dir)]) == 0
    shown = capsys.readouterr().out
    assert f"parked {imp_cell.directory / PARKED_NAME}" in shown and "retrain1 at epoch 1" in shown
    shutil.rmtree(imp_cell.directory / PARTIAL_DIR)  # as a fresh checkout has it
    assert read_parked(imp_cell.directory)["retrain1"]["history"][0]["epoch"] == 1

    assert main(["batch", "--profile", str(profile_file), "--out-dir", str(out_dir), "--dry-run"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if " imp " in line]
    assert listed and listed[0].startswith("todo") and listed[0].endswith("resumes: retrain1 at epoch 1")


def test_stop_at_interrupts_the_block_when_the_time_is_over_and_only_then():
    with pytest.raises(DeadlineReached):
        with stop_at(0.05):
            time.sleep(2)
    with stop_at(0.2):
        pass
    time.sleep(0.3)  # the timer was cancelled with the block: nothing is raised here
    with pytest.raises(DeadlineReached):
        with stop_at(0):
            pass


def test_a_batch_parks_the_cell_running_when_its_hours_are_over_and_a_fresh_checkout_finishes_it(
    tiny_batch, tmp_path: Path, train_epochs: EpochCalls, capsys: pytest.CaptureFixture[str]
):
    from tkdlib.batch import cells
    from tkdlib.profile import load_profile

    out_dir = tmp_path / "runs"
    shutil.copytree(tiny_batch.out_dir, out_dir)
    profile = tmp_path / "tiny.toml"
    profile.write_text(TINY_PROFILE + '[[grid]]\nmethod = ["snip"]\nsparsity = [0.8]\nretrain_epochs = [2]\n'
                       '[[grid]]\nmethod = ["magnitude"]\nsparsity = [0.8]\nseed = [1]\n')
    snip = next(cell for cell in cells(load_profile(profile), out_dir) if cell.config.method == "snip")
    common = ["batch", "--profile", str(profile), "--out-dir", str(out_dir), "--no-notebooks", "--hours", "1", "--park"]
    train_epochs.restart(dies_at=2, error=DeadlineReached)  # stands for the timer of `stop_at` going off in the second epoch
    assert main(common) == 0
    train_epochs.restart()
    out = capsys.readouterr().out
    assert f"NOT RUN {snip.label()}: stopped when the hours were over and parked: retrain1 at epoch 1" in out
    assert "magnitude s=0.8 seed=1: not started: the hours are over" in out
    assert not snip.done and snip.failure is None and (snip.directory / PARKED_NAME).is_file()

    fresh = tmp_path / "fresh"
    shutil.copytree(out_dir, fresh, ignore=UNCOMMITTED)
    assert main(["batch", "--profile", str(profile), "--out-dir", str(fresh), "--only", "snip", "--no-notebooks", "--hours", "1", "--park"]) == 0
    record = json.loads((fresh / snip.directory.name / "record.json").read_text())
    assert record["status"] == "finished" and record["seconds"]["resumed"] and len(record["history"]["retrain1"]) == 2
    assert not (fresh / snip.directory.name / PARKED_NAME).exists()


def test_park_needs_hours_and_cells_run_in_this_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    profile_file = tmp_path / "tiny.toml"
    profile_file.write_text(TINY_PROFILE)
    for flags in (["--no-notebooks", "--park"], ["--hours", "1", "--park"]):
        assert main(["batch", "--profile", str(profile_file), "--out-dir", str(tmp_path / "runs"), *flags]) == 2
        assert "--park stops the running cell when the --hours are over" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
