"""Tiny float64 models for the connectivity tests: an MLP, the registry's CNN (batch norm), a residual net."""

from __future__ import annotations

import torch
from torch import nn

from landscape.data.datasets import DataSpec
from landscape.models.builders import ModelSpec, build_model
from landscape.models.checkpoints import save_checkpoint


class TinyResNet(nn.Module):
    """conv-BN-ReLU stem, one identity residual block, one projection block, linear head."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(width)
        self.c1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(width)
        self.c2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(width)
        self.c3 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.short = nn.Conv2d(width, 2 * width, 1, stride=2)
        self.head = nn.Linear(2 * width * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn0(self.stem(x)))
        x = torch.relu(x + self.b2(self.c2(torch.relu(self.b1(self.c1(x))))))
        x = torch.relu(self.c3(x) + self.short(x))
        return self.head(torch.flatten(x, 1))


def tiny_resnet(width: int = 4) -> TinyResNet:
    return TinyResNet(width)


MODELS = {
    "mlp": ("mlp", {"hidden": [12, 10]}),
    "cnn": ("cnn", {"width": 4}),
}


def make_model(kind: str, seed: int) -> nn.Module:
    """A float64 model with random weights and (for batch norm) non-trivial statistics."""
    torch.manual_seed(seed)
    if kind == "resnet":
        model: nn.Module = TinyResNet(4)
    else:
        name, kwargs = MODELS[kind]
        model = build_model(name, **kwargs)
    model = model.double().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return model


def save(path, kind: str, model: nn.Module):
    name, kwargs = MODELS[kind]
    save_checkpoint(path, model, model_spec=ModelSpec(name, dict(kwargs)), data_spec=DataSpec("digits"))
    return path
