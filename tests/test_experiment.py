from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from tkdlib import shared_networks
from tkdlib.checkpoints import CheckpointHashError, checkpoint_path, digest_path, sparse_model_of
from tkdlib.config import METHODS, PRUNED_FIELDS
from tkdlib.scoring import EXTENSIONS
from tkdlib.io import load_torch, sha256_of
from tkdlib.models import build_model
from tkdlib.masks import Mask
from tkdlib.sparse_checkpoint import load_sparse, load_sparse_mask
from tkdlib.experiment import Config, _code_commit, run
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
    assert set(record["accuracy"]) == {"teacher", "dense", "guided", "pruned", "pruned_bn", "retrained"}
    assert all(0 <= value <= 1 for value in record["accuracy"].values())
    assert 0 <= record["gamma"] <= 1 and record["gamma_measured"]
    total = record["sparsity"]["prunable_weights"]
    assert abs(record["sparsity"]["weights"] - 0.9) <= 1 / total
    assert record["sparsity"]["mask"] == record["sparsity"]["weights"]
    scores = record["scores"]["layers"]
    assert [layer["name"] for layer in scores] == [layer["name"] for layer in record["sparsity"]["layers"]]
    assert sum(layer["share"] for layer in scores) == pytest.approx(1.0)
    assert all(0 <= layer["median"] <= layer["max"] and layer["mean"] >= 0 for layer in scores)  # |w·g| is non-negative
    assert {"teacher", "dense", "calibrate", "guide", "score", "retrain"} == set(record["compute"]["phases"])
    assert all(cost["seconds"] > 0 for cost in record["compute"]["phases"].values())
    assert record["seconds"]["total"] > 0
    assert {"device", "precision", "compile", "world_size", "cpu_model", "cpu_capability"} <= set(record["environment"])
    assert record["environment"]["world_size"] == 1 and record["environment"]["compile"] is False
    assert record["environment"]["reference_rate"] > 0  # images/s of the reference workload, to compare seconds across sittings
    assert record["data"]["train_images"] == 256 and "JPEG" in record["data"]["train"]
    assert record["environment"]["torch"].startswith("2.14.1")
    assert record["environment"]["cpu_capability"] in {"DEFAULT", "VSX", "Z VECTOR", "NO AVX", "AVX2", "AVX512", "SVE256"}


def test_the_books_frame_reads_a_records_own_seconds_and_scales_them_by_its_machine_speed(finished):
    from tkdlib.report.records import REFERENCE_SPEED, load_records

    config, out_dir, record = finished
    row = load_records(out_dir, load_profile("sample")).set_index("run").loc[config.key()]
    phases = record["compute"]["phases"]
    own = sum(phases[phase]["seconds"] for phase in ("calibrate", "guide", "score", "retrain"))
    assert row["pruning_seconds"] == pytest.approx(own) and row["total_seconds"] > row["pruning_seconds"]  # teacher, dense student left out
    assert row["reference_rate"] == record["environment"]["reference_rate"]
    assert row["scaled_pruning_seconds"] == pytest.approx(own * record["environment"]["reference_rate"] / REFERENCE_SPEED)


def test_finished_run_is_not_recomputed_and_checkpoints_are_shared(finished, monkeypatch):
    config, out_dir, record = finished

    def no_training(model, batches, schedule, *args, **kwargs):
        if schedule.epochs:
            raise AssertionError("a finished run or a shared checkpoint was recomputed")
        return []

    monkeypatch.setattr(shared_networks, "fit", no_training)
    assert run(config, out_dir) == record
    # A magnitude run needs the same teacher and dense student and no training besides retraining.
    magnitude = Config(**{**TINY, "method": "magnitude", "retrain_epochs": 0})
    other = run(magnitude, out_dir)
    assert other["accuracy"]["dense"] == record["accuracy"]["dense"]
    assert other["accuracy"]["teacher"] == record["accuracy"]["teacher"]
    assert other["accuracy"]["pruned"] == other["accuracy"]["retrained"]
    # A mask-only cell stores its mask alone, the mask it was evaluated with.
    stored = out_dir / other["checkpoints"]["retrained"]
    saved = Mask.load(out_dir / magnitude.key() / "mask.pt")
    assert all(torch.equal(keep, saved[name]) for name, keep in load_sparse_mask(stored).items())
    with pytest.raises(ValueError, match="only a mask"):
        load_sparse(stored)
    checkpoints = out_dir / "checkpoints"
    assert len(list(checkpoints.glob("teacher-*.pt"))) == 1
    assert len([path for path in checkpoints.glob("student-*.pt") if "-epoch" not in path.name]) == 1


