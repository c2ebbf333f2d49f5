from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune

from tkdlib.masks import HeldMask, LayerCollapseError, Mask, global_mask, prunable_parameters
from tkdlib.models import build_model
from tkdlib.scoring import magnitude


def random_scores(seed: int, shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.rand(shape, generator=generator) for name, shape in shapes.items()}


SHAPES = {"a.weight": (4, 3, 3, 3), "b.weight": (10, 4), "c.weight": (7,)}


@settings(max_examples=60, deadline=None)
@given(sparsity=st.floats(0.0, 0.999), seed=st.integers(0, 10_000), tie=st.booleans())
def test_global_mask_keeps_exactly_k(sparsity: float, seed: int, tie: bool):
    scores = random_scores(seed, SHAPES)
    if tie:
        scores = {name: (score * 4).floor() for name, score in scores.items()}  # many ties
    total = sum(s.numel() for s in scores.values())
    mask = global_mask(scores, sparsity, allow_layer_collapse=True)
    assert mask.kept == round((1 - sparsity) * total)
    assert mask.total == total


def test_global_mask_with_all_equal_scores_keeps_exactly_k():
    scores = {name: torch.ones(shape) for name, shape in SHAPES.items()}
    mask = global_mask(scores, 0.5, allow_layer_collapse=True)
    assert mask.kept == round(0.5 * mask.total)


def test_global_mask_keeps_the_highest_scores():
    scores = {"x": torch.tensor([5.0, 1.0, 3.0]), "y": torch.tensor([[4.0, 0.0], [2.0, 6.0]])}
    mask = global_mask(scores, 4 / 7)
    assert mask["x"].tolist() == [True, False, False]
    assert mask["y"].tolist() == [[True, False], [False, True]]


def test_excluded_layers_stay_out_of_ranking_and_mask():
    scores = random_scores(0, SHAPES)
    mask = global_mask(scores, 0.5, exclude=["c.weight"])
    assert set(mask) == {"a.weight", "b.weight"}
    assert mask.total == 108 + 40


def test_layer_collapse_is_an_error_unless_allowed():
    scores = {"big": torch.full((100,), 10.0), "small": torch.full((5,), 0.1)}
    with pytest.raises(LayerCollapseError, match="small"):
        global_mask(scores, 0.5)
    assert global_mask(scores, 0.5, allow_layer_collapse=True).layer_report()[1]["kept"] == 0


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, float("nan"), "0.5"])
def test_bad_sparsity_is_rejected(sparsity):
    with pytest.raises(ValueError, match="sparsity"):
        global_mask(random_scores(0, SHAPES), sparsity)


def test_non_finite_scores_are_rejected():
    scores = random_scores(0, SHAPES)
    scores["b.weight"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="b.weight"):
        global_mask(scores, 0.5)


def test_mask_rejects_non_bool_and_foreign_shapes():
    with pytest.raises(TypeError, match="bool"):
        Mask({"fc.weight": torch.ones(3, 3)})
    model = build_model("resnet20", 10)
    with pytest.raises(ValueError, match="not a parameter"):
        Mask({"nope.weight": torch.ones(3, dtype=torch.bool)}).check_fits(model)
    with pytest.raises(ValueError, match="shape"):
        Mask({"fc.weight": torch.ones(3, 3, dtype=torch.bool)}).check_fits(model)


def test_mask_save_load_round_trip(tmp_path):
    mask = global_mask(random_scores(3, SHAPES), 0.7)
    mask.save(tmp_path / "mask.pt")
    loaded = Mask.load(tmp_path / "mask.pt")
    assert set(loaded) == set(mask) and all(torch.equal(loaded[k], mask[k]) for k in mask)
    assert (tmp_path / "mask.pt.json").read_text().count('"density"') == len(mask)


def test_prunable_parameters_and_exclusions():
    model = build_model("resnet20", 10)
    names = list(prunable_parameters(model))
    assert names[0] == "conv1.weight" and names[-1] == "fc.weight" and len(names) == 20
    trimmed = list(prunable_parameters(model, prune_first_layer=False, prune_classifier=False))
    assert trimmed == names[1:-1]


def test_pruned_weights_stay_zero_through_momentum_and_weight_decay():
    torch.manual_seed(0)
    model = build_model("resnet20", 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    for _ in range(3):  # build up non-zero momentum for every weight before pruning
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    mask = global_mask(magnitude(prunable_parameters(model)), 0.8)
    with HeldMask(model, mask, optimizer):
        for _ in range(50):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    parameters = dict(model.named_parameters())
    for name, keep in mask.items():
        assert torch.all(parameters[name][~keep] == 0), name
        assert torch.any(parameters[name][keep] != 0), name


def test_holding_a_mask_keeps_state_dict_keys_and_module_classes():
    model = build_model("resnet20", 10)
    keys, classes = list(model.state_dict()), [type(m) for m in model.modules()]
    held = HeldMask(model, global_mask(magnitude(prunable_parameters(model)), 0.5))
    assert list(model.state_dict()) == keys and [type(m) for m in model.modules()] == classes
    held.remove()


def test_mask_matches_torch_prune_custom_from_mask():
    model = build_model("resnet20", 10)
    mask = global_mask(magnitude(prunable_parameters(model)), 0.9)
    reference = build_model("resnet20", 10)
    reference.load_state_dict(model.state_dict())
    HeldMask(model, mask).remove()
    modules = dict(reference.named_modules())
    for name, keep in mask.items():
        prune.custom_from_mask(modules[name.removesuffix(".weight")], "weight", keep)
    weights = dict(model.named_parameters())
    for name in mask:
        torch.testing.assert_close(getattr(modules[name.removesuffix(".weight")], "weight"), weights[name].detach())


def test_channels_last_model_masks_where_torch_prune_global_unstructured_fails():
    model = build_model("resnet20", 10).to(memory_format=torch.channels_last)
    layers = [(m, "weight") for m in model.modules() if isinstance(m, nn.Conv2d)]
    with pytest.raises(RuntimeError):
        prune.global_unstructured(layers, pruning_method=prune.L1Unstructured, amount=0.9)
    model = build_model("resnet20", 10).to(memory_format=torch.channels_last)
    parameters = prunable_parameters(model)
    mask = global_mask(magnitude(parameters), 0.9)
    with HeldMask(model, mask):
        model(torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)).sum().backward()
    kept = sum(int((p != 0).sum()) for p in parameters.values())
    assert kept == mask.kept == round(0.1 * mask.total)
    for name, param in parameters.items():
        assert torch.equal(param != 0, mask[name]), name
        assert param.grad is not None and torch.all(param.grad[~mask[name]] == 0), name


