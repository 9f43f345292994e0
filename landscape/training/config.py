"""The settings of a training run: ``TrainConfig``, its checks, and the values a run actually uses.

A run records what it uses, not what was typed: :func:`resolve_config` returns a copy of the settings
with the model's input size and class count taken from the data, the method's default radius ``rho``
and every option default of the optimizer filled in (see
:func:`~landscape.optim.factory.resolve_options`). ``config.json`` and every checkpoint hold those.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from torch.utils.data import Dataset

from landscape.errors import ConfigError, check_choice, check_positive
from landscape.io.data import DataSpec, input_shape, num_classes
from landscape.io.models import ModelSpec
from landscape.optim.factory import OPTIMIZER_NAMES, resolve_options, run_option_defaults

#: Registry models whose first layer is convolutional: ``in_channels`` comes from the data.
_CONV_MODELS = ("cnn", "resnet18", "resnet34", "resnet50", "wrn")


@dataclass
class TrainConfig:
    """Everything that determines a run (saved as ``config.json``)."""

    model: ModelSpec = field(default_factory=lambda: ModelSpec("cnn", {}))
    data: DataSpec = field(default_factory=DataSpec)
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    rho: float | None = None
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 64
    epochs: int = 10
    seed: int = 0
    save_every: int = 1
    eval_batch_size: int = 512

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        d["data"] = self.data.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        d["model"] = ModelSpec.from_dict(d["model"])
        d["data"] = DataSpec.from_dict(d["data"])
        return cls(**d)

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the first setting out of range (by its field name)."""
        check_choice("optimizer", self.optimizer, OPTIMIZER_NAMES)
        check_positive("lr", self.lr)
        check_positive("epochs", self.epochs)
        check_positive("batch_size", self.batch_size)
        check_positive("save_every", self.save_every)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_positive("eval_batch_size", self.eval_batch_size)
        if self.rho is not None:
            check_positive("rho", self.rho, allow_zero=True)
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum={self.momentum!r} must be in [0, 1)")


def resolve_config(config: TrainConfig, train_data: Dataset) -> TrainConfig:
    """A copy of ``config`` with what the run uses filled in; ``config`` itself is not changed.

    Filled in: the model's ``in_features``/``in_channels`` and ``num_classes`` from ``train_data``
    (where the registry model takes them and they were not given), ``rho`` and the optimizer options
    (:func:`~landscape.optim.factory.resolve_options`, over the run's own defaults such as the
    ``sgd-hess`` probe seed, :func:`~landscape.optim.factory.run_option_defaults`).
    """
    given = {**run_option_defaults(config.optimizer, seed=config.seed), **config.optimizer_kwargs}
    rho, options = resolve_options(config.optimizer, rho=config.rho, **given)
    return replace(
        config,
        model=_model_with_data_sizes(config.model, train_data),
        rho=rho,
        optimizer_kwargs=options,
    )


def _model_with_data_sizes(spec: ModelSpec, train_data: Dataset) -> ModelSpec:
    """Fill input size and class count from the data when the user did not give them."""
    kwargs = dict(spec.kwargs)
    shape = input_shape(train_data)
    classes = num_classes(train_data)
    if spec.name == "mlp":
        kwargs.setdefault("in_features", int(math.prod(shape)))
        kwargs.setdefault("num_classes", classes)
    elif spec.name in _CONV_MODELS:
        kwargs.setdefault("in_channels", int(shape[0]))
        kwargs.setdefault("num_classes", classes)
    return ModelSpec(spec.name, kwargs)


def recorded_settings(config: TrainConfig, dtype_name: str) -> dict[str, Any]:
    """What ``config.json`` holds for a resolved ``config``: its fields and the dtype, as JSON reads back."""
    return json_plain({**config.to_dict(), "dtype": dtype_name})


def resolve_saved_settings(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved ``config.json`` with ``rho`` and the optimizer options resolved as this version records them.

    Runs written before resolved values were recorded (``"rho": null``) still resume.
    """
    kwargs = saved.get("optimizer_kwargs")
    name = saved.get("optimizer")
    if not isinstance(kwargs, dict) or name not in OPTIMIZER_NAMES:
        return saved  # damaged or foreign: compares unequal and is reported as other settings
    given = {**run_option_defaults(name, seed=saved.get("seed", 0)), **kwargs}
    rho, options = resolve_options(name, rho=saved.get("rho"), **given)
    return json_plain({**saved, "rho": rho, "optimizer_kwargs": options})


def json_plain(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as it reads back from JSON (tuples become lists), so saved and new settings compare."""
    try:
        return json.loads(json.dumps(obj))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"the settings must be JSON values to be recorded in config.json ({exc}); pass options as "
            "numbers, strings, booleans or lists"
        ) from None


def checkpoint_hparams(config: TrainConfig) -> dict[str, Any]:
    """The optimizer's resolved hyperparameters for the checkpoints (JSON values only)."""
    h: dict[str, Any] = {
        "lr": config.lr,
        "momentum": config.momentum,
        "weight_decay": config.weight_decay,
        "batch_size": config.batch_size,
        "epochs": config.epochs,
    }
    if config.rho is not None:
        h["rho"] = config.rho
    scalar = (int, float, str, bool)
    for k, v in config.optimizer_kwargs.items():
        if isinstance(v, scalar) or (isinstance(v, (list, tuple)) and all(isinstance(e, scalar) for e in v)):
            h[k] = list(v) if isinstance(v, tuple) else v
    return h
