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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from landscape.errors import ResultFileError, check_choice, check_positive
from landscape.io.atomic import atomic_torch_save
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
        dataset: training data (``(x, y)`` items).
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
        state = _load_state(state_path, fingerprint)
        with torch.no_grad():
            for n, t in theta.items():
                t.copy_(state["theta"][n])
        velocity = {n: v.to(theta[n]) for n, v in state["velocity"].items()}
        history = [float(v) for v in state["train_loss"]]
        first_epoch = int(state["epoch"])
    device = next(iter(w_a.values())).device
    directions_b = {n: w_b[n].detach().to(w_a[n]) - w_a[n] for n in w_a}
    bns = _bn_layers(model)
    saved_buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    saved_modes = [(m, m.training, getattr(m, "momentum", None)) for m in model.modules()]
    passes = 0
    try:
        model.eval()
        for m in bns:  # batch statistics; momentum 0 leaves the running statistics as they are
            m.train()
            m.momentum = 0.0
        with Progress(max(0, epochs - first_epoch), f"{kind} curve", quiet=quiet, unit="epoch") as bar:
            for epoch in range(first_epoch, epochs):
                g = torch.Generator().manual_seed(derived_seed(seed, epoch))
                loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g)
                total, count = 0.0, 0
                for batch in loader:
                    x, y = batch[0].to(device), batch[1].to(device)
                    if x.is_floating_point():
                        x = x.to(next(iter(w_a.values())).dtype)
                    t = float(torch.rand((), generator=g))
                    c1, c2 = curve_coefficients(kind, t)
                    point = {n: w_a[n] + c1 * (theta[n] - w_a[n]) + c2 * directions_b[n] for n in w_a}
                    out = torch.func.functional_call(model, point, (x,), strict=False)
                    loss = loss_fn(out, y)
                    grads = torch.autograd.grad(loss, list(theta.values()))
                    with torch.no_grad():
                        for (n, th), grad in zip(theta.items(), grads):
                            if n in velocity:
                                velocity[n].mul_(momentum).add_(grad)
                            else:
                                velocity[n] = grad.clone()
                            th.sub_(velocity[n], alpha=lr)
                    total += float(loss.detach()) * len(y)
                    count += len(y)
                history.append(total / max(count, 1))
                passes += 1
                if state_path is not None:
                    atomic_torch_save(
                        {
                            "fingerprint": fingerprint,
                            "kind": kind,
                            "epoch": epoch + 1,
                            "theta": {n: v.detach().cpu() for n, v in theta.items()},
                            "velocity": {n: v.detach().cpu() for n, v in velocity.items()},
                            "train_loss": list(history),
                        },
                        state_path,
                    )
                bar.update()
                bar.set_postfix(loss=f"{history[-1]:.4g}")
    finally:
        for m, training, mom in saved_modes:
            m.training = training
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = mom
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(saved_buffers[k])
    return CurveTraining(
        theta={n: v.detach() for n, v in theta.items()},
        train_loss=history,
        epochs_done=max(epochs, first_epoch),
        resumed_from_epoch=first_epoch,
        passes=passes,
        seconds=time.perf_counter() - start,
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