def test_channels_last_weights_stay_zero_and_the_held_mask_shares_their_layout():
    torch.manual_seed(0)
    model = build_model("resnet20", 10).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    x = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (8,))
    for _ in range(2):  # momentum for every weight before pruning
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    mask = global_mask(magnitude(prunable_parameters(model)), 0.9)
    with HeldMask(model, mask, optimizer) as held:
        for param, keep in held._pairs:
            assert keep.dtype == param.dtype and keep.stride() == param.stride()
        for _ in range(5):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    parameters = dict(model.named_parameters())
    for name, keep in mask.items():
        assert torch.all(parameters[name][~keep] == 0) and torch.all(parameters[name].grad[~keep] == 0), name
        assert torch.any(parameters[name][keep] != 0), name


# The per-layer floor: a layer whose weights score low keeps its best ones; k stays exact.
FLOOR_SHAPES = {"wide.weight": (40, 10), "narrow.weight": (6, 5), "tiny.weight": (3,)}


def _scores_with_a_weak_layer(seed: int, weakness: float) -> dict[str, torch.Tensor]:
    """Random scores in which ``narrow`` scores `weakness` times lower than the others."""
    scores = random_scores(seed, FLOOR_SHAPES)
    return {**scores, "narrow.weight": scores["narrow.weight"] * weakness}


@settings(max_examples=80, deadline=None)
@given(
    sparsity=st.floats(0.5, 0.98),
    layer_floor=st.floats(0.001, 0.05),
    seed=st.integers(0, 10_000),
    weakness=st.sampled_from([1.0, 0.1, 1e-4]),
    tie=st.booleans(),
)
def test_layer_floor_keeps_exactly_k_and_no_layer_empty(sparsity, layer_floor, seed, weakness, tie):
    scores = _scores_with_a_weak_layer(seed, weakness)
    if tie:
        scores = {name: (score * 4).floor() for name, score in scores.items()}
    total = sum(score.numel() for score in scores.values())
    floors = sum(min(score.numel(), max(1, math.ceil(layer_floor * score.numel()))) for score in scores.values())
    if floors > round((1 - sparsity) * total):
        with pytest.raises(ValueError, match="lower the floor or the sparsity"):
            global_mask(scores, sparsity, layer_floor=layer_floor)
        return
    mask = global_mask(scores, sparsity, layer_floor=layer_floor)
    assert mask.kept == round((1 - sparsity) * total)
    for layer in mask.layer_report():
        assert layer["kept"] >= min(layer["total"], max(1, math.ceil(layer_floor * layer["total"])))
    plain = global_mask(scores, sparsity, allow_layer_collapse=True)
    if all(layer["kept"] >= max(1, math.ceil(layer_floor * layer["total"])) for layer in plain.layer_report()):
        assert all(torch.equal(mask[name], plain[name]) for name in scores)  # nobody under the floor: today's mask


def test_layer_floor_keeps_a_layers_best_weights_and_the_global_best_elsewhere():
    scores = _scores_with_a_weak_layer(0, 1e-4)
    with pytest.raises(LayerCollapseError, match="layer_floor"):
        global_mask(scores, 0.9)  # narrow's 30 weights all rank below the 43 kept
    mask = global_mask(scores, 0.9, layer_floor=0.05)  # narrow keeps ceil(0.05 · 30) = 2, its best two
    narrow = scores["narrow.weight"]
    assert mask["narrow.weight"].sum() == 2 and torch.equal(mask["narrow.weight"], narrow >= narrow.flatten().topk(2).values.min())
    others = torch.cat([scores[name].flatten() for name in ("wide.weight", "tiny.weight")])
    kept = torch.cat([mask[name].flatten() for name in ("wide.weight", "tiny.weight")])
    assert others[kept].min() > others[~kept].max()  # the rest is the global ranking


def test_a_floor_above_what_the_sparsity_leaves_is_refused():
    with pytest.raises(ValueError, match="lower the floor or the sparsity"):
        global_mask(_scores_with_a_weak_layer(0, 1e-4), 0.99, layer_floor=0.5)
    with pytest.raises(ValueError, match=r"layer_floor .* \[0, 1\)"):
        global_mask(random_scores(0, FLOOR_SHAPES), 0.9, layer_floor=1.0)
