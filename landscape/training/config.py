"""The settings of a training run: ``TrainConfig``, its checks, and the values a run actually uses.

A run records what it uses, not what was typed: :func:`resolve_config` returns a copy of the settings
with the model's input size and class count taken from the data, the method's default radius ``rho``
and every option default of the optimizer filled in (see
:func:`~landscape.optim.factory.resolve_options`). ``config.json`` and every checkpoint hold those.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from torch.utils.data import Dataset

from landscape.data.datasets import DataSpec, input_shape, num_classes
from landscape.errors import ConfigError, check_choice, check_positive
from landscape.models.builders import ModelSpec, default_model_kwargs
from landscape.models.registry import MODELS
from landscape.objective.losses import checkpoint_loss  # noqa: F401  (re-exported by landscape.training)
from landscape.optim.factory import resolve_options, run_option_defaults
from landscape.optim.registry import optimizer_names
from landscape.training.recipes import SCHEDULES
from landscape.training.sharpness_tracking import DEFAULT_TRACK_SAMPLES

#: ``gd``: full-batch gradient descent, torch's SGD stepped once per epoch on the gradient of the
#: whole training set (:mod:`landscape.training.full_batch`); the other names are :mod:`landscape.optim.factory`'s.
FULL_BATCH = "gd"


def train_optimizer_names() -> tuple[str, ...]:
    """The optimizers a run takes: the registry's (read now, so later registrations count) and ``gd``."""
    return (*optimizer_names(), FULL_BATCH)


#: :func:`train_optimizer_names` when this module was imported (the choices of ``landscape train``).
TRAIN_OPTIMIZERS: tuple[str, ...] = train_optimizer_names()

#: Optimizers whose gradient ``clip_grad_norm`` does not clip, and why.
_UNCLIPPED = {
    FULL_BATCH: "its one full-batch gradient is taken outside the training step",
    "sgd-hess": "its Hessian probe differentiates the gradient, which clipping would change",
}

#: How the examples are ordered, recorded in ``config.json`` (:mod:`landscape.training.batches`).
DATA_ORDER_SHUFFLED = "epoch e: torch.randperm(N) drawn with seed * 1000003 + e"
DATA_ORDER_FULL_BATCH = "full batch: every example in every step"
#: Seed key of the augmentation draws of an epoch: ``derived_seed(seed, epoch, AUGMENT_KEY)``.
AUGMENT_KEY = 1


def factory_name(optimizer: str) -> str:
    """The :func:`~landscape.optim.factory.make_optimizer` name behind a training optimizer name."""
    return "sgd" if optimizer == FULL_BATCH else optimizer


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
    loss: str = "cross-entropy"
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    augment: bool = False
    eval_every: int = 1
    track_sharpness: int | None = None
    track_top_k: int = 1
    track_samples: int | None = None
    track_overlap: bool = False
    clip_grad_norm: float | None = None

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
        check_choice("optimizer", self.optimizer, train_optimizer_names())
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
        self._validate_recipe()
        self._validate_tracking()

    def _validate_recipe(self) -> None:
        check_choice("schedule", self.schedule, SCHEDULES)
        check_positive("warmup_epochs", self.warmup_epochs, allow_zero=True)
        if self.warmup_epochs >= self.epochs:
            raise ConfigError(
                f"warmup_epochs={self.warmup_epochs!r} must be smaller than epochs={self.epochs!r}"
            )
        _check_integer("eval_every", self.eval_every)
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing={self.label_smoothing!r} must be in [0, 1)")
        if self.label_smoothing > 0 and self.loss != "cross-entropy":
            raise ConfigError(
                f"label_smoothing={self.label_smoothing!r} applies to loss='cross-entropy' only, not "
                f"loss={self.loss!r}; set label_smoothing=0 or use the cross-entropy loss"
            )
        self._validate_clipping()
        if self.augment and self.optimizer == FULL_BATCH:
            raise ConfigError(
                "augment=True does not fit optimizer='gd' (full-batch descent on a fixed training set); "
                "turn augment off or use a stochastic optimizer"
            )

    def _validate_clipping(self) -> None:
        if self.clip_grad_norm is None:
            return
        if isinstance(self.clip_grad_norm, bool) or not isinstance(self.clip_grad_norm, (int, float)):
            raise ConfigError(f"clip_grad_norm={self.clip_grad_norm!r} must be a positive number or None")
        check_positive("clip_grad_norm", self.clip_grad_norm)
        if self.optimizer in _UNCLIPPED:
            raise ConfigError(
                f"clip_grad_norm={self.clip_grad_norm!r} is not supported with optimizer={self.optimizer!r} "
                f"({_UNCLIPPED[self.optimizer]}); set clip_grad_norm=None or use another optimizer"
            )

    def _validate_tracking(self) -> None:
        if self.track_sharpness is None:
            return
        _check_integer("track_sharpness", self.track_sharpness)
        _check_integer("track_top_k", self.track_top_k)
        if self.track_samples is not None:
            _check_integer("track_samples", self.track_samples)