def test_record_names_the_sha256_of_every_checkpoint_it_used_and_made(finished):
    config, out_dir, record = finished
    digests = record["checkpoints"]["sha256"]
    assert {"teacher", "dense", "retrained"} <= set(digests)
    checkpoints = out_dir / "checkpoints"
    for phase, pattern in (("teacher", "teacher-????????????.pt"), ("dense", "student-????????????.pt")):
        (path,) = checkpoints.glob(pattern)
        assert digests[phase] == sha256_of(path) == digest_path(path).read_text().strip()
    retrained = out_dir / record["checkpoints"]["retrained"]
    assert retrained == sparse_model_of(out_dir, config.key()) and retrained.name == f"{config.key()}.pt.gz"
    assert digests["retrained"] == sha256_of(retrained) and retrained.read_bytes()[:2] == b"\x1f\x8b"  # gzip-compressed
    # The README's two lines load the pruned student of any record.
    model = build_model(config.arch, 10)
    model.load_state_dict(load_sparse(retrained))
    dense = torch.load(out_dir / config.key() / "model.pt", weights_only=True)
    assert all(torch.equal(value, dense[key]) for key, value in model.state_dict().items())


def test_a_checkpoint_whose_bytes_do_not_match_its_sha256_stops_the_run_before_any_work(finished, tmp_path: Path):
    _, out_dir, record = finished
    copy = tmp_path / "runs"
    shutil.copytree(out_dir, copy)
    (teacher,) = (copy / "checkpoints").glob("teacher-????????????.pt")
    with teacher.open("r+b") as handle:  # one byte changed, as a bad merge or a damaged disk would
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    magnitude = Config(**{**TINY, "method": "magnitude", "retrain_epochs": 0, "sparsity": 0.5})  # a run not yet made
    with pytest.raises(CheckpointHashError, match=rf"{teacher.name} has sha256 \w+, but {teacher.name}.sha256 records {record['checkpoints']['sha256']['teacher']}.*git checkout"):
        run(magnitude, copy)
    assert not (copy / magnitude.key() / "record.json").exists()


def test_a_lost_checkpoint_is_trained_again_as_a_new_lineage(finished, tmp_path: Path):
    _, out_dir, record = finished
    copy = tmp_path / "runs"
    shutil.copytree(out_dir, copy)
    (teacher,) = (copy / "checkpoints").glob("teacher-????????????.pt")
    teacher.unlink()  # its sidecar stays: the digest it held is the old lineage
    magnitude = Config(**{**TINY, "method": "magnitude", "retrain_epochs": 0, "sparsity": 0.5})
    with pytest.warns(UserWarning, match="trained again.*new lineage"):
        again = run(magnitude, copy)
    assert again["checkpoints"]["sha256"]["teacher"] == sha256_of(teacher) != record["checkpoints"]["sha256"]["teacher"]
    assert again["checkpoints"]["sha256"]["dense"] == record["checkpoints"]["sha256"]["dense"]


