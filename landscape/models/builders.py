"""Building a model: :class:`ModelSpec` (a registry name or ``package.module:factory`` plus keyword
arguments) and :func:`build_model`.

The registry (:mod:`landscape.models.registry`) names the toolkit's models: ``mlp``, ``cnn`` (small CNN
with batch norm), CIFAR ResNet-18/34/50, WideResNet, and the MNIST-1D paper's ``mnist1d-mlp`` and
``mnist1d-cnn``; each family has its module (:mod:`~landscape.models.mlp`, :mod:`~landscape.models.cnn`,
:mod:`~landscape.models.resnet`, :mod:`~landscape.models.wrn`, :mod:`~landscape.models.mnist1d`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from landscape.errors import ModelError
from landscape.io.factories import resolve_factory
from landscape.models.cnn import SmallCNN
from landscape.models.mlp import MLP
from landscape.models.registry import MODELS, data_sized_kwargs, model_names, model_source_builder
from landscape.models.resnet import BasicBlock, Bottleneck, CifarResNet, resnet18, resnet34, resnet50
from landscape.models.wrn import WideBasic, WideResNet

# The classes stay importable from here: checkpoints and configs may name them as
# ``landscape.models.builders:MLP`` (where they lived first).
__all__ = [
    "MLP",
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "ModelSpec",
    "SmallCNN",
    "WideBasic",
    "WideResNet",
    "build_model",
    "count_parameters",
    "default_model_kwargs",
    "resnet18",
    "resnet34",
    "resnet50",
]


def default_model_kwargs(spec: ModelSpec, input_shape: Sequence[int], num_classes: int) -> ModelSpec:
    """``spec`` with the input size and class count of the data filled in where the user gave none.

    Only registry models are filled (a ``package.module:factory`` takes what it is given; see
    :func:`~landscape.models.registry.data_sized_kwargs`). Args: ``input_shape`` is one example's shape
    (``(1, 8, 8)`` for digits, ``(40,)`` for MNIST-1D).
    """
    return ModelSpec(spec.name, data_sized_kwargs(spec.name, spec.kwargs, input_shape, num_classes))


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
    """Build a model from a registry name, a Hugging Face folder (``hf:DIR``, ``hf-config:DIR``; see
    :mod:`landscape.models.huggingface`) or ``package.module:factory``, with keyword arguments."""
    if isinstance(spec, str):
        spec = ModelSpec(spec, kwargs)
    source_builder = model_source_builder(spec.name)
    if spec.name in MODELS:
        factory = MODELS[spec.name].builder
    elif source_builder is not None:
        factory = source_builder
    elif ":" in spec.name:
        factory = resolve_factory(spec.name)
    else:
        names = ", ".join(model_names())
        raise ModelError(
            f"unknown model {spec.name!r}; choose one of {names}, 'hf:DIR', 'hf-config:DIR' or give "
            "'package.module:factory'"
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