def resolve_config(config: TrainConfig, train_data: Dataset) -> TrainConfig:
    """A copy of ``config`` with what the run uses filled in; ``config`` itself is not changed.

    Filled in: the model's ``in_features``/``in_channels`` and ``num_classes`` from ``train_data``
    (where the registry model takes them and they were not given), ``rho`` and the optimizer options
    (:func:`~landscape.optim.factory.resolve_options`, over the run's own defaults such as the
    ``sgd-hess`` probe seed, :func:`~landscape.optim.factory.run_option_defaults`).
    """
    name = factory_name(config.optimizer)
    given = {**run_option_defaults(name, seed=config.seed), **config.optimizer_kwargs}
    rho, options = resolve_options(name, rho=config.rho, **given)
    track_samples = None
    if config.track_sharpness is not None:
        available = len(train_data)  # type: ignore[arg-type]
        wanted = config.track_samples if config.track_samples is not None else DEFAULT_TRACK_SAMPLES
        track_samples = min(int(wanted), available)
    return replace(
        config,
        model=_model_with_data_sizes(config.model, train_data),
        rho=rho,
        optimizer_kwargs=options,
        track_samples=track_samples,
    )


def _check_integer(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r} must be an integer >= 1")


def _model_with_data_sizes(spec: ModelSpec, train_data: Dataset) -> ModelSpec:
    """Fill input size and class count from the data when the user did not give them (the registry
    models sized in training, :mod:`landscape.models.registry`)."""
    entry = MODELS.get(spec.name)
    if entry is None or entry.input_kwargs is None or not entry.sized_in_training:
        return ModelSpec(spec.name, dict(spec.kwargs))
    return default_model_kwargs(spec, input_shape(train_data), num_classes(train_data))


def recorded_settings(config: TrainConfig, dtype_name: str) -> dict[str, Any]:
    """What ``config.json`` holds for a resolved ``config``: its fields, the dtype and the data order,
    as JSON reads back."""
    order = DATA_ORDER_FULL_BATCH if config.optimizer == FULL_BATCH else DATA_ORDER_SHUFFLED
    return json_plain({**config.to_dict(), "dtype": dtype_name, "data_order": order})


def resolve_saved_settings(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved ``config.json`` with ``rho`` and the optimizer options resolved as this version records them.

    Runs written before resolved values were recorded (``"rho": null``) or before the recipe,
    loss and tracking settings existed (they take the defaults those runs had) still resume.
    """
    kwargs = saved.get("optimizer_kwargs")
    name = saved.get("optimizer")
    if not isinstance(kwargs, dict) or name not in train_optimizer_names():
        return saved  # damaged or foreign: compares unequal and is reported as other settings
    name = factory_name(name)
    given = {**run_option_defaults(name, seed=saved.get("seed", 0)), **kwargs}
    rho, options = resolve_options(name, rho=saved.get("rho"), **given)
    defaults = {k: v for k, v in TrainConfig().to_dict().items() if k in _ADDED_LATER}
    order = DATA_ORDER_FULL_BATCH if saved.get("optimizer") == FULL_BATCH else DATA_ORDER_SHUFFLED
    return json_plain({**defaults, "data_order": order, **saved, "rho": rho, "optimizer_kwargs": options})


#: Settings that runs recorded before recipes, losses and tracking existed lack (their defaults held).
_ADDED_LATER = frozenset(
    {
        "loss",
        "schedule",
        "warmup_epochs",
        "label_smoothing",
        "augment",
        "eval_every",
        "track_sharpness",
        "clip_grad_norm",
        "track_top_k",
        "track_samples",
        "track_overlap",
    }
)


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
    if config.schedule != "constant" or config.warmup_epochs:
        h.update(schedule=config.schedule, warmup_epochs=config.warmup_epochs)
    if config.label_smoothing:
        h["label_smoothing"] = config.label_smoothing
    if config.augment:
        h["augment"] = True
    scalar = (int, float, str, bool)
    for k, v in config.optimizer_kwargs.items():
        if isinstance(v, scalar) or (isinstance(v, (list, tuple)) and all(isinstance(e, scalar) for e in v)):
            h[k] = list(v) if isinstance(v, tuple) else v
    return h
