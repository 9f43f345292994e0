"""A fully connected network on flattened inputs (registry name ``mlp``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from landscape.errors import ModelError


class MLP(nn.Module):
    """Fully connected network on flattened inputs: Linear -> act -> ... -> Linear."""

    def __init__(
        self,
        in_features: int = 64,
        hidden: Sequence[int] = (32, 32),
        num_classes: int = 10,
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "softplus": nn.Softplus}
        if activation not in acts:
            raise ModelError(f"activation={activation!r} is not valid; choose one of {', '.join(acts)}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, int(h)), acts[activation]()]
            width = int(h)
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
