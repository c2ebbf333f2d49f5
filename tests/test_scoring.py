from __future__ import annotations

import pytest
import torch

from tkdlib.losses import DistillationLoss
from tkdlib.masks import prunable_parameters
from tkdlib.masks import global_mask
from tkdlib.scoring import GRASP_TEMPERATURE, METHODS, ScoringInputs, ce_gradient, gradient_saliency, grasp, layer_statistics, magnitude, random, score, snip, synflow, teacher_guided
from tkdlib.train import Distill

from conftest import TinyNet


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def make_distill() -> Distill:
    torch.manual_seed(5)
    return Distill(TinyNet(), DistillationLoss(alpha=0.7, temperature=4.0, gamma=0.4))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_scoring_leaves_model_unchanged(method, tiny_net, tiny_batches):
    tiny_net.eval()
    before = snapshot(tiny_net)
    inputs = ScoringInputs(tiny_net, prunable_parameters(tiny_net), tiny_batches, 3, make_distill(), 0.5, (3, 8, 8), seed=1)
    scores = score(method, inputs)
    after = snapshot(tiny_net)
    assert set(scores) == {"conv.weight", "fc.weight"}
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN running stats, bitwise
    assert not tiny_net.training
    assert all(p.grad is None for p in tiny_net.parameters())


def test_teacher_guided_equals_independent_saliency(tiny_net, tiny_batches):
    distill = make_distill()
    reference = TinyNet()
    reference.load_state_dict(tiny_net.state_dict())
    expected = {"conv.weight": torch.zeros(6, 3, 3, 3), "fc.weight": torch.zeros(4, 6)}
    for x, y in tiny_batches[:2]:
        reference.train()
        with torch.no_grad():
            t = distill.teacher(x)
        loss = distill.loss(reference(x), t, y)
        grads = torch.autograd.grad(loss, [reference.conv.weight, reference.fc.weight])
        expected["conv.weight"] += (reference.conv.weight * grads[0]).abs().detach()
        expected["fc.weight"] += (reference.fc.weight * grads[1]).abs().detach()
        reference.load_state_dict(tiny_net.state_dict())  # BN stats as the scorer sees them: unchanged
    scores = teacher_guided(tiny_net, prunable_parameters(tiny_net), tiny_batches, distill, score_batches=2)
    for name in expected:
        torch.testing.assert_close(scores[name], expected[name])


def test_teacher_changes_the_ranking(tiny_net, tiny_batches):
    parameters = prunable_parameters(tiny_net)
    guided = teacher_guided(tiny_net, parameters, tiny_batches, make_distill(), 3)
    plain = ce_gradient(tiny_net, parameters, tiny_batches, 3)
    assert not torch.allclose(guided["conv.weight"], plain["conv.weight"])


def test_magnitude_is_absolute_weight(tiny_net):
    scores = magnitude(prunable_parameters(tiny_net))
    torch.testing.assert_close(scores["fc.weight"], tiny_net.fc.weight.detach().abs())


def test_scoring_rejects_bad_requests(tiny_net, tiny_batches):
    parameters = prunable_parameters(tiny_net)
    with pytest.raises(ValueError, match="score_batches"):
        ce_gradient(tiny_net, parameters, tiny_batches, 0)
    with pytest.raises(ValueError, match="only 3"):
        ce_gradient(tiny_net, parameters, tiny_batches, 5)
    with pytest.raises(ValueError, match="teacher"):
        score("teacher_guided", ScoringInputs(tiny_net, parameters, tiny_batches, 1))
    with pytest.raises(ValueError, match="Unknown scoring method"):
        score("oracle", ScoringInputs(tiny_net, parameters, tiny_batches, 1))


