"""A small convolutional network with batch norm (registry name ``cnn``)."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Two conv blocks (conv-BN-ReLU-pool) and a linear head; works on 8x8 digits and 32x32 CIFAR."""

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, width: int = 16, batch_norm: bool = True
    ) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            mods: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm)]
            if batch_norm:
                mods.append(nn.BatchNorm2d(cout))
            return [*mods, nn.ReLU(), nn.MaxPool2d(2)]

        self.features = nn.Sequential(*block(in_channels, width), *block(width, 2 * width))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))
