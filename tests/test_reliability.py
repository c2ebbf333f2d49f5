"""Run store reliability: corrupt files are detected and redone, failures are recorded,
checkpoints survive a failure, and the same config gives bitwise-identical results."""

from __future__ import annotations

import json
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tkdlib import pipelines
from tkdlib.config import METHODS
from tkdlib.experiment import Config, load_record, run, run_dir

from conftest import TINY_RUN

TINY = TINY_RUN


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """An out_dir whose teacher and dense student are trained once for the whole module."""
    out_dir = tmp_path_factory.mktemp("reliable")
    config = Config(**TINY)
    return config, out_dir, run(config, out_dir)


def test_corrupt_record_is_redone_with_a_warning(shared):
    config, out_dir, record = shared
    path = run_dir(config, out_dir) / "record.json"
    path.write_text('{"status": "finished", "config": {')  # a partial write
    with pytest.warns(UserWarning, match="unreadable"):
        redone = run(config, out_dir)
    assert redone["accuracy"] == record["accuracy"]
    assert json.loads(path.read_text())["status"] == "finished"


def test_record_of_another_config_is_not_trusted(shared):
    config, out_dir, _ = shared
    other = Config(**{**TINY, "sparsity": 0.5})
    with pytest.warns(UserWarning, match="another config"):
        assert load_record(run_dir(config, out_dir), other) is None


def test_incomplete_record_is_not_trusted(shared):
    config, out_dir, _ = shared
    directory = run_dir(config, out_dir)
    saved = (directory / "record.json").read_text()
    (directory / "record.json").write_text(json.dumps({"status": "finished", "config": config.to_dict()}))
    with pytest.warns(UserWarning, match="incomplete"):
        assert load_record(directory) is None
    (directory / "record.json").write_text(saved)


def test_corrupt_checkpoint_is_recomputed_with_a_warning(shared, tmp_path):
    config, out_dir, record = shared
    fresh = tmp_path / "runs"
    (fresh / "checkpoints").mkdir(parents=True)
    for path in (out_dir / "checkpoints").glob("*.pt"):
        (fresh / "checkpoints" / path.name).write_bytes(path.read_bytes())
    student = next(p for p in (fresh / "checkpoints").glob("student-*.pt") if "-epoch" not in p.name)
    student.write_bytes(student.read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match="unreadable"):
        again = run(config, fresh)
    assert again["accuracy"] == record["accuracy"]  # recomputed bitwise-identically


def test_same_config_gives_bitwise_identical_masks_and_weights(shared, tmp_path):
    config, out_dir, record = shared
    again = run(config, tmp_path / "again")
    first, second = run_dir(config, out_dir), run_dir(config, tmp_path / "again")
    for name in ("mask.pt", "model.pt"):
        a, b = torch.load(first / name, weights_only=True), torch.load(second / name, weights_only=True)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert again["accuracy"] == record["accuracy"] and again["gamma"] == record["gamma"]


def test_non_finite_loss_fails_the_run_keeps_checkpoints_and_records_why(shared, tmp_path, monkeypatch):
    _, out_dir, _ = shared
    config = Config(**{**TINY, "method": "magnitude", "retrain_with_kd": False})
    calls = {"n": 0}

    def diverging(model, x, y):
        calls["n"] += 1
        loss = torch.nn.functional.cross_entropy(model(x), y)
        return loss * float("nan") if calls["n"] == 2 else loss

    monkeypatch.setattr(pipelines, "cross_entropy", diverging)
    with pytest.raises(FloatingPointError, match=r"retrain1 epoch 1/1: the loss is nan at batch 1"):
        run(config, out_dir)
    failed = json.loads((run_dir(config, out_dir) / "record.json").read_text())
    assert failed["status"] == "failed" and "FloatingPointError" in failed["error"]
    assert load_record(run_dir(config, out_dir)) is None  # a failed run is redone next time
    assert list((out_dir / "checkpoints").glob("pruned-*.pt"))  # the last good checkpoint is kept
    monkeypatch.undo()
    assert run(config, out_dir)["status"] == "finished"


def test_out_dir_that_cannot_be_written_is_refused_before_work(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match="writable out_dir"):
        run(Config(**TINY), blocker / "runs")
    assert blocker.read_text() == "not a folder"


@settings(max_examples=50, deadline=None)
@given(
    method=st.sampled_from(METHODS),
    sparsity=st.floats(0, 0.999),
    seed=st.integers(0, 2**31),
    gamma=st.none() | st.floats(0, 1),
    alpha=st.floats(0, 1),
    temperature=st.floats(0.1, 100),
    normalize=st.booleans(),
    rounds=st.none() | st.integers(1, 3),
)
def test_config_json_round_trip(method, sparsity, seed, gamma, alpha, temperature, normalize, rounds):
    if method == "epsd":
        rounds = None
    config = Config(method=method, sparsity=sparsity, seed=seed, gamma=gamma, alpha=alpha, temperature=temperature,
                    normalize_logits=normalize, prune_rounds=rounds)
    text = json.dumps(config.to_dict(), sort_keys=True)
    assert Config.from_dict(json.loads(text)) == config
    assert json.dumps(Config.from_dict(json.loads(text)).to_dict(), sort_keys=True) == text


def test_missing_data_fails_before_anything_is_written(tmp_path):
    with pytest.raises(FileNotFoundError, match="TKD_DATA"):
        run(Config(**{**TINY, "dataset": "cifar10"}), tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