def test_one_teacher_seed_shares_one_teacher_across_seeds(finished, monkeypatch):
    config, out_dir, record = finished
    other_seed = Config(**{**TINY, "seed": 1, "teacher_seed": config.seed, "method": "magnitude", "retrain_epochs": 0})
    assert checkpoint_path(out_dir, other_seed, "teacher") == checkpoint_path(out_dir, config, "teacher")
    assert checkpoint_path(out_dir, other_seed, "dense") != checkpoint_path(out_dir, config, "dense")
    trained_phases = []

    def counting_fit(model, batches, schedule, *args, phase="train", **kwargs):
        trained_phases.append(phase)
        return original_fit(model, batches, schedule, *args, phase=phase, **kwargs)

    original_fit = shared_networks.fit
    monkeypatch.setattr(shared_networks, "fit", counting_fit)
    shared = run(other_seed, out_dir)
    assert "teacher" not in trained_phases and "dense" in trained_phases
    assert shared["checkpoints"]["sha256"]["teacher"] == record["checkpoints"]["sha256"]["teacher"]
    assert shared["accuracy"]["teacher"] == record["accuracy"]["teacher"]
    with pytest.raises(ValueError, match="teacher_seed"):
        Config(teacher_seed=-1)


def test_bf16_storage_halves_the_checkpoints_and_every_run_uses_the_stored_weights(tmp_path: Path):
    config = Config(**{**TINY, "storage_precision": "bf16"})
    first = run(config, tmp_path)
    teacher = torch.load(checkpoint_path(tmp_path / "checkpoints", config, "teacher"), weights_only=True)["state_dict"]
    assert {tensor.dtype for tensor in teacher.values() if tensor.is_floating_point()} == {torch.bfloat16}
    retrained = load_torch(tmp_path / first["checkpoints"]["retrained"])["packed"]["values"]
    assert set(retrained) == {"bfloat16"}
    # The run that trained the teacher and the dense student used them rounded, as a later run loads them.
    later = run(Config(**{**TINY, "storage_precision": "bf16", "method": "magnitude", "retrain_epochs": 0}), tmp_path)
    assert later["accuracy"]["teacher"] == first["accuracy"]["teacher"] and later["accuracy"]["dense"] == first["accuracy"]["dense"]
    # The retrained student was evaluated as it is stored.
    stored = load_sparse(tmp_path / first["checkpoints"]["retrained"])
    evaluated = torch.load(tmp_path / config.key() / "model.pt", weights_only=True)
    assert all(torch.equal(stored[name].float() if stored[name].is_floating_point() else stored[name], evaluated[name]) for name in stored)
    assert checkpoint_path(tmp_path, config, "teacher") != checkpoint_path(tmp_path, Config(**TINY), "teacher")


def test_fields_added_later_change_no_existing_hash():
    records = [json.loads(path.read_text()) for path in sorted((Path(__file__).parents[1] / "runs").glob("*/*/record.json"))]
    assert len(records) > 100
    for record in records:
        assert Config.from_dict(record["config"]).key() == record["config_hash"]
    floored = Config(sparsity=0.98, layer_floor=0.01)
    assert floored.to_dict()["layer_floor"] == 0.01 and "layer_floor" not in Config(sparsity=0.98).to_dict()
    assert floored.key() != Config(sparsity=0.98).key()


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
        ("layer_floor", 1.0, "layer_floor"),
        ("storage_precision", "fp16", "storage_precision"),
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
    compared = set(METHODS) - set(EXTENSIONS)  # the saliency study's variants run on the cpu-bf16 lineage
    assert {c.method for c in main} == compared
    assert {(c.method, c.sparsity) for c in main} == {(m, s) for m in compared for s in (0.5, 0.9)}
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
    bad.write_text('precision = "fp8"\n[config]\n')
    with pytest.raises(ValueError, match="precision must be one of"):
        load_profile(bad)
    bad.write_text('pages = ["results", "appendix"]\n[config]\n')
    with pytest.raises(ValueError, match="pages must be a non-empty list of results"):
        load_profile(bad)


