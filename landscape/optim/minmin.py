"""Min-Min: a descent move on a small batch, then a step with a large-batch gradient taken there.

From "Why is second order gradient useless" (the Min-Min seed design). With step sizes ``rho`` (inner) and
``eta`` (outer):

    g_s = grad L(theta; B_s),              theta~ = theta - rho * g_s / ||g_s||   (a *descent* move)
    g_l = grad L(theta~; B_l),             theta <- theta - eta * g_l             (via the base optimizer)

where ``B_s`` (``small_batch_size``) and ``B_l`` (``large_batch_size``) are disjoint batches. Unlike
SAM, the inner move goes *down* the small-batch gradient. ``theta`` is restored exactly from a saved copy
before the base optimizer steps, so momentum or Adam on top of ``g_l`` work as usual.

The closure contract of ``MinMinOptimizer.step(closure)``: ``closure(phase)`` with ``phase`` in
``("small", "large")`` zeroes the gradients, computes the loss on the small or the large batch, calls
``backward`` and returns the loss.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset, default_collate

from landscape.errors import ConfigError, DataError, check_choice, check_positive
from landscape.objective.inputs import call_model, split_batch
from landscape.optim._common import (
    Closure,
    call_closure,
    check_int,
    link_to_base,
    require_closure,
    strip_state,
)
from landscape.optim.entry import BuildRequest

SCHEDULE_TYPES: tuple[str, ...] = ("constant", "linear", "cosine", "exponential")
PHASES: tuple[str, ...] = ("small", "large")


class MinMinOptimizer(torch.optim.Optimizer):
    """Two-stage Min-Min optimizer wrapping a base optimizer instance.

    Args:
        model: the model being trained (kept for ``minmin_training_step``).
        base_optimizer: an optimizer *instance* over the model's parameters (e.g. ``torch.optim.SGD``);
            its parameter groups become this optimizer's, so schedulers and ``state_dict`` cover both.
        inner_step_size: ``rho`` >= 0, the length of the small-batch descent move; stored per group as
            ``"inner_step_size"``.
        outer_lr: ``eta`` > 0; when given it overrides every group's ``"lr"`` of the base optimizer.
        small_batch_size: size of ``B_s`` (informational, used by samplers and logs).
        large_batch_size: size of ``B_l``.
    """

    def __init__(
        self,
        model: nn.Module,
        base_optimizer: torch.optim.Optimizer,
        *,
        inner_step_size: float = 0.1,
        outer_lr: float | None = None,
        small_batch_size: int = 32,
        large_batch_size: int = 256,
    ) -> None:
        if not isinstance(base_optimizer, torch.optim.Optimizer):
            raise ConfigError(
                f"base_optimizer={base_optimizer!r} must be a torch.optim.Optimizer instance over the model"
            )
        check_positive("inner_step_size", inner_step_size, allow_zero=True)
        if outer_lr is not None:
            check_positive("outer_lr", outer_lr)
        check_int("small_batch_size", small_batch_size)
        check_int("large_batch_size", large_batch_size)
        for group in base_optimizer.param_groups:
            group.setdefault("inner_step_size", inner_step_size)
            if outer_lr is not None:
                group["lr"] = outer_lr
        super().__init__(base_optimizer.param_groups, {"inner_step_size": inner_step_size})
        self.param_groups = base_optimizer.param_groups
        self.defaults.update(base_optimizer.defaults)
        self.base_optimizer = base_optimizer
        self.state = base_optimizer.state
        self.model = model
        self.small_batch_size = small_batch_size
        self.large_batch_size = large_batch_size

    def _with_grad(self) -> list[tuple[dict[str, Any], Tensor]]:
        return [(g, p) for g in self.param_groups for p in g["params"] if p.grad is not None]

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Save theta and move to ``theta - rho * g_s / ||g_s||`` (g_s: the gradient now in ``.grad``)."""
        pairs = self._with_grad()
        if not pairs:
            return
        device = pairs[0][1].device
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm().to(device) for _, p in pairs]))
        for group, p in pairs:
            self.state[p]["old_p"] = p.detach().clone()
            p.sub_(p.grad * (group["inner_step_size"] / (norm.to(p.device) + 1e-12)))
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore theta exactly and let the base optimizer step with the large-batch gradient."""
        for group in self.param_groups:
            for p in group["params"]:
                old = self.state[p].pop("old_p", None) if p in self.state else None
                if old is not None:
                    p.copy_(old)
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Closure | None = None) -> Tensor:  # type: ignore[override]
        """One Min-Min step; ``closure(phase)`` for ``phase`` in ``("small", "large")`` (module docstring).

        Returns:
            The small-batch loss at theta (before the step), detached.
        """
        closure = require_closure(closure, "MinMinOptimizer")
        self.zero_grad()
        loss = call_closure(closure, "small")
        self.first_step(zero_grad=True)
        call_closure(closure, "large")
        self.second_step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return strip_state(super().state_dict(), ("old_p",))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        link_to_base(self, self.base_optimizer)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def minmin_training_step(
    model: nn.Module,
    optimizer: MinMinOptimizer,
    small_batch: Sequence[Tensor],
    large_batch: Sequence[Tensor],
    loss_fn: Any,
) -> float:
    """One Min-Min step on an ``(inputs, targets)`` small batch and a disjoint large batch.

    Args:
        model: the model; batches are moved to the device of its first parameter.
        optimizer: a ``MinMinOptimizer``.
        small_batch: ``(x_s, y_s)`` for the inner descent move (``x_s`` a tensor or a dict of inputs),
            or a dict batch holding ``labels``.
        large_batch: ``(x_l, y_l)`` for the outer gradient, likewise.
        loss_fn: ``loss_fn(logits, y) -> scalar``; the model is called as
            :func:`~landscape.objective.inputs.call_model` does.

    Returns:
        The small-batch loss at the parameters before the step.
    """
    device = next(model.parameters()).device
    batches = {"small": _to_device(small_batch, device), "large": _to_device(large_batch, device)}

    def closure(phase: str) -> Tensor:
        x, y = split_batch(batches[phase])
        optimizer.zero_grad()
        loss = loss_fn(call_model(model, x), y)
        loss.backward()
        return loss

    return float(optimizer.step(closure))


class MinMinBatchSampler:
    """Disjoint (small, large) batch pairs drawn without replacement from one dataset.

    Each epoch is a seeded permutation of the dataset (``seed + epoch``); consecutive slices of
    ``small_batch_size + large_batch_size`` indices give one pair, so the two batches of a pair never
    share an example. When fewer indices than a pair remain, a new epoch starts.

    Args:
        train_loader: a ``DataLoader`` (its ``dataset`` is used), a ``Dataset``, or a tuple of tensors
            with equal first dimension.
        small_batch_size: size of the small batch.
        large_batch_size: size of the large batch.
        seed: seed of the permutations.
    """

    def __init__(
        self,
        train_loader: DataLoader | Dataset | tuple[Tensor, ...],
        small_batch_size: int = 32,
        large_batch_size: int = 256,
        *,
        seed: int = 0,
    ) -> None:
        check_int("small_batch_size", small_batch_size)
        check_int("large_batch_size", large_batch_size)
        if isinstance(train_loader, DataLoader):
            dataset: Any = train_loader.dataset
        elif isinstance(train_loader, tuple):
            dataset = TensorDataset(*train_loader)
        else:
            dataset = train_loader
        self.dataset = dataset
        self.n = len(dataset)
        if small_batch_size + large_batch_size > self.n:
            raise DataError(
                f"small_batch_size + large_batch_size = {small_batch_size + large_batch_size} exceeds the "
                f"dataset size {self.n}"
            )
        self.small_batch_size = small_batch_size
        self.large_batch_size = large_batch_size
        self.seed = int(seed)
        self.epoch = 0
        self.position = 0
        self._perm = self._permutation()

    def _permutation(self) -> Tensor:
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch))

    def _take(self, idx: Tensor) -> Any:
        if isinstance(self.dataset, TensorDataset):
            return tuple(t[idx] for t in self.dataset.tensors)
        return default_collate([self.dataset[int(i)] for i in idx])

    def __len__(self) -> int:
        """Number of pairs per epoch."""
        return self.n // (self.small_batch_size + self.large_batch_size)

    def get_pair(self) -> tuple[Any, Any]:
        """The next ``(small_batch, large_batch)``, disjoint by construction."""
        size = self.small_batch_size + self.large_batch_size
        if self.position + size > self.n:
            self.epoch += 1
            self.position = 0
            self._perm = self._permutation()
        idx = self._perm[self.position : self.position + size]
        self.position += size
        return self._take(idx[: self.small_batch_size]), self._take(idx[self.small_batch_size :])

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        """The pairs of one epoch."""
        for _ in range(len(self)):
            yield self.get_pair()

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed, self.epoch, self.position = int(state["seed"]), int(state["epoch"]), int(state["position"])
        self._perm = self._permutation()


class MinMinScheduler:
    """Schedules both Min-Min step sizes with one factor ``f(t)``, ``t = 0 .. total_steps``.

    ``rho_t = initial_inner_step * f(t)`` and ``eta_t = initial_outer_lr * f(t)`` with

    * ``constant``: ``f = 1``;
    * ``linear``: ``f = 1 - (1 - m) t / T``;
    * ``cosine``: ``f = m + (1 - m) (1 + cos(pi t / T)) / 2``;
    * ``exponential``: ``f = gamma^t``, ``gamma`` defaulting to ``max(m, 0.01)^(1/T)``;

    where ``m = min_factor`` and ``t`` is clipped at ``T = total_steps``.

    Args:
        optimizer: a ``MinMinOptimizer`` (any optimizer whose groups have ``lr`` and
            ``inner_step_size``).
        initial_inner_step: ``rho_0`` >= 0.
        initial_outer_lr: ``eta_0`` > 0.
        schedule_type: one of ``SCHEDULE_TYPES``.
        total_steps: ``T`` >= 1.
        min_factor: final factor of the linear and cosine schedules, in [0, 1].
        gamma: per-step factor of the exponential schedule, in (0, 1].
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        initial_inner_step: float,
        initial_outer_lr: float,
        schedule_type: str = "cosine",
        total_steps: int = 1000,
        *,
        min_factor: float = 0.0,
        gamma: float | None = None,
    ) -> None:
        check_choice("schedule_type", schedule_type, SCHEDULE_TYPES)
        check_positive("initial_inner_step", initial_inner_step, allow_zero=True)
        check_positive("initial_outer_lr", initial_outer_lr)
        check_int("total_steps", total_steps)
        if not 0.0 <= min_factor <= 1.0:
            raise ConfigError(f"min_factor={min_factor!r} must be in [0, 1]")
        if gamma is not None and not 0.0 < gamma <= 1.0:
            raise ConfigError(f"gamma={gamma!r} must be in (0, 1]")
        self.optimizer = optimizer
        self.initial_inner_step = initial_inner_step
        self.initial_outer_lr = initial_outer_lr
        self.schedule_type = schedule_type
        self.total_steps = total_steps
        self.min_factor = min_factor
        self.gamma = gamma if gamma is not None else max(min_factor, 0.01) ** (1.0 / total_steps)
        self.last_step = 0
        self._apply()

    def factor(self, t: int) -> float:
        """``f(t)`` of the chosen schedule."""
        t = min(max(t, 0), self.total_steps)
        T, m = self.total_steps, self.min_factor
        if self.schedule_type == "constant":
            return 1.0
        if self.schedule_type == "linear":
            return 1.0 - (1.0 - m) * t / T
        if self.schedule_type == "cosine":
            return m + (1.0 - m) * 0.5 * (1.0 + math.cos(math.pi * t / T))
        return self.gamma**t

    def _apply(self) -> None:
        f = self.factor(self.last_step)
        for group in self.optimizer.param_groups:
            group["inner_step_size"] = self.initial_inner_step * f
            group["lr"] = self.initial_outer_lr * f

    def step(self) -> None:
        """Advance ``t`` by one and set both step sizes in every parameter group."""
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> tuple[float, float]:
        """``(inner_step_size, outer_lr)`` now in force."""
        f = self.factor(self.last_step)
        return self.initial_inner_step * f, self.initial_outer_lr * f

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._apply()


def build_minmin(cls: type, request: BuildRequest) -> torch.optim.Optimizer:
    """Min-Min over an SGD base optimizer (the outer step); the radius is the inner step size."""
    base = torch.optim.SGD(
        request.params, lr=request.lr, momentum=request.momentum, weight_decay=request.weight_decay
    )
    return cls(request.model, base, inner_step_size=request.rho, **request.options)
