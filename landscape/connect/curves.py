"""Low-loss curves between two solutions (Garipov et al. 2018, "Loss Surfaces, Mode Connectivity,
and Fast Ensembling of DNNs"), trained through one control point ``theta``.

* quadratic Bezier: ``phi(t) = (1-t)^2 w_A + 2t(1-t) theta + t^2 w_B``;
* polychain (one bend): ``w_A -> theta`` for ``t <= 1/2``, ``theta -> w_B`` after.

Both are written as ``phi(t) = w_A + c_1(t) (theta - w_A) + c_2(t) (w_B - w_A)`` (the Bezier weights
sum to one): Bezier ``c_1 = 2t(1-t)``, ``c_2 = t^2``; polychain ``c_1 = 2t, c_2 = 0`` for ``t <= 1/2``
and ``c_1 = 2 - 2t``, ``c_2 = 2t - 1`` after. With ``theta = (w_A + w_B)/2`` the Bezier curve is the
straight line: ``c_1/2 + c_2 = t``.

Training minimizes ``E_{t ~ U[0,1]} L(phi(t))`` over ``theta`` with SGD: one ``t`` per mini-batch,
drawn from a seeded generator, ``w_A`` and ``w_B`` fixed. Batch norm uses batch statistics during
training (as Garipov et al.; the running statistics are left untouched) and is recalibrated per point
at evaluation. The state (``theta``, the momentum buffer, the epoch, per-epoch losses) is saved atomically
after every epoch, so an interrupted run resumes where it stopped and gives the same ``theta``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from landscape.errors import ResultFileError, check_choice, check_positive
from landscape.io.atomic import atomic_torch_save
from landscape.objective.inputs import Inputs, call_functional, move_inputs, split_batch
from landscape.progress import Progress
from landscape.seeding import derived_seed

CURVES = ("bezier", "polychain")
Tensors = Mapping[str, torch.Tensor]


def curve_coefficients(kind: str, t: float) -> tuple[float, float]:
    """``(c_1, c_2)`` with ``phi(t) = w_A + c_1 (theta - w_A) + c_2 (w_B - w_A)``.

    Raises:
        ConfigError: ``kind`` is not ``bezier`` or ``polychain``.
    """
    check_choice("curve", kind, CURVES)
    t = float(t)
    if kind == "bezier":
        return 2.0 * t * (1.0 - t), t * t
    if t <= 0.5:
        return 2.0 * t, 0.0
    return 2.0 - 2.0 * t, 2.0 * t - 1.0


def midpoint(w_a: Tensors, w_b: Tensors) -> dict[str, torch.Tensor]:
    """``(w_A + w_B) / 2``: the control point that makes the Bezier curve a straight line."""
    return {n: 0.5 * (w_a[n] + w_b[n].to(w_a[n])) for n in w_a}


@dataclass
class CurveTraining:
    """The trained control point and its history."""

    theta: dict[str, torch.Tensor]
    train_loss: list[float] = field(default_factory=list)  # mean minibatch loss per epoch
    epochs_done: int = 0
    resumed_from_epoch: int = 0
    passes: int = 0  # training passes over the data run in this call
    seconds: float = 0.0


def _bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def train_curve(
    model: nn.Module,
    w_a: Tensors,
    w_b: Tensors,
    dataset: Dataset,
    *,
    kind: str = "bezier",
    epochs: int = 10,
    lr: float = 0.05,
    momentum: float = 0.9,
    batch_size: int = 128,
    seed: int = 0,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    theta_init: Tensors | None = None,
    state_path: str | Path | None = None,
    fingerprint: str = "",
    quiet: bool = False,
) -> CurveTraining:
    """Train the control point ``theta`` of a curve from ``w_A`` to ``w_B`` (Garipov et al. 2018).

    Minimizes ``E_{t~U[0,1]} L(phi_theta(t))`` by SGD (``lr``, ``momentum``) over shuffled mini-batches
    of ``dataset``; epoch ``e`` shuffles and draws ``t`` from a generator seeded by ``(seed, e)``, so a
    resumed run repeats exactly what an uninterrupted one does.

    Args:
        model: the architecture; its parameters are substituted functionally (not changed), batch norm
            uses batch statistics and its running statistics are restored afterwards.
        w_a: end point at ``t = 0`` (parameters by name, on the model's device and dtype).
        w_b: end point at ``t = 1``.
        dataset: training data (``(x, y)`` items, or dicts in the Hugging Face convention).
        kind: ``bezier`` or ``polychain``.
        epochs: passes over ``dataset``.
        lr: SGD learning rate.
        momentum: SGD momentum.
        batch_size: mini-batch size.
        seed: seed of the shuffling and of the ``t`` draws.
        loss_fn: batch-mean loss (cross-entropy by default).
        theta_init: starting control point (default: the midpoint).
        state_path: file of the per-epoch state; an existing one with the same ``fingerprint`` is
            resumed, one with another fingerprint refused.
        fingerprint: what the state must have been made with (end points, data, settings).
        quiet: no progress bar.

    Raises:
        ConfigError: bad ``kind``, ``epochs``, ``lr``, ``batch_size``.
        ResultFileError: ``state_path`` holds another run's state or is unreadable.
    """
    check_choice("curve", kind, CURVES)
    check_positive("epochs", epochs)
    check_positive("lr", lr)
    check_positive("batch_size", batch_size)
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    start = time.perf_counter()
    init = theta_init if theta_init is not None else midpoint(w_a, w_b)
    theta = {n: init[n].detach().clone().requires_grad_(True) for n in w_a}
    # SGD with heavy-ball momentum as torch.optim.SGD does it (buf <- momentum buf + g, first buf = g),
    # written out: the velocity is the whole optimizer state, and torch.optim's import costs seconds.
    velocity: dict[str, torch.Tensor] = {}
    history: list[float] = []
    first_epoch = 0
    if state_path is not None and Path(state_path).exists():
        velocity, history, first_epoch = _resume(state_path, fingerprint, theta)
    step = _CurveStep(model, w_a, w_b, theta, velocity, kind=kind, lr=lr, momentum=momentum, loss_fn=loss_fn)
    passes = 0
    with (
        _batch_statistics(model),
        Progress(max(0, epochs - first_epoch), f"{kind} curve", quiet=quiet, unit="epoch") as bar,
    ):
        for epoch in range(first_epoch, epochs):
            g = torch.Generator().manual_seed(derived_seed(seed, epoch))
            loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g)
            history.append(step.epoch(loader, g))
            passes += 1
            if state_path is not None:
                _save_state(state_path, fingerprint, kind, epoch + 1, theta, velocity, history)
            bar.update()
            bar.set_postfix(loss=f"{history[-1]:.4g}")
    return CurveTraining(
        theta={n: v.detach() for n, v in theta.items()},
        train_loss=history,
        epochs_done=max(epochs, first_epoch),
        resumed_from_epoch=first_epoch,
        passes=passes,
        seconds=time.perf_counter() - start,
    )


class _CurveStep:
    """One SGD step on ``theta`` at a random point ``phi(t)`` of the curve, per mini-batch."""

    def __init__(
        self,
        model: nn.Module,
        w_a: Tensors,
        w_b: Tensors,
        theta: dict[str, torch.Tensor],
        velocity: dict[str, torch.Tensor],
        *,
        kind: str,
        lr: float,
        momentum: float,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> None:
        self.model, self.w_a, self.theta, self.velocity = model, w_a, theta, velocity
        self.kind, self.lr, self.momentum, self.loss_fn = kind, lr, momentum, loss_fn
        self.directions_b = {n: w_b[n].detach().to(w_a[n]) - w_a[n] for n in w_a}
        first = next(iter(w_a.values()))
        self.device, self.dtype = first.device, first.dtype

    def epoch(self, loader: DataLoader, g: torch.Generator) -> float:
        """One pass over ``loader`` (``t`` drawn from ``g`` per batch); the mean minibatch loss, each
        batch weighted by its terms (examples, or the counted tokens of a token loss)."""
        total, count = 0.0, 0
        for batch in loader:
            x, y = split_batch(batch)  # (x, y) or a Hugging Face dict batch
            x, y = move_inputs(x, self.device, self.dtype), y.to(self.device)
            loss = self.step(x, y, float(torch.rand((), generator=g)))
            terms = getattr(self.loss_fn, "num_terms", len)(y)  # counted tokens of a token loss
            total += loss * terms
            count += terms
        return total / max(count, 1)

    def step(self, x: Inputs, y: torch.Tensor, t: float) -> float:
        """The loss at ``phi(t)`` on ``(x, y)``; ``theta`` takes one momentum-SGD step on its gradient."""
        c1, c2 = curve_coefficients(self.kind, t)
        w_a, theta = self.w_a, self.theta
        point = {n: w_a[n] + c1 * (theta[n] - w_a[n]) + c2 * self.directions_b[n] for n in w_a}
        out = call_functional(self.model, point, x)
        loss = self.loss_fn(out, y)
        grads = torch.autograd.grad(loss, list(theta.values()))
        with torch.no_grad():
            for (n, th), grad in zip(theta.items(), grads):
                if n in self.velocity:
                    self.velocity[n].mul_(self.momentum).add_(grad)
                else:
                    self.velocity[n] = grad.clone()
                th.sub_(self.velocity[n], alpha=self.lr)
        return float(loss.detach())


@contextmanager
def _batch_statistics(model: nn.Module) -> Iterator[None]:
    """Evaluation mode with batch norm on batch statistics (momentum 0: the running statistics stay
    as they are); every module's mode, batch-norm momentum and buffer is restored on exit."""
    saved_buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    saved_modes = [(m, m.training, getattr(m, "momentum", None)) for m in model.modules()]
    try:
        model.eval()
        for m in _bn_layers(model):
            m.train()
            m.momentum = 0.0
        yield
    finally:
        for m, training, mom in saved_modes:
            m.training = training
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = mom
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(saved_buffers[k])


def _resume(
    state_path: str | Path, fingerprint: str, theta: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[float], int]:
    """Load a saved state into ``theta``; returns the velocity, the per-epoch losses and the epoch."""
    state = _load_state(state_path, fingerprint)
    with torch.no_grad():
        for n, t in theta.items():
            t.copy_(state["theta"][n])
    velocity = {n: v.to(theta[n]) for n, v in state["velocity"].items()}
    return velocity, [float(v) for v in state["train_loss"]], int(state["epoch"])


def _save_state(
    path: str | Path,
    fingerprint: str,
    kind: str,
    epoch: int,
    theta: dict[str, torch.Tensor],
    velocity: dict[str, torch.Tensor],
    history: list[float],
) -> None:
    """The state after ``epoch`` epochs, written atomically."""
    atomic_torch_save(
        {
            "fingerprint": fingerprint,
            "kind": kind,
            "epoch": epoch,
            "theta": {n: v.detach().cpu() for n, v in theta.items()},
            "velocity": {n: v.detach().cpu() for n, v in velocity.items()},
            "train_loss": list(history),
        },
        path,
    )


def _load_state(path: str | Path, fingerprint: str) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        found = state["fingerprint"]
    except Exception as exc:  # truncated, foreign or corrupt file: any unpickling error
        raise ResultFileError(
            f"cannot resume the curve from {str(path)!r} ({type(exc).__name__}); pass overwrite=True to start over"
        ) from None
    if found != fingerprint:
        raise ResultFileError(
            f"{str(path)!r} holds a curve trained with other settings (end points, data, lr, seed or batch "
            "size differ); use another output folder or pass overwrite=True"
        )
    return state
