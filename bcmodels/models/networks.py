"""The study's two networks, layer for layer as its code built them (docs/study.md): trained from scratch."""

from __future__ import annotations

import torch
from torch import nn


class SimpleCNN(nn.Module):
    """The study's simple CNN: two conv/pool blocks, then three fully connected layers."""

    def __init__(self, *, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = image_size // 4  # two 2x2 poolings
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * side * side, 512),
            nn.ReLU(),
            nn.Dropout(0.25),
            nn.Linear(512, 128),
            nn.ReLU(),
            nn.Dropout(0.25),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _separable_block(cin: int, cout: int, stride: int) -> nn.Sequential:
    # The study's block: depthwise 3x3 (carrying the stride), pointwise 1x1, then a single BN + ReLU.
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin),
        nn.Conv2d(cin, cout, 1),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class StudyMobileNet(nn.Module):
    """The study's own "MobileNet" (not torchvision's): a stem, four separable blocks, a 1024-wide head."""

    def __init__(self, *, num_classes: int, image_size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            _separable_block(32, 64, 1),
            _separable_block(64, 128, 2),
            _separable_block(128, 128, 1),
            _separable_block(128, 256, 2),
        )
        side = image_size
        for _ in range(3):  # three stride-2 convolutions, each ceil(side / 2) with padding 1
            side = (side + 1) // 2
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(256 * side * side, 1024),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(1024, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
