"""Image classifiers of seed experiments B, C and E, in plain PyTorch (torchvision's ResNets where they fit).

All take (N, C, H, W) float input and return logits. ``build(name, ...)`` is the one entry point;
each architecture lists the options it takes, and an option it does not take is an error.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import resnet

from trainables.hyperparameters.image import ALIASES, MODEL_OPTIONS, check_options, resolve  # noqa: F401

# ----------------------------------------------------------------------------- AlexNet (32x32)


class AlexNet32(nn.Module):
    """AlexNet's five convs and three FC layers, sized for 32x32 inputs."""

    def __init__(self, in_ch: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(64, 192, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(256 * 4 * 4, 1024), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(1024, 1024), nn.ReLU(inplace=True), nn.Linear(1024, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# ----------------------------------------------------------------------------- VGG (32x32)

VGG_STAGES = {16: [2, 2, 3, 3, 3], 50: [4, 4, 13, 13, 13]}  # conv layers per stage; + 3 FC layers


class VGG32(nn.Module):
    """VGG with a chosen kernel size and depth; no batch norm by default, as in the seed's VGG-50 study."""

    def __init__(
        self, in_ch: int, num_classes: int, dropout: float, depth: int, kernel_size: int, batch_norm: bool
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        widths = [64, 128, 256, 512, 512]
        for width, n in zip(widths, VGG_STAGES[depth]):
            for _ in range(n):
                layers.append(nn.Conv2d(in_ch, width, kernel_size, padding=kernel_size // 2))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.ReLU(inplace=True))
                in_ch = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(512, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(4096, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# ----------------------------------------------------------------------------- Inception (GoogLeNet, 32x32)


def conv_bn(in_ch: int, out_ch: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, k, padding=k // 2, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(True))


class InceptionBlock(nn.Module):
    """Four branches: 1x1, 3x3, 5x5, pool; ``reduce`` puts 1x1 convs before the 3x3 and 5x5 and after the pool."""

    def __init__(self, in_ch: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int, reduce: bool) -> None:
        super().__init__()
        self.b1 = conv_bn(in_ch, c1, 1)
        self.b3 = nn.Sequential(conv_bn(in_ch, c3r, 1), conv_bn(c3r, c3, 3)) if reduce else conv_bn(in_ch, c3, 3)
        self.b5 = nn.Sequential(conv_bn(in_ch, c5r, 1), conv_bn(c5r, c5, 5)) if reduce else conv_bn(in_ch, c5, 5)
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_bn(in_ch, pool, 1) if reduce else nn.Identity())
        self.out_ch = c1 + c3 + c5 + (pool if reduce else in_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


class Inception32(nn.Module):
    """A small GoogLeNet: 9 inception blocks (22 layers deep) or 23 (50 layers), pooling after blocks 2 and 7."""

    def __init__(self, in_ch: int, num_classes: int, dropout: float, depth: int, reduce_1x1: bool) -> None:
        super().__init__()
        n_blocks = {22: 9, 50: 23}[depth]
        self.stem = conv_bn(in_ch, 32, 3)
        blocks: list[nn.Module] = []
        ch = 32
        pool_after = {1, n_blocks * 2 // 3}
        for i in range(n_blocks):
            # narrow branches: without the 1x1 reductions the pool branch passes all input channels through,
            # so widths stay fixed and the output width is capped by a 1x1 transition conv.
            block = InceptionBlock(ch, 32, 32, 48, 8, 16, 16, reduce_1x1)
            blocks.append(block)
            ch = block.out_ch
            if not reduce_1x1:
                blocks.append(conv_bn(ch, 64, 1))
                ch = 64
            if i in pool_after:
                blocks.append(nn.MaxPool2d(2))
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(ch, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


# ----------------------------------------------------------------------------- ResNet (torchvision, 32x32)


def resnet32(depth: int, in_ch: int, num_classes: int) -> nn.Module:
    """torchvision's ResNet-18/50/101 with the CIFAR stem: a 3x3 stride-1 first conv and no max-pool."""
    model = {18: resnet.resnet18, 50: resnet.resnet50, 101: resnet.resnet101}[depth](num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_ch, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


# ----------------------------------------------------------------------------- MNIST models (seed E)


class MnistModel1(nn.Module):
    """2 conv, 1 max-pool, 2 FC."""

    def __init__(self, in_ch: int, num_classes: int, dropout: float, size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(), nn.MaxPool2d(2)
        )
        flat = 32 * ((size - 4) // 2) ** 2
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, 176), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(176, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MnistModel2(nn.Module):
    """4 conv, 2 max-pool, 2 FC."""

    def __init__(self, in_ch: int, num_classes: int, dropout: float, size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        flat = 64 * (size // 4) ** 2
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, 50), nn.ReLU(), nn.Linear(50, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm and a skip connection (a 1x1 projection when the shape changes)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.skip = (
            nn.Identity()
            if stride == 1 and in_ch == out_ch
            else nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.skip(x))


class MnistModel3(nn.Module):
    """5 conv (a stem and two residual blocks), 1 max-pool, 2 FC."""

    def __init__(self, in_ch: int, num_classes: int, dropout: float, size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            BasicBlock(32, 32), nn.MaxPool2d(2), BasicBlock(32, 48),
        )  # fmt: skip
        flat = 48 * (size // 2) ** 2
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(flat, 40), nn.ReLU(), nn.Linear(40, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


# ----------------------------------------------------------------------------- character ResNets (seed C)


class CharResNet(nn.Module):
    """The seed's 10-minute model: 7x7 stride-2 conv, max-pool, residual stages, dropout, linear head.

    ``blocks`` per stage: [1] or [1, 1] is the light model (one or two stages, 64 -> 128 channels);
    [1, 1, 1, 1] and [2, 2, 2, 2] are the heavier ResNet-18-style stacks. ``width`` scales every stage;
    ``extra_channels`` adds one more stage of that width (the seed's +128 / +256 blocks).
    """

    def __init__(
        self, in_ch: int, num_classes: int, dropout: float, blocks: list[int], width: float, extra_channels: int
    ) -> None:
        super().__init__()
        widths = [max(8, int(c * width)) for c in (64, 128, 256, 512)[: len(blocks)]]
        if extra_channels:
            widths.append(extra_channels)
            blocks = [*blocks, 1]
        self.stem = nn.Sequential(
            nn.Conv2d(in_ch, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(True),
            nn.MaxPool2d(3, 2, 1),
        )  # fmt: skip
        stages: list[nn.Module] = []
        ch = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                stages.append(BasicBlock(ch, w, stride=2 if i > 0 and j == 0 else 1))
                ch = w
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(ch, num_classes)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


# ----------------------------------------------------------------------------- the registry of architectures

# name -> builder(in_ch, num_classes, dropout, size, **the options it takes); the options and their allowed
# values, the aliases, and the checks are in trainables/hyperparameters/image.py (no torch there).
BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "alexnet": lambda c, k, d, s: AlexNet32(c, k, d),
    "vgg": lambda c, k, d, s, depth=16, kernel_size=3, batch_norm=False: VGG32(c, k, d, depth, kernel_size, batch_norm),
    "inception": lambda c, k, d, s, depth=22, reduce_1x1=True: Inception32(c, k, d, depth, reduce_1x1),
    "resnet": lambda c, k, d, s, depth=18: resnet32(depth, c, k),
    "mnist1": lambda c, k, d, s: MnistModel1(c, k, d, s),
    "mnist2": lambda c, k, d, s: MnistModel2(c, k, d, s),
    "mnist3": lambda c, k, d, s: MnistModel3(c, k, d, s),
    "char-resnet": lambda c, k, d, s, blocks=(1, 1), width=1.0, extra_channels=0: CharResNet(
        c, k, d, list(blocks), width, extra_channels
    ),
}


def build(model: str, in_ch: int, num_classes: int, dropout: float, size: int, **options: Any) -> nn.Module:
    check_options(model, options)
    model, options = resolve(model, options)
    return BUILDERS[model](in_ch, num_classes, dropout, size, **options)