class TwoLayerMLP(torch.nn.Module):
    """x (B, 6) → tanh(W1 x + b1) → W2 h + b2, 3 classes: small enough to differentiate by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(6, 5)
        self.out = torch.nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(x.flatten(1))))


def mlp_and_batches():
    torch.manual_seed(3)
    model = TwoLayerMLP()
    generator = torch.Generator().manual_seed(4)
    batches = [(torch.randn(7, 6, generator=generator), torch.randint(0, 3, (7,), generator=generator)) for _ in range(2)]
    return model, batches


def loss_of_weights(model, batches, temperature=1.0):
    """CE summed over batches as a function of (W1, W2), via torch.func.functional_call."""
    def loss(w1, w2):
        params = {**dict(model.named_parameters()), "hidden.weight": w1, "out.weight": w2}
        return sum(
            torch.nn.functional.cross_entropy(torch.func.functional_call(model, params, (x,)) / temperature, y) for x, y in batches
        )
    return loss


def test_snip_is_abs_weight_times_summed_gradient():
    model, batches = mlp_and_batches()
    w1, w2 = model.hidden.weight.detach(), model.out.weight.detach()
    g1, g2 = torch.func.grad(loss_of_weights(model, batches), argnums=(0, 1))(w1, w2)
    scores = snip(model, prunable_parameters(model), batches, 2)
    torch.testing.assert_close(scores["hidden.weight"], (w1 * g1).abs())
    torch.testing.assert_close(scores["out.weight"], (w2 * g2).abs())


def test_grasp_is_weight_times_hessian_gradient_product():
    model, batches = mlp_and_batches()
    w1, w2 = model.hidden.weight.detach(), model.out.weight.detach()
    loss = loss_of_weights(model, batches, temperature=GRASP_TEMPERATURE)
    g = torch.func.grad(loss, argnums=(0, 1))(w1, w2)
    _, hg = torch.autograd.functional.hvp(loss, (w1, w2), g)
    scores = grasp(model, prunable_parameters(model), batches, 2)
    torch.testing.assert_close(scores["hidden.weight"], w1 * hg[0], rtol=1e-4, atol=1e-12)
    torch.testing.assert_close(scores["out.weight"], w2 * hg[1], rtol=1e-4, atol=1e-12)


def test_synflow_single_round_is_abs_weight_times_flow_gradient():
    model, _ = mlp_and_batches()
    w1, w2 = model.hidden.weight.detach().double(), model.out.weight.detach().double()
    b1, b2 = model.hidden.bias.detach().double().abs(), model.out.bias.detach().double().abs()

    def flow(a1, a2):
        return (a2.abs() @ torch.tanh(a1.abs() @ torch.ones(6, dtype=torch.float64) + b1) + b2).sum()

    g1, g2 = torch.func.grad(flow, argnums=(0, 1))(w1, w2)
    expected = {"hidden.weight": (w1 * g1).abs(), "out.weight": (w2 * g2).abs()}
    scores = synflow(model, prunable_parameters(model), (6,), sparsity=0.5, rounds=1)
    kept = global_mask(scores, 0.5)
    reference = global_mask(expected, 0.5)
    assert all(torch.equal(kept[name], reference[name]) for name in kept)


def test_synflow_iterative_mask_has_exact_sparsity():
    model, _ = mlp_and_batches()
    scores = synflow(model, prunable_parameters(model), (6,), sparsity=0.8, rounds=10)
    assert global_mask(scores, 0.8, allow_layer_collapse=True).kept == round(0.2 * 45)


def test_random_scores_are_seeded():
    parameters = prunable_parameters(TinyNet())
    first, again, other = random(parameters, 3), random(parameters, 3), random(parameters, 4)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["conv.weight"], other["conv.weight"])


def test_magnitude_mask_equals_torch_prune_global_l1_on_resnet20():
    from torch.nn.utils import prune

    from tkdlib.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet20", 10)
    mask = global_mask(magnitude(prunable_parameters(model)), 0.9)
    modules = dict(model.named_modules())
    layers = [(modules[name.removesuffix(".weight")], "weight") for name in mask]
    prune.global_unstructured(layers, pruning_method=prune.L1Unstructured, amount=0.9)
    for name in mask:
        assert torch.equal(getattr(modules[name.removesuffix(".weight")], "weight_mask").bool(), mask[name]), name


def test_saliency_forms_of_the_study_from_per_batch_gradients(tiny_net, tiny_batches):
    """Our extensions: the teacher's loss in SNIP's form |w ⊙ Σ g_b| and in the Fisher form ½ Σ (w ⊙ g_b)²."""
    distill = make_distill()
    parameters = prunable_parameters(tiny_net)
    summed = {name: torch.zeros_like(p) for name, p in parameters.items()}
    fisher = {name: torch.zeros_like(p) for name, p in parameters.items()}
    reference = TinyNet()
    for x, y in tiny_batches[:2]:
        reference.load_state_dict(tiny_net.state_dict())
        reference.train()
        mine = prunable_parameters(reference)
        grads = torch.autograd.grad(distill.loss(reference(x), distill.teacher(x).detach(), y), list(mine.values()))
        for (name, weight), grad in zip(mine.items(), grads):
            summed[name] += grad
            fisher[name] += 0.5 * (weight.detach() * grad) ** 2
    inputs = ScoringInputs(tiny_net, parameters, tiny_batches, 2, distill)
    for name, weight in parameters.items():
        torch.testing.assert_close(score("teacher_snip", inputs)[name], (weight.detach() * summed[name]).abs())
        torch.testing.assert_close(score("teacher_fisher", inputs)[name], fisher[name])
    with pytest.raises(ValueError, match="saliency form"):
        gradient_saliency(tiny_net, parameters, tiny_batches, make_distill(), 2, form="second")


def test_layer_statistics_give_each_layers_share_of_the_summed_score():
    scores = {"a": torch.tensor([1.0, 2.0, 3.0]), "b": torch.tensor([[0.0, 4.0]])}
    stats = layer_statistics(scores)
    assert [layer["name"] for layer in stats] == ["a", "b"]
    assert stats[0] == {"name": "a", "mean": 2.0, "median": 2.0, "max": 3.0, "share": 0.6}
    assert stats[1]["share"] == 0.4 and stats[1]["max"] == 4.0
