"""Architectures, by name (`ARCHITECTURES`, `build_model`); every model maps images
(B, 3, H, W) to logits (B, num_classes).

- ``resnet20/32/44/56/110``: CIFAR ResNets, He et al. (2016), section 4.2: three stages of 3×3
  basic blocks with 16, 32 and 64 channels, depth 6n + 2, parameter-free "option A" shortcuts
  (strided identity, zero-padded channels) where the shape changes. For 32×32 inputs.
- ``vgg16-bn``, ``vgg19-bn``: VGG with BatchNorm, CIFAR variant (one linear classifier). For 32×32.
- ``resnet18``, ``resnet18-strided``, ``resnet18-strided-w32``, ``resnet18-strided-w16``: ResNet-18
  for 64×64 TinyImageNet, with a stride-1 stem (the paper-style model), a stride-2 stem + max-pool
  (trainable on a CPU), and the latter at half and quarter width (base 32 / 16 channels: CPU-sized
  teachers and students whose checkpoints fit the repository's limits).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F


class ShortcutA(nn.Module):
    """Option A shortcut: subsample by `stride` and zero-pad the new channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.extra_channels // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra_channels - half))


class ShortcutB(nn.Sequential):
    """Option B shortcut: a strided 1×1 convolution and BatchNorm projecting to the new shape."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    """Two 3×3 conv–BN layers with a residual connection; where the shape changes, the shortcut is
    option A (parameter-free, CIFAR ResNets) or, with `projection`, option B (ResNet-18)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, projection: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = (ShortcutB if projection else ShortcutA)(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


def _stages(in_channels: int, widths: tuple[int, ...], blocks_per_stage: int, first_stride: int, projection: bool) -> nn.Sequential:
    """Stages of basic blocks, one stage per width; every stage but the first halves the resolution."""
    layers: list[nn.Module] = []
    for stage, out_channels in enumerate(widths):
        for block in range(blocks_per_stage):
            stride = (2 if stage > 0 else first_stride) if block == 0 else 1
            layers.append(BasicBlock(in_channels, out_channels, stride, projection))
            in_channels = out_channels
    return nn.Sequential(*layers)


def _kaiming_init(model: nn.Module) -> None:
    """He-normal initialization of every conv and linear weight (BatchNorm keeps weight 1, bias 0)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight)


def _classify(features: torch.Tensor, fc: nn.Linear) -> torch.Tensor:
    """Global average pooling of (B, C, H, W) features, then the linear classifier: (B, classes)."""
    return fc(F.adaptive_avg_pool2d(features, 1).flatten(1))


class CifarResNet(nn.Module):
    """ResNet of depth 6n + 2 for 32×32 inputs: stages of 16, 32, 64 channels (times width / 16),
    option A shortcuts. Parameters for 10 classes: ResNet-20 269,722; -32 464,154; -44 658,586;
    -56 853,018; -110 1,727,962 (He et al. report 0.27 M, 0.46 M, 0.66 M, 0.85 M, 1.7 M)."""

    def __init__(self, depth: int, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layers = _stages(width, (width, 2 * width, 4 * width), (depth - 2) // 6, first_stride=1, projection=False)
        self.fc = nn.Linear(4 * width, num_classes)
        _kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _classify(self.layers(F.relu(self.bn1(self.conv1(x)), inplace=True)), self.fc)


class ResNet18(nn.Module):
    """ResNet-18 (He et al. 2016: four stages of two basic blocks, option B shortcuts) for 64×64
    TinyImageNet inputs; logits (B, num_classes). Any input size works (global average pooling).

    stem ``"full"``: a 3×3 stride-1 convolution, no max-pool, so stage 1 runs at 64×64 (the
    CIFAR-style stem common in distillation and pruning papers). stem ``"strided"``: a 3×3 stride-2
    convolution and a 3×3 stride-2 max-pool, so stage 1 runs at 16×16: 16× fewer multiply-adds,
    trainable on a 2-core CPU. width: channels of stage 1 (doubled at each stage); 64 is standard.
    Parameters for 200 classes: width 64, 11,271,432 (either stem); width 32, 2,846,440; width 16, 725,976.
    """

    def __init__(self, num_classes: int = 200, stem: str = "full", width: int = 64) -> None:
        super().__init__()
        if stem not in ("full", "strided"):
            raise ValueError(f"stem must be 'full' or 'strided', got {stem!r}")
        stride = 1 if stem == "full" else 2
        self.conv1 = nn.Conv2d(3, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.pool = nn.Identity() if stem == "full" else nn.MaxPool2d(3, stride=2, padding=1)
        self.layers = _stages(width, (width, 2 * width, 4 * width, 8 * width), 2, first_stride=1, projection=True)
        self.fc = nn.Linear(8 * width, num_classes)
        _kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _classify(self.layers(self.pool(F.relu(self.bn1(self.conv1(x)), inplace=True))), self.fc)


VGG_LAYERS: dict[int, tuple[int | str, ...]] = {
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


class VGG(nn.Module):
    """VGG-16 or VGG-19 with BatchNorm, CIFAR variant (as in open_lth, SNIP, GraSP, SynFlow): the
    3×3 conv–BN–ReLU stack with five 2×2 max-pools, global average pooling, and a single linear
    classifier 512 → num_classes (no 4096-wide hidden layers). Inputs (B, 3, 32, 32), logits
    (B, num_classes). Parameters for 10 classes: VGG-16 14,724,042; VGG-19 20,035,018
    (the conv layers have no bias: BatchNorm follows each).
    """

    def __init__(self, depth: int, num_classes: int = 10) -> None:
        super().__init__()
        if depth not in VGG_LAYERS:
            raise ValueError(f"VGG depth must be one of {sorted(VGG_LAYERS)}, got {depth}")
        layers: list[nn.Module] = []
        in_channels = 3
        for item in VGG_LAYERS[depth]:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(in_channels, item, 3, padding=1, bias=False), nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
                in_channels = item
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(in_channels, num_classes)
        _kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _classify(self.features(x), self.fc)


ARCHITECTURES: dict[str, Callable[[int], nn.Module]] = {
    **{f"resnet{depth}": functools.partial(CifarResNet, depth) for depth in (20, 32, 44, 56, 110)},
    "vgg16-bn": functools.partial(VGG, 16),
    "vgg19-bn": functools.partial(VGG, 19),
    "resnet18": functools.partial(ResNet18, stem="full"),
    "resnet18-strided": functools.partial(ResNet18, stem="strided"),
    "resnet18-strided-w32": functools.partial(ResNet18, stem="strided", width=32),  # CPU-sized TinyImageNet networks
    "resnet18-strided-w16": functools.partial(ResNet18, stem="strided", width=16),
}


def build_model(arch: str, num_classes: int) -> nn.Module:
    """A fresh, randomly initialized model `arch` with `num_classes` outputs."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {arch!r}; choose one of {', '.join(sorted(ARCHITECTURES))}.")
    return ARCHITECTURES[arch](num_classes)
