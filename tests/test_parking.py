"""A run stopped midway and parked resumes in a fresh checkout, from the committed files alone, to
the record of the uninterrupted run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tkdlib import train
from tkdlib.__main__ import main
from tkdlib.checkpoints import CheckpointHashError, digest_path
from tkdlib.experiment import Config, run, run_dir
from tkdlib.parking import PARKED_NAME, PARTIAL_DIR, park, read_parked, unpark
from tkdlib.train import FINISHED_STEPS, EpochState, fit

from conftest import TINY_PROFILE, TINY_RUN
from test_resume import SCHEDULE, Killed, fresh_net, kill_after, loader

IMP = Config(**{**TINY_RUN, "train_subset": 192, "method": "imp", "prune_rounds": 2, "retrain_epochs": 2})
UNCOMMITTED = shutil.ignore_patterns(PARTIAL_DIR, "*.partial.pt", "pruned-*.pt", "mask.pt", "model.pt")  # as .gitignore


def killed_run(config: Config, out_dir: Path, monkeypatch: pytest.MonkeyPatch, dies_at: int) -> None:
    """Run `config` until the `dies_at`-th call of `train_epoch` dies (teacher and dense student are calls 1 and 2)."""
    real_epoch, calls = train.train_epoch, []

    def counted(*args, **kwargs):
        calls.append(1)
        if len(calls) == dies_at:
            raise Killed
        return real_epoch(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(train, "train_epoch", counted)
        with pytest.raises(Killed):
            run(config, out_dir)


def test_a_parked_run_resumes_in_a_fresh_checkout_to_the_uninterrupted_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    reference = run(IMP, tmp_path / "reference")
    killed_run(IMP, tmp_path / "killed", monkeypatch, dies_at=6)  # round 2's second epoch: round 1 finished, round 2 at epoch 1
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


def test_a_damaged_parked_file_stops_the_run_before_any_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
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

    imp_cell = cells(load_profile(profile_file), out_dir, "imp")[0]
    with pytest.raises(Killed):
        fit(fresh_net(), loader(), SCHEDULE, epoch_state=EpochState(imp_cell.directory / PARTIAL_DIR / "retrain1.pt"), on_epoch_end=kill_after(2))
    assert main(["park", "--profile", str(profile_file), "--out-dir", str(out_dir)]) == 0
    shown = capsys.readouterr().out
    assert f"parked {imp_cell.directory / PARKED_NAME}" in shown and "retrain1 at epoch 1" in shown
    assert torch.load(imp_cell.directory / PARKED_NAME, weights_only=True)["retrain1"]["history"][0]["epoch"] == 1

    assert main(["batch", "--profile", str(profile_file), "--out-dir", str(out_dir), "--dry-run"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if " imp " in line]
    assert listed and listed[0].startswith("todo") and listed[0].endswith("resumes: retrain1 at epoch 1")
