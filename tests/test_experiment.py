from __future__ import annotations

import json
import math

import pytest

from tkdlib import experiment
from tkdlib.config import METHODS
from tkdlib.experiment import Config, run
from tkdlib.profile import available_profiles, load_profile

from conftest import TINY_RUN

TINY = {**TINY_RUN, "train_subset": 256, "score_batches": 2, "calibration_batches": 2, "sparsity": 0.9}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("runs")
    config = Config(**TINY)
    return config, out_dir, run(config, out_dir)


def test_run_writes_a_complete_record(finished):
    config, out_dir, record = finished
    directory = out_dir / config.key()
    assert json.loads((directory / "record.json").read_text()) == record
    assert Config.from_dict(json.loads((directory / "config.json").read_text())) == config
    assert (directory / "mask.pt").is_file() and (directory / "mask.pt.json").is_file()
    assert record["status"] == "finished" and record["config_hash"] == config.key()
    assert set(record["accuracy"]) == {"teacher", "dense", "guided", "pruned", "retrained"}
    assert all(0 <= value <= 1 for value in record["accuracy"].values())
    assert 0 <= record["gamma"] <= 1 and record["gamma_measured"]
    total = record["sparsity"]["prunable_weights"]
    assert abs(record["sparsity"]["weights"] - 0.9) <= 1 / total
    assert record["sparsity"]["mask"] == record["sparsity"]["weights"]
    assert {"teacher", "dense", "calibrate", "guide", "score", "retrain"} == set(record["compute"]["phases"])
    assert all(cost["seconds"] > 0 for cost in record["compute"]["phases"].values())
    assert record["seconds"]["total"] > 0
    assert {"device", "precision", "compile", "world_size", "cpu_model", "cpu_capability"} <= set(record["environment"])
    assert record["environment"]["world_size"] == 1 and record["environment"]["compile"] is False
    assert record["data"]["train_images"] == 256 and "JPEG" in record["data"]["train"]
    assert record["environment"]["torch"].startswith("2.14.1")
    assert record["environment"]["cpu_capability"] in {"DEFAULT", "VSX", "Z VECTOR", "NO AVX", "AVX2", "AVX512", "SVE256"}


def test_finished_run_is_not_recomputed_and_checkpoints_are_shared(finished, monkeypatch):
    config, out_dir, record = finished

    def no_training(model, batches, schedule, *args, **kwargs):
        if schedule.epochs:
            raise AssertionError("a finished run or a shared checkpoint was recomputed")
        return []

    monkeypatch.setattr(experiment, "fit", no_training)
    assert run(config, out_dir) == record
    # A magnitude run needs the same teacher and dense student and no training besides retraining.
    magnitude = Config(**{**TINY, "method": "magnitude", "retrain_epochs": 0})
    other = run(magnitude, out_dir)
    assert other["accuracy"]["dense"] == record["accuracy"]["dense"]
    assert other["accuracy"]["teacher"] == record["accuracy"]["teacher"]
    assert other["accuracy"]["pruned"] == other["accuracy"]["retrained"]
    checkpoints = out_dir / "checkpoints"
    assert len(list(checkpoints.glob("teacher-*.pt"))) == 1
    assert len([path for path in checkpoints.glob("student-*.pt") if "-epoch" not in path.name]) == 1


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("sparsity", 1.0, "sparsity"),
        ("sparsity", math.nan, "sparsity"),
        ("dataset", "imagenet", "Unknown dataset"),
        ("arch", "vgg99", "Unknown arch"),
        ("method", "oracle", "Unknown method"),
        ("alpha", 1.2, "alpha"),
        ("gamma", -0.5, "gamma"),
        ("temperature", 0, "temperature"),
        ("score_batches", 0, "score_batches"),
        ("retrain_epochs", -1, "retrain_epochs"),
        ("teacher_epochs", 1.5, "teacher_epochs"),
        ("lr", "1e-3", "lr"),
    ],
)
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        Config(**{field: value})


def test_config_round_trip_and_key():
    config = Config(sparsity=0.95, gamma=0.5)
    assert Config.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.key() == Config(sparsity=0.95, gamma=0.5).key() != Config(sparsity=0.9, gamma=0.5).key()
    with pytest.raises(ValueError, match="Unknown config fields"):
        Config.from_dict({"sparsty": 0.9})


def test_sample_profile_lists_every_method_and_one_switch_ablations():
    profile = load_profile("sample")
    configs = profile.configs()
    main = [c for c in configs if not profile.changes(c)]
    assert {c.method for c in main} == set(METHODS)
    assert {(c.method, c.sparsity) for c in main} == {(m, s) for m in METHODS for s in (0.5, 0.9)}
    variants = [profile.changes(c) for c in configs if profile.changes(c)]
    assert variants and all(1 <= len(change) <= 2 for change in variants)
    assert all(c.dataset == "cifar10-sample" for c in configs)


def test_bad_profiles_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="Unknown profile"):
        load_profile("nonexistent")
    bad = tmp_path / "bad.toml"
    bad.write_text('[config]\nsparsity = 0.5\n[grids]\nmethod = ["magnitude"]\n')
    with pytest.raises(ValueError, match="unknown keys"):
        load_profile(bad)
    bad.write_text('[config]\nlr = "1e-3"\n')
    with pytest.raises(ValueError, match="lr"):
        load_profile(bad)


def test_profile_grids_are_a_union_without_duplicates(tmp_path):
    path = tmp_path / "two.toml"
    path.write_text(
        '[config]\nmethod = "teacher_guided"\n'
        '[[grid]]\nmethod = ["teacher_guided", "magnitude"]\nsparsity = [0.5, 0.9]\n'
        '[[grid]]\nsparsity = [0.9]\nnormalize_logits = [true, false]\n'
    )
    configs = load_profile(path).configs()
    assert len(configs) == 5  # 4 from the first grid; (0.9, normalize on) repeats, (0.9, off) is new
    assert sum(not c.normalize_logits for c in configs) == 1


@pytest.mark.parametrize("name", available_profiles())
def test_every_bundled_profile_is_valid(name):
    profile = load_profile(name)
    assert profile.configs() and profile.description
