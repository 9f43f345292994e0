"""Preconditioned sharpness ``lambda_1(P^-1 H)`` of Adam-type optimizers (Cohen et al. 2022).

Cohen, Ghorbani, Krishnan et al., "Adaptive Gradient Methods at the Edge of Stability" (arXiv 2207.14484),
section 2, write a preconditioned method with momentum as ``w_{t+1} = w_t - lr P_t^-1 m_t`` with the
exponential moving average ``m_t = beta1 m_{t-1} + (1 - beta1) g_t`` (not bias corrected). Adam
(``w <- w - lr m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - beta1^t)``, ``v_hat = v / (1 -
beta2^t)``) is of this form with the diagonal preconditioner

    P_t = (1 - beta1^t) (diag(sqrt(v_hat_t)) + eps I).

On a quadratic with Hessian ``H`` and ``P`` held fixed, this iteration is stable iff
``lambda_1(P^-1 H) < (2 + 2 beta1) / ((1 - beta1) lr)`` (38/lr for beta1 = 0.9), the threshold at which
the paper finds the preconditioned sharpness equilibrates (the "adaptive edge of stability").

``P^-1 H`` is not symmetric, but it is similar to ``P^-1/2 H P^-1/2`` (``P`` is positive diagonal), which
is; its top eigenvalue is computed by Lanczos on the product ``v -> s * (H (s * v))`` with
``s = diag(P)^-1/2``, one Hessian-vector product per step. The factor ``1 - beta1^t`` tends to 1 within
a few dozen steps; ``momentum_bias_correction=False`` drops it (the preconditioner ``sqrt(v_hat) + eps``
alone, as in Google's init2winit ``hessian/precondition.py``).
``P`` is read off each optimizer's update rule (the tests check that it reproduces their steps).

Supported: ``torch.optim.Adam`` (``amsgrad`` uses the running maximum of ``v``), ``torch.optim.AdamW``
and :class:`~landscape.optim.msam.AdamWMSAMScheduleFree`, whose base sequence ``z`` takes the step
``alpha_t m_t / (sqrt(v_t) + eps)`` with ``alpha_t = lr_t sqrt(1 - beta2^t) / (1 - beta1^t)``, i.e.
``P_t = (1 - beta1^t) (sqrt(v_t) + eps) / sqrt(1 - beta2^t)`` and ``lr_t = lr min(1, t / warmup)``.
Weight decay is not part of ``H`` (the Hessian is the training loss's).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from landscape.errors import ConfigError
from landscape.hessian import HessianOperator, lanczos
from landscape.objective.core import Objective
from landscape.optim.msam import AdamWMSAMScheduleFree
from landscape.optim.registry import adaptive_classes


def adaptive_threshold(lr: float, beta1: float) -> float:
    """``(2 + 2 beta1) / ((1 - beta1) lr)``: stability threshold of ``lambda_1(P^-1 H)`` (38/lr at 0.9)."""
    if not lr > 0:
        raise ConfigError(f"lr={lr!r} must be > 0")
    if not 0 <= beta1 < 1:
        raise ConfigError(f"beta1={beta1!r} must be in [0, 1)")
    return (2.0 + 2.0 * beta1) / ((1.0 - beta1) * lr)


def is_adaptive(optimizer: Any) -> bool:
    """Whether :func:`adam_preconditioner` knows ``optimizer``'s preconditioner: an instance of an
    optimizer registered as adaptive (:mod:`landscape.optim.registry`)."""
    return isinstance(optimizer, adaptive_classes())


def preconditioner_ready(optimizer: Any, params: Sequence[torch.Tensor]) -> bool:
    """Whether ``optimizer`` is Adam-type and holds a second-moment estimate for every one of ``params``."""
    return is_adaptive(optimizer) and all("exp_avg_sq" in optimizer.state.get(p, {}) for p in params)


@dataclass
class Preconditioner:
    """The diagonal ``P`` of an adaptive optimizer, with the learning rate and ``beta1`` it steps with."""

    diagonal: list[torch.Tensor]
    lr: float
    beta1: float
    step: int

    @property
    def threshold(self) -> float:
        """``(2 + 2 beta1) / ((1 - beta1) lr)``."""
        return adaptive_threshold(self.lr, self.beta1)


def _group_of(optimizer: torch.optim.Optimizer) -> dict[int, dict[str, Any]]:
    return {id(p): g for g in optimizer.param_groups for p in g["params"]}


def adam_preconditioner(
    optimizer: torch.optim.Optimizer,
    params: Sequence[torch.Tensor],
    *,
    param_names: Sequence[str] | None = None,
    momentum_bias_correction: bool = True,
) -> Preconditioner:
    """``P = (1 - beta1^t) (sqrt(v_hat) + eps)`` for each of ``params``, read from ``optimizer``'s state.

    Args:
        optimizer: ``Adam``, ``AdamW`` or ``AdamWMSAMScheduleFree`` after at least one step.
        params: the parameters (as tensors of the model) whose diagonal blocks are wanted.
        param_names: names used in error messages.
        momentum_bias_correction: include the factor ``1 - beta1^t`` (see the module docstring).

    Returns:
        :class:`Preconditioner`; ``lr`` and ``beta1`` are the first parameter's group's.

    Raises:
        ConfigError: another optimizer, a parameter it does not hold, or no step taken yet.
    """
    if not is_adaptive(optimizer):
        raise ConfigError(
            f"optimizer of type {type(optimizer).__name__} has no Adam preconditioner; "
            "the preconditioned sharpness needs one of "
            + ", ".join(c.__qualname__ for c in adaptive_classes())
        )
    names = list(param_names) if param_names is not None else [f"#{i}" for i in range(len(params))]
    groups = _group_of(optimizer)
    schedule_free = isinstance(optimizer, AdamWMSAMScheduleFree)
    diag: list[torch.Tensor] = []
    lr = beta1 = float("nan")
    step = 0
    for i, (p, name) in enumerate(zip(params, names)):
        group = groups.get(id(p))
        if group is None:
            raise ConfigError(f"parameter {name!r} is not optimized by the given optimizer")
        state = optimizer.state.get(p, {})
        if "exp_avg_sq" not in state:
            raise ConfigError(
                f"the optimizer has no second-moment estimate for parameter {name!r} yet; "
                "measure the preconditioned sharpness after the first step"
            )
        b1, b2 = (float(b) for b in group["betas"])
        eps = float(group["eps"])
        if schedule_free:
            t = int(group["k"])
            warm = min(1.0, t / group["warmup_steps"]) if group["warmup_steps"] > 0 else 1.0
            group_lr = float(group["lr"]) * warm
            # z <- z - alpha_t m / (sqrt(v) + eps), alpha_t = lr_t sqrt(1 - b2^t) / (1 - b1^t)
            d = (state["exp_avg_sq"].sqrt() + eps) / math.sqrt(1.0 - b2**t)
        else:
            t = int(state["step"])
            group_lr = float(group["lr"])
            v = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
            d = (v / (1.0 - b2**t)).sqrt() + eps
        if momentum_bias_correction:
            d = d * (1.0 - b1**t)
        diag.append(d.detach())
        if i == 0:
            lr, beta1, step = group_lr, b1, t
    return Preconditioner(diagonal=diag, lr=lr, beta1=beta1, step=step)


class PreconditionedHessian:
    """``P^-1/2 H P^-1/2`` as an ``(n, n)`` operator: ``v -> s * (H (s * v))`` with ``s = P^-1/2``.

    Args:
        hessian: the Hessian operator (its parameters fix the order of the flat vectors).
        diagonal: ``P`` as tensors shaped like ``hessian.params`` (positive).
    """

    def __init__(self, hessian: HessianOperator, diagonal: Sequence[torch.Tensor]) -> None:
        if len(diagonal) != len(hessian.params):
            raise ConfigError(f"expected {len(hessian.params)} diagonal tensors, got {len(diagonal)}")
        d = hessian.flatten([t.detach() for t in diagonal])
        if not bool(torch.all(d > 0)):
            raise ConfigError("the preconditioner diagonal must be positive (is eps > 0?)")
        self.hessian = hessian
        self.scale = d.rsqrt()
        self.shape = hessian.shape
        self.dtype = hessian.dtype
        self.device = hessian.device

    @property
    def matvecs(self) -> int:
        """Hessian-vector products so far."""
        return self.hessian.matvecs

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        s = self.scale if v.dim() == 1 else self.scale.unsqueeze(1)
        return s * (self.hessian @ (s * v.to(device=self.device, dtype=self.dtype)))


@dataclass
class PreconditionedSharpness:
    """Top eigenvalues of ``P^-1 H`` with the threshold they are compared with."""

    eigenvalues: np.ndarray
    threshold: float
    lr: float
    beta1: float
    step: int
    matvecs: int
    converged: list[bool]
    seconds: float
    vectors: torch.Tensor | None = None

    @property
    def lambda_max(self) -> float:
        return float(self.eigenvalues[0])


def preconditioned_sharpness(
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    k: int = 1,
    *,
    tol: float = 1e-6,
    max_matvecs: int | None = None,
    seed: int = 0,
    v0: torch.Tensor | None = None,
    mode: str = "auto",
    momentum_bias_correction: bool = True,
) -> PreconditionedSharpness:
    """``lambda_1..k(P^-1 H)`` of ``objective`` at the model's parameters, ``P`` from ``optimizer``.

    Args:
        objective: loss over a fixed sample; its parameters must be optimized by ``optimizer``.
        optimizer: an Adam-type optimizer after at least one step (see :func:`adam_preconditioner`).
        k: number of eigenvalues.
        tol: Lanczos relative residual tolerance.
        max_matvecs: Hessian-vector product budget.
        seed: seed of the random start vector.
        v0: start vector (warm start) instead of a random one.
        mode: HVP mode.
        momentum_bias_correction: include ``1 - beta1^t`` in ``P``.

    Returns:
        :class:`PreconditionedSharpness`; ``vectors`` are eigenvectors of ``P^-1/2 H P^-1/2``
        (``P^-1/2 u`` is then an eigenvector of ``P^-1 H``).
    """
    t0 = time.perf_counter()
    pre = adam_preconditioner(
        optimizer,
        objective.params,
        param_names=objective.param_names,
        momentum_bias_correction=momentum_bias_correction,
    )
    op = PreconditionedHessian(HessianOperator(objective, mode=mode), pre.diagonal)
    res = lanczos(op, k, tol=tol, max_matvecs=max_matvecs, seed=seed, v0=v0)
    return PreconditionedSharpness(
        eigenvalues=np.asarray(res.eigenvalues, dtype=float),
        threshold=pre.threshold,
        lr=pre.lr,
        beta1=pre.beta1,
        step=pre.step,
        matvecs=res.matvecs,
        converged=list(res.converged),
        seconds=time.perf_counter() - t0,
        vectors=res.vectors,
    )