@pytest.mark.parametrize(
    "table, message",
    [
        ("", "needs a \\[compare\\] table"),
        ('[compare]\nprofile = "cpu"\n', "exactly profile and labels"),
        ('[compare]\nprofile = "nowhere"\nlabels = ["a", "b"]\n', "another bundled profile"),
        ('[compare]\nprofile = "cpu"\nlabels = ["same", "same"]\n', "two different names"),
    ],
)
def test_a_regimes_page_needs_a_valid_comparison(tmp_path, table, message):
    profile = tmp_path / "mine.toml"
    profile.write_text(f'pages = ["results", "regimes"]\n{table}[config]\nsparsity = 0.5\n')
    with pytest.raises(ValueError, match=message):
        load_profile(profile)
    profile.write_text('[compare]\nprofile = "cpu"\nlabels = ["a", "b"]\n[config]\nsparsity = 0.5\n')
    with pytest.raises(ValueError, match="only by the regimes page"):
        load_profile(profile)
    assert load_profile("cpu").comparison.labels == ("short", "converged")


def test_a_profile_chooses_the_book_pages_it_renders():
    assert load_profile("cpu").pages == ("results", "ablations", "efficiency", "masks", "regimes", "runs")
    assert load_profile("cpu-bf16").pages == ("saliency", "runs")  # the saliency study


def test_a_profile_states_how_its_cells_train():
    assert load_profile("cpu").runtime().precision == "fp32"  # its records were trained in float32
    assert load_profile("cpu-bf16").runtime(device="cpu").precision == "bf16"
    assert load_profile("cpu").runtime(device="cpu", precision="bf16").precision == "bf16"  # a flag overrides it


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


def test_a_later_field_varied_by_a_grid_is_a_variant(tmp_path):
    path = tmp_path / "floor.toml"
    path.write_text('[config]\ndataset = "cifar10"\n[[grid]]\nsparsity = [0.98]\nlayer_floor = [0.0, 0.005]\n')
    profile = load_profile(path)
    assert [profile.changes(config) for config in profile.configs()] == [{}, {"layer_floor": 0.005}]


def test_the_scoring_and_the_retraining_normalization_and_temperature_are_separate_switches():
    split = Config(normalize_logits=False, retrain_normalize_logits=True, score_temperature=2.0)
    assert (split.normalize_logits, split.retraining_normalizes, split.guiding_temperature, split.temperature) == (False, True, 2.0, 4.0)
    assert Config().retraining_normalizes and Config().guiding_temperature == Config().temperature
    assert split.key(PRUNED_FIELDS) == Config(normalize_logits=False, score_temperature=2.0).key(PRUNED_FIELDS)  # one pruned checkpoint
    for bad in ({"score_temperature": 0.0}, {"retrain_normalize_logits": "yes"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Config(**bad)


def test_more_scoring_batches_than_an_epoch_has_fail_before_any_work(tmp_path):
    config = Config(**{**TINY, "train_subset": 256, "batch_size": 64, "score_batches": 5})  # 256 images: 4 full batches
    with pytest.raises(ValueError, match="score_batches=5, but an epoch of 256 training images at batch size 64 has 4 full batches"):
        run(config, tmp_path)
    assert not any(tmp_path.rglob("*.pt")), "nothing was trained"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_code_commit_names_the_last_commit_that_changed_the_code_not_a_later_records_only_commit(tmp_path: Path):
    def git(*args: str) -> str:
        command = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()

    def commit_everything(message: str) -> str:
        git("add", "-A")
        git("commit", "-q", "-m", message)
        return git("rev-parse", "HEAD")

    code, runs, empty = tmp_path / "tkdlib", tmp_path / "runs", tmp_path / "empty"
    for folder in (code, runs, empty):
        folder.mkdir()
    git("init", "-q")
    (code / "module.py").write_text("x = 1\n")
    code_commit = commit_everything("code")
    (runs / "record.json").write_text("{}\n")
    assert commit_everything("a record") != code_commit
    assert _code_commit(code) == code_commit
    (code / "module.py").write_text("x = 2\n")
    assert _code_commit(code) == code_commit + "-dirty"
    assert _code_commit(empty) is None  # inside the checkout, but nothing there is tracked
