from __future__ import annotations

import pytest
import torch
from torch import nn

from tkdlib.models import ARCHITECTURES, build_model

# Parameter counts for 10 classes as published: He et al. (2016), table 6, for the CIFAR ResNets;
# ResNet-18 with a 3×3 stride-1 stem on CIFAR-10 is the commonly cited 11.2 M (11.17 M).
PUBLISHED = {
    "resnet20": 0.27e6,
    "resnet32": 0.46e6,
    "resnet44": 0.66e6,
    "resnet56": 0.85e6,
    "resnet110": 1.7e6,
    "resnet18": 11.17e6,
}
TINYIMAGENET_ARCHS = ("resnet18", "resnet18-strided", "resnet18-strided-w32", "resnet18-strided-w16")


def parameter_count(model: nn.Module) -> int:
    return sum(param.numel() for param in model.parameters())


def input_size(arch: str) -> int:
    return 64 if arch in TINYIMAGENET_ARCHS else 32


@pytest.mark.parametrize("arch", sorted(PUBLISHED))
def test_parameter_counts_match_the_published_ones(arch):
    assert parameter_count(build_model(arch, 10)) == pytest.approx(PUBLISHED[arch], rel=0.02)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_forward_and_backward_in_channels_last(arch):
    torch.manual_seed(0)
    model = build_model(arch, 7).to(memory_format=torch.channels_last)
    size = input_size(arch)
    x = torch.randn(2, 3, size, size).contiguous(memory_format=torch.channels_last)
    logits = model(x)
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.tensor([0, 6])).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert any(param.grad.abs().sum() > 0 for param in model.parameters())


def test_vgg_has_the_conv_stack_of_its_depth_and_one_classifier():
    for arch, convs in (("vgg16-bn", 13), ("vgg19-bn", 16)):
        modules = list(build_model(arch, 10).modules())
        assert sum(isinstance(m, nn.Conv2d) for m in modules) == convs
        assert sum(isinstance(m, nn.BatchNorm2d) for m in modules) == convs
        assert [m.in_features for m in modules if isinstance(m, nn.Linear)] == [512]


@pytest.mark.parametrize(("arch", "stage1_side", "stage1_channels"), [("resnet18", 64, 64), ("resnet18-strided", 16, 64), ("resnet18-strided-w32", 16, 32), ("resnet18-strided-w16", 16, 16)])
def test_resnet18_stems_set_the_resolution_of_the_first_stage(arch, stage1_side, stage1_channels):
    model = build_model(arch, 200)
    seen = []
    model.layers[0].register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    model.eval()(torch.zeros(1, 3, 64, 64))
    assert seen == [(1, stage1_channels, stage1_side, stage1_side)]


def test_unknown_architecture_is_rejected():
    with pytest.raises(ValueError, match="Unknown architecture 'resnet19'.*resnet18-strided"):
        build_model("resnet19", 10)
