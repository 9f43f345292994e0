"""Helpers shared by the optimizers: validation, closures, exact state sharing with a base optimizer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from landscape.errors import ConfigError, LandscapeError

Closure = Callable[..., Tensor]


def check_range(name: str, value: float, lo: float, hi: float, *, hi_inclusive: bool = False) -> None:
    """Raise ``ConfigError`` unless ``lo <= value < hi`` (``<= hi`` with ``hi_inclusive``)."""
    ok = lo <= value <= hi if hi_inclusive else lo <= value < hi
    if not ok:
        right = "]" if hi_inclusive else ")"
        raise ConfigError(f"{name}={value!r} must be in [{lo}, {hi}{right}")


def check_int(name: str, value: int, *, minimum: int = 1) -> None:
    """Raise ``ConfigError`` unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}={value!r} must be an integer >= {minimum}")


def require_closure(closure: Closure | None, who: str) -> Closure:
    """Return the closure or raise a ``ConfigError`` explaining the contract."""
    if closure is None:
        raise ConfigError(
            f"{who}.step() needs a closure that zeroes the gradients, runs forward and backward and "
            "returns the loss (see landscape.optim.factory)"
        )
    return closure


def call_closure(closure: Closure, *args: Any) -> Tensor:
    """Run a closure with gradients enabled and return its loss detached."""
    with torch.enable_grad():
        loss = closure(*args)
    if not isinstance(loss, Tensor):
        raise LandscapeError(f"the closure must return the loss as a tensor, got {type(loss).__name__}")
    return loss.detach()


def link_to_base(wrapper: torch.optim.Optimizer, base: torch.optim.Optimizer) -> None:
    """Make ``wrapper`` and ``base`` share one ``param_groups`` list and one ``state`` dict.

    Schedulers that change ``wrapper.param_groups[i]["lr"]`` then change the base optimizer's learning
    rate, and ``wrapper.state_dict()`` carries the base optimizer's buffers (momentum, Adam moments).
    """
    base.param_groups = wrapper.param_groups
    base.state = wrapper.state


def bn_modules(model: nn.Module) -> Iterator[nn.modules.batchnorm._BatchNorm]:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            yield m


def disable_running_stats(model: nn.Module) -> None:
    """Freeze the running statistics of every batch-norm layer (for SAM's second forward pass).

    The layer still normalizes with the batch statistics in training mode, but ``running_mean``,
    ``running_var`` and ``num_batches_tracked`` are left unchanged (the davda54/sam convention, made
    exact: the counter is restored as well). Undo with ``enable_running_stats``.
    """
    for m in bn_modules(model):
        if hasattr(m, "_landscape_bn_backup"):
            continue
        nbt = None if m.num_batches_tracked is None else m.num_batches_tracked.clone()
        m._landscape_bn_backup = (m.momentum, nbt)  # type: ignore[attr-defined]
        m.momentum = 0.0


def enable_running_stats(model: nn.Module) -> None:
    """Undo ``disable_running_stats``: restore momentum and the batch counter."""
    for m in bn_modules(model):
        backup = getattr(m, "_landscape_bn_backup", None)
        if backup is None:
            continue
        m.momentum, nbt = backup
        if nbt is not None and m.num_batches_tracked is not None:
            m.num_batches_tracked.copy_(nbt)
        del m._landscape_bn_backup


@contextmanager
def frozen_bn_stats(model: nn.Module | None) -> Iterator[None]:
    """Context manager: batch-norm running statistics of ``model`` do not change inside the block."""
    if model is None:
        yield
        return
    disable_running_stats(model)
    try:
        yield
    finally:
        enable_running_stats(model)


def strip_state(sd: dict[str, Any], transient: tuple[str, ...]) -> dict[str, Any]:
    """Copy of an optimizer ``state_dict`` without the per-parameter ``transient`` keys."""
    state = {k: {kk: vv for kk, vv in v.items() if kk not in transient} for k, v in sd["state"].items()}
    return {"state": state, "param_groups": sd["param_groups"]}


def to_device(x: Any, device: torch.device) -> Any:
    """A tensor, or a list/tuple of them (nested), on ``device``; anything else as it is."""
    if isinstance(x, Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, (list, tuple)):
        return type(x)(to_device(v, device) for v in x)
    return x
