"""What every measure shares: the result record, cost counting, and perturbing the weights safely.

Costs are counted in *data passes*: evaluating the loss on ``n_b`` of the objective's ``N``
examples adds ``n_b / N`` forward passes (and as many backward passes when its gradient is taken),
so one pass over the whole sample counts 1 whatever the batching. Hessian-vector products are
counted separately (``hvps``; a block of ``k`` products counts ``k``).

Every measure perturbs the parameters in place through :class:`Perturbation`, which keeps a copy of
the original values and writes them back (bit for bit) when the measure ends, error or not.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from landscape.errors import ConfigError
from landscape.io.jsonio import decode_float, encode, encode_float
from landscape.measures.options import MeasureOptions
from landscape.objective.core import Objective

WeightedBatch = tuple[torch.Tensor, torch.Tensor, float]


@dataclass
class MeasureResult:
    """One sharpness measure: its value, standard error, settings, seed and cost.

    Attributes:
        name: public name (``'worst'``, ``'average'``, ...).
        value: the measure.
        stderr: standard error of ``value`` for stochastic measures (``None`` for deterministic ones,
            or where it is undefined, e.g. ``worst`` with a single batch).
        settings: every setting the value depends on (radius, norm, steps, ...).
        seed: seed of the random draws (``None`` for deterministic measures).
        forward_passes: forward passes, in passes over the whole sample.
        backward_passes: backward passes, in passes over the whole sample.
        hvps: Hessian-vector products.
        seconds: wall-clock time.
        details: measure-specific diagnostics (``worst``: ``stalled``, per-batch values, ...).
        objective: what the objective records (samples, dtype, batch-norm mode, ...).
    """

    name: str
    value: float
    stderr: float | None
    settings: dict[str, Any]
    seed: int | None
    forward_passes: float
    backward_passes: float
    hvps: int = 0
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    objective: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``value``, ``stderr``, ``seed``, ``settings``, ``cost`` and the details, with
        non-finite floats under the policy of :mod:`landscape.io.jsonio` (NaN -> ``None``, +/-inf ->
        ``"inf"``/``"-inf"``)."""
        return {
            "name": self.name,
            "value": encode_float(self.value),
            "stderr": None if self.stderr is None else encode_float(self.stderr),
            "seed": self.seed,
            "settings": dict(self.settings),
            "cost": {
                "forward_passes": self.forward_passes,
                "backward_passes": self.backward_passes,
                "hvps": self.hvps,
                "seconds": self.seconds,
            },
            "details": encode(self.details),
            "objective": dict(self.objective),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MeasureResult:
        cost = d.get("cost", {})
        return cls(
            name=d["name"],
            value=decode_float(d["value"]),
            stderr=None if d.get("stderr") is None else decode_float(d["stderr"]),
            settings=dict(d.get("settings", {})),
            seed=d.get("seed"),
            forward_passes=float(cost.get("forward_passes", 0.0)),
            backward_passes=float(cost.get("backward_passes", 0.0)),
            hvps=int(cost.get("hvps", 0)),
            seconds=float(cost.get("seconds", 0.0)),
            details=dict(d.get("details", {})),
            objective=dict(d.get("objective", {})),
        )


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float | None]:
    """Sample mean and its standard error ``s / sqrt(n)`` (``None`` for a single value)."""
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


class Cost:
    """Running count of forward and backward passes (in passes over the whole sample)."""

    def __init__(self, num_samples: int) -> None:
        self.num_samples = num_samples
        self.forward = 0.0
        self.backward = 0.0

    def add(self, samples: int, *, backward: bool = False) -> None:
        self.forward += samples / self.num_samples
        if backward:
            self.backward += samples / self.num_samples


def check_objective(objective: Objective) -> None:
    """The measures run on one process; a sharded objective would see only its shard."""
    if objective.shard is not None and objective.shard[1] > 1:
        raise ConfigError(
            f"objective.shard={objective.shard!r}: the sharpness measures run on one process; "
            "build the objective without shard"
        )


@dataclass
class MeasureRun:
    """What every measure sets up before it computes and records after: the validated options, the
    pass counter, the generator seeded from ``options.seed`` and the clock.

    Attributes:
        objective: the loss the measure reads.
        options: the validated options.
        cost: the running count of data passes.
        started: ``time.perf_counter()`` at the start.
    """

    objective: Objective
    options: MeasureOptions
    cost: Cost
    started: float

    @cached_property
    def generator(self) -> torch.Generator:
        """A CPU generator seeded with ``options.seed``, made on first use: a deterministic measure
        never reads the seed, so the seed is none of its settings."""
        return torch.Generator().manual_seed(self.options.seed)

    @classmethod
    def start(cls, objective: Objective, options: MeasureOptions | None) -> MeasureRun:
        """Validate ``options`` (default: :class:`MeasureOptions`) and ``objective``; start the clock.

        Raises:
            ConfigError: a bad option, or a sharded objective.
        """
        opts = options or MeasureOptions()
        opts.validate()
        check_objective(objective)
        return cls(objective, opts, Cost(objective.num_samples), time.perf_counter())

    def result(
        self,
        name: str,
        value: float,
        stderr: float | None,
        *,
        settings: dict[str, Any],
        details: dict[str, Any],
        seed: int | None,
        hvps: int = 0,
        passes: tuple[float, float] | None = None,
    ) -> MeasureResult:
        """The :class:`MeasureResult` with the cost so far (``passes``: forward and backward passes
        counted by the measure itself instead of :attr:`cost`) and the time since :meth:`start`."""
        forward, backward = passes if passes is not None else (self.cost.forward, self.cost.backward)
        return MeasureResult(
            name=name,
            value=value,
            stderr=stderr,
            settings=settings,
            seed=seed,
            forward_passes=forward,
            backward_passes=backward,
            hvps=hvps,
            seconds=time.perf_counter() - self.started,
            details=details,
            objective=self.objective.metadata(),
        )


