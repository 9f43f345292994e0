"""Model registry and ``package.module:factory`` resolution.

Registry models: ``mlp``, ``cnn`` (small CNN with batch norm), CIFAR ResNet-18/34/50 (3x3 stem, no
max-pool, as in kuangliu/pytorch-cifar: ResNet-18 for CIFAR-10 has 11,173,962 parameters) and
WideResNet (Zagoruyko & Komodakis 2016; depth and width as arguments), and the MNIST-1D paper's
``mnist1d-mlp`` and ``mnist1d-cnn`` (Greydanus 2020; :mod:`landscape.models.mnist1d`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from landscape.errors import ModelError
from landscape.io.factories import resolve_factory
from landscape.models.mnist1d import MNIST1DCNN, MNIST1DMLP


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


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != 4 * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, 4 * planes, 1, stride, bias=False), nn.BatchNorm2d(4 * planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        return torch.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet with a 3x3 stem and no max-pool (He et al. 2016, CIFAR variant)."""

    def __init__(self, block: type, num_blocks: Sequence[int], num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_layer(block, 64, num_blocks[0], 1)
        self.layer2 = self._make_layer(block, 128, num_blocks[1], 2)
        self.layer3 = self._make_layer(block, 256, num_blocks[2], 2)
        self.layer4 = self._make_layer(block, 512, num_blocks[3], 2)
        self.linear = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block: type, planes: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1)
        return self.linear(out)


class WideBasic(nn.Module):
    """Pre-activation wide block (BN-ReLU-conv twice) with optional dropout."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.conv1(torch.relu(self.bn1(x))))
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + self.shortcut(x)


class WideResNet(nn.Module):
    """WRN-depth-width for 32x32 inputs; depth = 6n + 4."""

    def __init__(
        self,
        depth: int = 28,
        width: int = 10,
        num_classes: int = 10,
        dropout: float = 0.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ModelError(
                f"depth={depth} is not valid for WideResNet; it must be 6n+4 (e.g. 16, 22, 28, 40)"
            )
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        layers: list[nn.Module] = []
        cin = widths[0]
        for stage, stride in zip(range(1, 4), (1, 2, 2)):
            for i in range(n):
                layers.append(WideBasic(cin, widths[stage], stride if i == 0 else 1, dropout))
                cin = widths[stage]
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn(self.blocks(self.conv1(x))))
        return self.linear(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


def resnet18(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(BasicBlock, (2, 2, 2, 2), num_classes, in_channels)


def resnet34(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(BasicBlock, (3, 4, 6, 3), num_classes, in_channels)


def resnet50(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    return CifarResNet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels)


MODEL_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "cnn": SmallCNN,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "wrn": WideResNet,
    "mnist1d-mlp": MNIST1DMLP,
    "mnist1d-cnn": MNIST1DCNN,
}

# How each registry model learns its input size from one example's shape (without the batch axis).
_INPUT_KWARGS: dict[str, Callable[[tuple[int, ...]], dict[str, int]]] = {
    "mlp": lambda shape: {"in_features": math.prod(shape)},
    "mnist1d-mlp": lambda shape: {"in_features": math.prod(shape)},
    "mnist1d-cnn": lambda shape: {"length": shape[-1]},
    **{
        name: (lambda shape: {"in_channels": shape[0]})
        for name in ("cnn", "resnet18", "resnet34", "resnet50", "wrn")
    },
}


def default_model_kwargs(spec: ModelSpec, input_shape: Sequence[int], num_classes: int) -> ModelSpec:
    """``spec`` with the input size and class count of the data filled in where the user gave none.

    Only registry models are filled (a ``package.module:factory`` takes what it is given). Args:
    ``input_shape`` is one example's shape (``(1, 8, 8)`` for digits, ``(40,)`` for MNIST-1D).
    """
    fill = _INPUT_KWARGS.get(spec.name)
    if fill is None:
        return ModelSpec(spec.name, dict(spec.kwargs))
    defaults = {**fill(tuple(int(n) for n in input_shape)), "num_classes": int(num_classes)}
    return ModelSpec(spec.name, {**defaults, **spec.kwargs})


@dataclass
class ModelSpec:
    """How to rebuild a model: a registry name or ``package.module:factory``, plus keyword arguments."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kwargs": dict(self.kwargs)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        return cls(name=str(d["name"]), kwargs=dict(d.get("kwargs") or {}))


def build_model(spec: ModelSpec | str, **kwargs: Any) -> nn.Module:
    """Build a model from a registry name or ``package.module:factory`` with keyword arguments."""
    if isinstance(spec, str):
        spec = ModelSpec(spec, kwargs)
    if spec.name in MODEL_REGISTRY:
        factory = MODEL_REGISTRY[spec.name]
    elif ":" in spec.name:
        factory = resolve_factory(spec.name)
    else:
        names = ", ".join(MODEL_REGISTRY)
        raise ModelError(
            f"unknown model {spec.name!r}; choose one of {names} or give 'package.module:factory'"
        )
    try:
        inspect.signature(factory).bind(**spec.kwargs)
    except TypeError as exc:
        raise ModelError(f"model {spec.name!r} does not take arguments {spec.kwargs}: {exc}") from exc
    except ValueError:
        pass  # builtins without a signature: let the call decide
    try:
        model = factory(**spec.kwargs)
    except ModelError:
        raise
    except Exception as exc:  # a user's factory can fail in any way; report it in one line
        raise ModelError(f"building model {spec.name!r} with {spec.kwargs} failed: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"model factory {spec.name!r} returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
