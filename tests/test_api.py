"""The public API (`tkdlib.prune`, `tkdlib.retrain`, `tkdlib.Mask`) on models the project did not
write, masks travelling to and from torch.nn.utils.prune, and the `prune` / `report` commands."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

import tkdlib
from tkdlib import api, shared_networks
from tkdlib.__main__ import main
from tkdlib.config import Config
from tkdlib.losses import DistillationLoss, measure_gamma
from tkdlib.masks import Mask, global_mask, prunable_parameters
from tkdlib.experiment import run
from tkdlib.models import build_model
from tkdlib.profile import load_profile
from tkdlib.scoring import METHODS, ScoringInputs, magnitude, score
from tkdlib.train import Distill

from conftest import TINY_PROFILE, TinyNet

LAYERS = ["conv.weight", "depthwise.weight", "grouped.weight", "conv1d.weight", "fc.weight"]


class Mixed(nn.Module):
    """(B, 3, 8, 8) → Conv2d → BN → depthwise Conv2d → grouped 1×1 Conv2d → Conv1d over the 64
    positions → mean → Linear: logits (B, classes)."""

    def __init__(self, width: int = 8, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.depthwise = nn.Conv2d(width, width, 3, padding=1, groups=width)
        self.grouped = nn.Conv2d(width, width, 1, groups=2)
        self.conv1d = nn.Conv1d(width, width, 3, padding=1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))
        h = torch.relu(self.grouped(self.depthwise(h)))
        h = torch.relu(self.conv1d(h.flatten(2)))
        return self.fc(h.mean(dim=-1))


def mixed(seed: int = 0, **kwargs: int) -> Mixed:
    torch.manual_seed(seed)
    return Mixed(**kwargs)


def teacher() -> TinyNet:
    torch.manual_seed(7)
    return TinyNet()


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def test_prune_is_teacher_guided_scoring_and_a_global_mask(tiny_batches):
    student, reference = mixed(), mixed()
    dense = snapshot(student)
    mask = tkdlib.prune(student, teacher(), tiny_batches, sparsity=0.75, score_batches=2)
    assert list(mask) == LAYERS
    assert mask.kept == round(0.25 * mask.total) and mask.total == 216 + 72 + 32 + 192 + 32
    # The same mask from the scorer and global_mask called directly, γ measured as documented.
    gamma = measure_gamma(teacher(), tiny_batches)
    distill = Distill(teacher(), DistillationLoss(Config.alpha, Config.temperature, gamma))
    inputs = ScoringInputs(reference, prunable_parameters(reference), tiny_batches, 2, distill, 0.75)
    expected = global_mask(score("teacher_guided", inputs), 0.75)
    assert all(torch.equal(mask[name], expected[name]) for name in LAYERS)
    # Pruned weights are zero in the student; everything else is untouched.
    for name, value in student.state_dict().items():
        if name in mask:
            assert torch.equal(value, dense[name] * mask[name]), name
        else:
            assert torch.equal(value, dense[name]), name


def test_exclude_by_name_or_predicate(tiny_batches):
    student = mixed()
    fc = student.fc.weight.detach().clone()
    mask = tkdlib.prune(student, None, tiny_batches, 0.5, "magnitude", exclude=["fc.weight"])
    assert list(mask) == LAYERS[:-1] and torch.equal(student.fc.weight, fc)
    mask = tkdlib.prune(mixed(), None, tiny_batches, 0.5, "magnitude", exclude=lambda name: name.startswith("conv"))
    assert list(mask) == ["depthwise.weight", "grouped.weight", "fc.weight"]
    with pytest.raises(ValueError, match=r"nope\.weight"):
        tkdlib.prune(mixed(), None, tiny_batches, 0.5, "magnitude", exclude=["nope.weight"])


def test_a_teacher_free_method_leaves_the_teacher_alone(tiny_batches):
    given = teacher().train()
    tkdlib.prune(mixed(), given, tiny_batches, 0.5, "magnitude")
    assert given.training and all(param.requires_grad for param in given.parameters())


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_gives_the_exact_sparsity(method, tiny_batches):
    student = mixed()
    mask = tkdlib.prune(student, teacher(), tiny_batches, sparsity=0.6, method=method, score_batches=2)
    assert mask.kept == round(0.4 * mask.total)
    zeros = sum(int((param == 0).sum()) for param in prunable_parameters(student).values())
    assert zeros == mask.total - mask.kept


def test_a_generator_of_batches_is_read_once_and_used_for_guiding(tiny_batches):
    student, reference = mixed(), mixed()
    mask = tkdlib.prune(student, teacher(), (batch for batch in tiny_batches), 0.5, guide_epochs=1, score_batches=2)
    assert mask.kept == round(0.5 * mask.total)
    kept = student.fc.weight[mask["fc.weight"]]
    assert not torch.equal(kept, reference.fc.weight[mask["fc.weight"]])  # fine-tuned before pruning


def test_mask_to_torch_prune_and_back_is_identical(tiny_batches):
    original = mixed()
    mask = global_mask(magnitude(prunable_parameters(original)), 0.7)
    handed = copy.deepcopy(original)
    mask.to_torch_prune(handed)
    assert hasattr(handed.depthwise, "weight_orig") and hasattr(handed.conv1d, "weight_mask")
    back = Mask.from_torch_prune(handed)
    assert list(back) == list(mask) and all(torch.equal(back[name], mask[name]) for name in mask)
    mask.apply(original)
    x = tiny_batches[0][0]
    assert torch.equal(original.eval()(x), handed.eval()(x))


def test_mask_from_a_model_pruned_by_torch(tiny_batches):
    model = mixed()
    dense = snapshot(model)
    torch_prune.l1_unstructured(model.fc, "weight", amount=0.5)
    torch_prune.random_unstructured(model.depthwise, "weight", amount=0.3)
    mask = Mask.from_torch_prune(model)
    assert list(mask) == ["depthwise.weight", "fc.weight"]
    assert torch.equal(mask["fc.weight"], model.fc.weight_mask.bool())
    fresh = mixed()
    fresh.load_state_dict(dense)
    mask.apply(fresh)
    x = tiny_batches[0][0]
    assert torch.equal(fresh.eval()(x), model.eval()(x))
    linear = nn.Linear(4, 3)
    torch_prune.l1_unstructured(linear, "weight", amount=0.5)
    assert list(Mask.from_torch_prune(linear)) == ["weight"]
    with pytest.raises(ValueError, match="no torch.nn.utils.prune masks"):
        Mask.from_torch_prune(mixed())


def test_saved_mask_in_a_fresh_model_gives_bitwise_identical_outputs(tmp_path, tiny_batches):
    pruned = mixed(seed=3)
    mask = tkdlib.prune(pruned, teacher(), tiny_batches, sparsity=0.5, score_batches=2)
    mask.save(tmp_path / "mask.pt")
    fresh = mixed(seed=3)
    tkdlib.Mask.load(tmp_path / "mask.pt").apply(fresh)
    x = torch.cat([x for x, _ in tiny_batches])
    assert torch.equal(pruned.eval()(x), fresh.eval()(x))
    assert json.loads((tmp_path / "mask.pt.json").read_text())["sparsity"] == mask.sparsity


def test_a_mask_for_another_model_names_the_first_mismatch(tiny_batches):
    mask = tkdlib.prune(mixed(width=8), None, tiny_batches, 0.5, "magnitude")
    wider = mixed(width=16)
    message = re.escape("'conv.weight' has shape (8, 3, 3, 3) but the model's parameter 'conv.weight' has shape (16, 3, 3, 3)")
    for use in (mask.apply, mask.to_torch_prune, lambda model: tkdlib.retrain(model, None, tiny_batches, mask, epochs=1)):
        with pytest.raises(ValueError, match=message):
            use(wider)
    assert not hasattr(wider.conv, "weight_orig")
    torch_pruned = mixed()
    mask.to_torch_prune(torch_pruned)
    with pytest.raises(ValueError, match="Mask.from_torch_prune"):
        mask.apply(torch_pruned)


def batches_with(x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x, y)] * 3


X = torch.randn(8, 3, 8, 8)
Y = torch.arange(8) % 4


@pytest.mark.parametrize(
    "student, teacher_model, batches, options, message",
    [
        (Mixed(), Mixed(classes=10), batches_with(X, Y), {}, "teacher has 10 outputs but the student has 4"),
        (Mixed(), TinyNet(), batches_with(X, Y[:, None]), {}, r"labels must have shape \(B,\)"),
        (Mixed(), TinyNet(), batches_with(X, nn.functional.one_hot(Y, 4).float()), {}, "one-hot"),
        (Mixed(), TinyNet(), batches_with(X, Y[:6]), {}, r"inputs have shape \(8, 3, 8, 8\) but labels \(6,\)"),
        (Mixed(), TinyNet(), batches_with(X, Y.int()), {}, "int64"),
        (Mixed(), TinyNet(), batches_with(X, Y + 1), {}, r"labels must lie in \[0, 4\).*labels 1 to 4"),
        (Mixed(), TinyNet(), [(X, Y, Y)] * 3, {}, r"pair \(x, y\)"),
        (Mixed(), TinyNet(), [], {}, "batches is empty"),
        (Mixed(), TinyNet(), batches_with(X, Y), {"sparsity": 1.0}, "sparsity"),
        (Mixed(), TinyNet(), batches_with(X, Y), {"sparsity": -0.1}, "sparsity"),
        (Mixed(), None, batches_with(X, Y), {}, "need a teacher"),
        (Mixed(), TinyNet(), batches_with(X, Y), {"method": "imp"}, "Unknown method"),
        (Mixed(), TinyNet(), batches_with(X, Y), {"score_batches": 4}, "score_batches is 4 but batches holds 3"),
        (Mixed(), TinyNet(), batches_with(X, Y), {"exclude": ["bn.weight"]}, "not prunable weights"),
    ],
)
def test_bad_inputs_fail_before_any_work(student, teacher_model, batches, options, message, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("work started before the inputs were checked")

    for name in ("fit", "score", "measure_gamma"):
        monkeypatch.setattr(api, name, no_work)
    before = snapshot(student)
    with pytest.raises(ValueError, match=message):
        tkdlib.prune(student, teacher_model, batches, **{"guide_epochs": 1, "score_batches": 2, **options})
    assert all(torch.equal(before[name], value) for name, value in student.state_dict().items())


def test_retrain_holds_the_mask_with_and_without_teacher(tiny_batches):
    for teacher_model in (teacher(), None):
        student = mixed()
        mask = tkdlib.prune(student, teacher_model, tiny_batches, 0.7, "magnitude")
        pruned = snapshot(student)
        history = tkdlib.retrain(student, teacher_model, tiny_batches, mask, epochs=2, lr=0.05, eval_batches=tiny_batches)
        assert [row["epoch"] for row in history] == [1, 2] and 0 <= history[-1]["test_accuracy"] <= 1
        for name, keep in mask.items():
            weight = student.state_dict()[name]
            assert torch.all(weight[~keep] == 0), name
            assert not torch.equal(weight[keep], pruned[name][keep]), name


def test_cli_report_prints_overall_and_per_layer_density(tmp_path, tiny_batches, capsys):
    mask = tkdlib.prune(mixed(), None, tiny_batches, 0.7, "magnitude")
    mask.save(tmp_path / "mask.pt")
    assert main(["report", str(tmp_path / "mask.pt")]) == 0
    out = capsys.readouterr().out
    assert f"density {1 - mask.sparsity:.4f}, sparsity {mask.sparsity:.4f}" in out
    for layer in mask.layer_report():
        assert re.search(rf"^{re.escape(layer['name'])} .* {layer['density']:.4f}$", out, re.MULTILINE), layer["name"]
    (tmp_path / "not-a-mask.pt").write_text("hello")
    assert main(["report", str(tmp_path / "not-a-mask.pt")]) == 2
    assert "not a mask written by Mask.save" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_prune_runs_a_config_file_with_flags_on_top(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(
        'dataset = "cifar10-sample"\ntrain_subset = 128\nbatch_size = 64\nteacher_arch = "resnet20"\n'
        "teacher_epochs = 1\nstudent_epochs = 1\nguide_epochs = 1\nretrain_epochs = 1\n"
        "score_batches = 1\ncalibration_batches = 1\nsparsity = 0.9\n"
    )
    assert main(["prune", "--config", str(config), "--sparsity", "0.5", "--out-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    directory = next((tmp_path / "runs").glob("*/record.json")).parent
    for name in ("record.json", "mask.pt", "model.pt"):
        assert str(directory / name) in out and (directory / name).is_file()
    record = json.loads((directory / "record.json").read_text())
    assert record["config"]["sparsity"] == 0.5 and record["config"]["train_subset"] == 128
    model = build_model("resnet20", 10)
    model.load_state_dict(torch.load(directory / "model.pt", weights_only=True))
    mask = Mask.load(directory / "mask.pt")
    parameters = dict(model.named_parameters())
    assert all(torch.all(parameters[name][~keep] == 0) for name, keep in mask.items())
    assert f"retrained {record['accuracy']['retrained']:.4f}" in out


@pytest.mark.parametrize(
    "toml, flags, message",
    [
        ("sparsity = 0.9\n", ["--sparsity", "1.5"], "sparsity"),
        ("sparsty = 0.9\n", [], "Unknown config fields"),
        ("sparsity = \n", [], "Invalid value"),
        ("", ["--method", "oracle"], "Unknown method 'oracle'"),
    ],
)
def test_cli_prune_config_errors_exit_2_without_traceback(tmp_path, capsys, toml, flags, message):
    config = tmp_path / "run.toml"
    config.write_text(toml)
    assert main(["prune", "--config", str(config), *flags, "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == [config]


@pytest.mark.parametrize("command", ["prune", "report"])
def test_cli_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"python -m tkdlib {command} " in capsys.readouterr().out


def test_cli_checkpoints_trains_the_shared_networks_once_and_runs_then_reuse_them(tmp_path, capsys, monkeypatch):
    profile = tmp_path / "tiny.toml"
    profile.write_text(TINY_PROFILE)
    out_dir = tmp_path / "runs"
    assert main(["checkpoints", "--profile", str(profile), "--out-dir", str(out_dir), "--seed", "5"]) == 2
    assert "no cell of tiny has seed 5" in capsys.readouterr().err
    assert main(["checkpoints", "--profile", str(profile), "--out-dir", str(out_dir), "--phase", "teacher"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 and printed[0].startswith("teacher ") and "sha256" in printed[0]
    assert not list((out_dir / "checkpoints").glob("student-*"))
    assert main(["checkpoints", "--profile", str(profile), "--out-dir", str(out_dir)]) == 0  # the teacher is verified, the student trained
    assert len(list((out_dir / "checkpoints").glob("teacher-*.pt"))) == 1 and list((out_dir / "checkpoints").glob("student-*.pt"))

    def no_shared_training(model, batches, schedule, *args, phase="train", **kwargs):
        assert phase not in ("teacher", "dense"), f"the {phase} checkpoint was trained again"
        return original_fit(model, batches, schedule, *args, phase=phase, **kwargs)

    original_fit = shared_networks.fit
    monkeypatch.setattr(shared_networks, "fit", no_shared_training)
    config = load_profile(profile).configs()[1]  # magnitude
    assert run(config, out_dir)["status"] == "finished"
