from __future__ import annotations

import pytest
import torch

from tkdlib.losses import DistillationLoss
from tkdlib.masks import prunable_parameters
from tkdlib.scoring import METHODS, ScoringInputs, ce_gradient, magnitude, score, teacher_guided
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
    inputs = ScoringInputs(tiny_net, prunable_parameters(tiny_net), tiny_batches, 3, make_distill())
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