class Perturbation:
    """Set the objective's parameters to ``w + delta`` and restore ``w`` exactly afterwards.

    Use as a context manager: on exit every parameter is copied back from the snapshot taken on
    entry, so the model leaves a measure bit for bit as it came in, even after an error.
    """

    def __init__(self, objective: Objective) -> None:
        self.objective = objective
        self.params = objective.params
        self.shapes = [p.shape for p in self.params]
        self.sizes = [p.numel() for p in self.params]
        self.base: list[torch.Tensor] = []
        self.flat_base = torch.empty(0)

    def __enter__(self) -> Perturbation:
        self.base = [p.detach().clone() for p in self.params]
        self.flat_base = torch.cat([b.reshape(-1) for b in self.base])
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    @property
    def num_params(self) -> int:
        return int(self.flat_base.numel())

    def split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """A flat vector as parameter-shaped views."""
        return [c.view(s) for c, s in zip(torch.split(flat, self.sizes), self.shapes)]

    def flatten(self, tensors: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Parameter-shaped tensors (``None`` for zero) as one flat vector."""
        return torch.cat(
            [(torch.zeros_like(p) if t is None else t).reshape(-1) for t, p in zip(tensors, self.params)]
        )

    def set(self, delta: torch.Tensor) -> None:
        """Parameters := ``w + delta`` (``delta`` flat)."""
        with torch.no_grad():
            for p, b, d in zip(self.params, self.base, self.split(delta)):
                p.copy_(b + d)

    def restore(self) -> None:
        """Parameters := ``w`` exactly."""
        with torch.no_grad():
            for p, b in zip(self.params, self.base):
                p.copy_(b)

    def randn(self, generator: torch.Generator) -> torch.Tensor:
        """A standard normal flat vector, drawn in float64 on the CPU so a seed gives the same draw on
        every device and dtype."""
        z = torch.randn(self.num_params, generator=generator, dtype=torch.float64)
        return z.to(device=self.flat_base.device, dtype=self.flat_base.dtype)


def batch_groups(objective: Objective, m: int | None) -> tuple[list[list[WeightedBatch]], int]:
    """The sample split into the batches of m-sharpness.

    ``m=None``: one group, the objective's own batches with weights ``n_b / N`` (the full-sample
    loss). Otherwise consecutive groups of ``m`` examples each with weight 1; the last ``N mod m``
    examples, which would form a smaller batch with another sharpness scale, are left out.

    Returns:
        The groups and the number of examples they cover.
    """
    if m is None:
        return [list(objective.batches())], objective.num_samples
    if m > objective.num_samples:
        raise ConfigError(f"m={m!r} is larger than the sample ({objective.num_samples} examples)")
    xs, ys = zip(*((x, y) for x, y, _ in objective.batches()))
    x_all, y_all = torch.cat(xs), torch.cat(ys)
    full = (len(y_all) // m) * m
    groups = [[(x_all[i : i + m], y_all[i : i + m], 1.0)] for i in range(0, full, m)]
    return groups, full


def group_loss(objective: Objective, group: Sequence[WeightedBatch], cost: Cost) -> float:
    """Weighted loss of a group of batches at the current parameters (no gradient)."""
    total = 0.0
    with torch.no_grad():
        for x, y, w in group:
            total += w * float(objective.batch_loss(x, y))
            cost.add(len(y))
    return total


def group_loss_and_grad(
    objective: Objective, group: Sequence[WeightedBatch], cost: Cost, pert: Perturbation
) -> tuple[float, torch.Tensor]:
    """Weighted loss of a group of batches and its flat gradient at the current parameters."""
    grad = torch.zeros_like(pert.flat_base)
    total = 0.0
    for x, y, w in group:
        with torch.enable_grad():
            loss = objective.batch_loss(x, y)
            gs = torch.autograd.grad(loss, objective.params, allow_unused=True)
        grad.add_(pert.flatten(gs), alpha=w)
        total += w * float(loss.detach())
        cost.add(len(y), backward=True)
    return total, grad
