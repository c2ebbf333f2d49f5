from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from tkdlib.losses import DistillationLoss, ca_kld, kd_kl, measure_gamma, normalize_logits


def logits(seed: int, batch: int = 16, classes: int = 10, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(batch, classes, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def test_kd_kl_is_hintons_kd():
    s, t, temperature = logits(0), logits(1), 4.0
    expected = F.kl_div(F.log_softmax(s / temperature, -1), F.softmax(t / temperature, -1), reduction="batchmean") * temperature**2
    torch.testing.assert_close(kd_kl(s, t, temperature), expected)


def test_ca_kld_without_normalization_and_gamma_zero_is_kd():
    s, t = logits(2), logits(3)
    torch.testing.assert_close(ca_kld(s, t, 3.0, gamma=0.0, normalize=False), kd_kl(s, t, 3.0))


def test_ca_kld_with_gamma_one_is_reverse_kl_of_normalized_logits():
    s, t, temperature = logits(4), logits(5), 2.0

    def zscore(z: torch.Tensor) -> torch.Tensor:
        centred = z - z.mean(-1, keepdim=True)
        return centred / (centred.pow(2).mean(-1, keepdim=True).sqrt() + 1e-7)

    p_s = F.softmax(zscore(s) / temperature, -1)
    p_t = F.softmax(zscore(t) / temperature, -1)
    reverse = (p_s * (p_s.log() - p_t.log())).sum(-1).mean() * temperature**2
    torch.testing.assert_close(ca_kld(s, t, temperature, gamma=1.0), reverse)


def test_ca_kld_mixes_the_two_directions_linearly():
    s, t = logits(6), logits(7)
    forward = ca_kld(s, t, 4.0, gamma=0.0)
    reverse = ca_kld(s, t, 4.0, gamma=1.0)
    torch.testing.assert_close(ca_kld(s, t, 4.0, gamma=0.3), 0.3 * reverse + 0.7 * forward)


@settings(max_examples=40, deadline=None)
@given(scale=st.floats(0.1, 20.0), shift=st.floats(-50.0, 50.0), gamma=st.floats(0.0, 1.0), seed=st.integers(0, 1000))
def test_normalized_ca_kld_ignores_student_scale_and_offset(scale: float, shift: float, gamma: float, seed: int):
    s, t = logits(seed), logits(seed + 1)
    torch.testing.assert_close(ca_kld(scale * s + shift, t, 4.0, gamma), ca_kld(s, t, 4.0, gamma), rtol=1e-6, atol=1e-8)


def test_normalize_logits_gives_zero_mean_unit_population_std():
    z = normalize_logits(logits(8))
    torch.testing.assert_close(z.mean(-1), torch.zeros(16, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(z.std(-1, correction=0), torch.ones(16, dtype=torch.float64), atol=1e-6, rtol=0)


def test_losses_are_zero_when_student_equals_teacher_and_per_sample_shape():
    t = logits(9)
    assert ca_kld(t.clone(), t, 4.0, 0.5).abs() < 1e-12
    assert ca_kld(logits(10), t, 4.0, 0.5, reduction="none").shape == (16,)


def test_teacher_receives_no_gradient():
    s = logits(11).requires_grad_()
    t = logits(12).requires_grad_()
    ca_kld(s, t, 4.0, 0.5).backward()
    assert s.grad is not None and t.grad is None


def test_joint_loss_weights_distillation_and_cross_entropy():
    s, t, y = logits(13), logits(14), torch.arange(16) % 10
    loss = DistillationLoss(alpha=0.25, temperature=4.0, gamma=0.6)
    expected = 0.25 * ca_kld(s, t, 4.0, 0.6) + 0.75 * F.cross_entropy(s, y)
    torch.testing.assert_close(loss(s, t, y), expected)
    torch.testing.assert_close(DistillationLoss(0.0, 4.0, 0.6)(s, t, y), F.cross_entropy(s, y))


@pytest.mark.parametrize(
    "kwargs, message",
    [({"alpha": 1.5}, "alpha"), ({"gamma": -0.1}, "gamma"), ({"temperature": 0.0}, "temperature"), ({"alpha": float("nan")}, "alpha")],
)
def test_joint_loss_rejects_bad_hyperparameters(kwargs, message):
    values = {"alpha": 0.5, "temperature": 4.0, "gamma": 0.5, **kwargs}
    with pytest.raises(ValueError, match=message):
        DistillationLoss(**values)


def test_mismatched_logits_are_rejected():
    with pytest.raises(ValueError, match="logits"):
        ca_kld(logits(0, classes=10), logits(1, classes=100), 4.0, 0.5)


def test_measure_gamma_is_mean_top_class_probability_and_restores_mode(tiny_net, tiny_batches):
    tiny_net.train()
    gamma = measure_gamma(tiny_net, tiny_batches)
    tiny_net.eval()
    with torch.no_grad():
        expected = torch.cat([F.softmax(tiny_net(x), -1).max(-1).values for x, _ in tiny_batches]).mean()
    assert gamma == pytest.approx(float(expected))
    tiny_net.train()
    measure_gamma(tiny_net, tiny_batches)
    assert tiny_net.training
