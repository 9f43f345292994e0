"""What the optimizer registry knows about one optimizer, and the usual way to build one.

An :class:`OptimizerEntry` names a ``torch.optim.Optimizer`` class and says how the factory
(:func:`~landscape.optim.factory.make_optimizer`) treats it: its default radius (``None``: it has none),
the options filled in before the class's own keyword defaults, whether the class's defaults are
recorded, whether it is Adam-type (its state holds ``exp_avg_sq``, the diagonal preconditioner of
:mod:`landscape.hessian.precond`), what it needs from a training run, and how to build it. Most
classes take ``(params, lr=..., momentum=..., weight_decay=..., rho=...)`` or a subset, and
:func:`standard_build` builds those; the others bring a builder of their own.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class BuildRequest:
    """What :func:`~landscape.optim.factory.make_optimizer` hands an entry's builder.

    Attributes:
        model: the model to train.
        params: its trainable parameters.
        lr: learning rate.
        momentum: SGD-style momentum (builders of methods without one ignore it).
        weight_decay: weight decay.
        rho: the resolved radius, ``None`` for a method without one.
        options: the resolved method options (a new dict the builder may consume).
    """

    model: nn.Module
    params: list[Tensor]
    lr: float
    momentum: float
    weight_decay: float
    rho: float | None
    options: dict[str, Any]


Builder = Callable[[type, BuildRequest], torch.optim.Optimizer]
RunArguments = Callable[[Dataset, LossFn], dict[str, Any]]


def standard_build(cls: type, request: BuildRequest) -> torch.optim.Optimizer:
    """``cls(params, lr=lr, **options)`` plus ``momentum``, ``weight_decay`` and ``rho`` where ``cls``
    takes them (``rho`` only for a method with a radius), as torch's own optimizers are built."""
    accepted = inspect.signature(cls).parameters
    hyper: dict[str, Any] = {"lr": request.lr}
    if "momentum" in accepted:
        hyper["momentum"] = request.momentum
    if "weight_decay" in accepted:
        hyper["weight_decay"] = request.weight_decay
    if request.rho is not None and "rho" in accepted:
        hyper["rho"] = request.rho
    return cls(request.params, **hyper, **request.options)


@dataclass(frozen=True)
class OptimizerEntry:
    """One optimizer of the registry.

    Attributes:
        name: the name ``make_optimizer``, ``landscape train --optimizer`` and the sweep take.
        cls: the optimizer class (``is_adaptive`` and ``resolve_options`` read it).
        default_rho: the radius used when none is given; ``None``: the method has no radius.
        defaults: options filled in (before the class's keyword defaults) when not given.
        record_class_defaults: record every keyword default of ``cls`` in the resolved options
            (``False`` for torch's optimizers, whose defaults belong to the installed torch).
        adaptive: an Adam-type optimizer whose state holds ``exp_avg_sq`` (a diagonal preconditioner).
        extra_options: options the builder consumes that are not parameters of ``cls``.
        run_seed_option: an option that a training run fills with its own seed when not given.
        run_arguments: objects (not hyperparameters) a training run passes, from its data and loss.
        build: how to build it from a :class:`BuildRequest` (:func:`standard_build` by default).
    """

    name: str
    cls: type
    default_rho: float | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    record_class_defaults: bool = True
    adaptive: bool = False
    extra_options: tuple[str, ...] = ()
    run_seed_option: str | None = None
    run_arguments: RunArguments | None = None
    build: Builder = standard_build

    @property
    def takes_rho(self) -> bool:
        """Whether the method has a radius."""
        return self.default_rho is not None
