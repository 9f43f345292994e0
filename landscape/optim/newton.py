"""Newton-summary: per-group learning rates from a summary of second- and third-order derivatives.

Wolinski, "Adapting Newton's Method to Neural Networks through a Summary of Higher-Order Derivatives"
(arXiv 2312.03885); reference code p-wol/GRNewt. The parameters are partitioned into S groups
``T_1 .. T_S``; for a descent direction ``u`` (here the, optionally momentum-averaged, gradient) the step
is ``theta_{t+1} = theta_t - damping * U I_{P:S} eta``: group ``s`` moves by ``-damping * eta_s * u_s``.
With ``u_s`` the restriction of ``u`` to group ``s``:

    g-bar_s   = <g, u_s>                                (first order, S)
    H-bar_st  = u_s^T H u_t                             (second order, S x S)
    D3_s      = D^3 L(theta)[u_s, u_s, u_s]             (third order along u_s, S)
    D         = diag(|D3_s|^(1/3))

The second-order model ``L(theta - U I eta) - L(theta) ~ -g-bar^T eta + 1/2 eta^T H-bar eta`` is minimal at
``eta = H-bar^{-1} g-bar``; the anisotropic Nesterov cubic regularization instead takes the solution of
largest ``||D eta||`` of

    eta = (H-bar + lambda_int / 2 * ||D eta|| * D^2)^{-1} g-bar.

Writing ``r = ||D eta||``, ``eta(r) = (H-bar + c r D^2)^{-1} g-bar`` with ``c = lambda_int / 2``, and
``r -> ||D eta(r)||`` is non-increasing wherever ``M(r) = H-bar + c r D^2`` is positive definite, so the
scalar equation ``||D eta(r)|| = r`` has exactly one root there, the largest one; it is found by Brent's
method. Partitions: ``canonical`` (one group per tensor), ``trivial`` (one group), ``wb`` (weights of
dimension >= 2 / biases / everything else).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import brentq
from torch import Tensor, nn

from landscape.errors import ConfigError, DataError, check_choice, check_positive
from landscape.optim._common import Closure, call_closure, check_int, check_range

PARTITIONS: tuple[str, ...] = ("canonical", "trivial", "wb")

FullLoss = Callable[[Any, Any], Tensor]


# ----------------------------------------------------------------------------- partitions
def partition_canonical(model: nn.Module) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """One group per parameter tensor. Returns ``(param_groups, name_groups)``."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [{"params": [p]} for _, p in named], [[n] for n, _ in named]


def partition_trivial(model: nn.Module) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """A single group with every parameter. Returns ``(param_groups, name_groups)``."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [{"params": [p for _, p in named]}], [[n for n, _ in named]]


def partition_wb(model: nn.Module) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """Weights (``*.weight`` of dimension >= 2), biases (``*.bias``), the rest; empty groups dropped."""
    buckets: list[list[tuple[str, Tensor]]] = [[], [], []]
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        leaf = n.rsplit(".", 1)[-1]
        idx = 0 if leaf == "weight" and p.dim() >= 2 else 1 if leaf == "bias" else 2
        buckets[idx].append((n, p))
    groups = [b for b in buckets if b]
    return [{"params": [p for _, p in b]} for b in groups], [[n for n, _ in b] for b in groups]


def partition(model: nn.Module, kind: str = "canonical") -> tuple[list[dict[str, Any]], list[list[str]]]:
    """The partition named ``kind`` (one of ``PARTITIONS``)."""
    check_choice("partition", kind, PARTITIONS)
    return {"canonical": partition_canonical, "trivial": partition_trivial, "wb": partition_wb}[kind](model)


# ----------------------------------------------------------------------------- H-bar, g-bar, D
@dataclass
class HGSummary:
    """``H_bar`` (S x S), ``g_bar`` (S) and the raw third derivatives ``order3`` (S), float64 on CPU."""

    H_bar: Tensor
    g_bar: Tensor
    order3: Tensor
    num_samples: int

    @property
    def D(self) -> Tensor:  # noqa: N802
        """``|order3|^(1/3)``, the diagonal of the anisotropic regularizer."""
        return self.order3.abs().pow(1.0 / 3.0)


def _batch_size(batch: Any) -> int:
    x = batch[0] if isinstance(batch, (list, tuple)) else batch
    return int(x.shape[0]) if isinstance(x, Tensor) and x.dim() > 0 else 1


def compute_hg(
    groups: Sequence[Sequence[Tensor]],
    directions: Sequence[Sequence[Tensor]],
    full_loss: FullLoss,
    loader: Iterable[Any],
) -> HGSummary:
    """``H_bar``, ``g_bar`` and the third-order derivatives along ``u`` over a loader.

    Each batch ``(x, target)`` contributes ``full_loss(x, target)`` (a mean over the batch) weighted by
    its sample count, so the result is that of the mean loss over all samples.

    Args:
        groups: the S parameter groups (tensors with ``requires_grad``).
        directions: ``u_s`` for each group, tensors shaped like the group's parameters.
        full_loss: ``full_loss(x, target) -> scalar`` (typically ``loss_fn(model(x), target)``).
        loader: iterable of ``(x, target)`` batches.

    Returns:
        An ``HGSummary``.
    """
    params = [p for g in groups for p in g]
    owner = [s for s, g in enumerate(groups) for _ in g]
    u = [d for ds in directions for d in ds]
    S = len(groups)
    H = torch.zeros(S, S, dtype=torch.float64)
    gb = torch.zeros(S, dtype=torch.float64)
    o3 = torch.zeros(S, dtype=torch.float64)
    n_total = 0

    def group_dot(vals: Sequence[Tensor | None], s: int) -> Tensor:
        terms = [(v * u[i]).sum() for i, v in enumerate(vals) if owner[i] == s and v is not None]
        return torch.stack(terms).sum() if terms else torch.zeros((), device=params[0].device)

    for batch in loader:
        n = _batch_size(batch)
        x, target = (batch[0], batch[1]) if isinstance(batch, (list, tuple)) else (batch, None)
        with torch.enable_grad():
            loss = full_loss(x, target)
            grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
            Hb = torch.zeros(S, S, dtype=torch.float64)
            gbb = torch.zeros(S, dtype=torch.float64)
            o3b = torch.zeros(S, dtype=torch.float64)
            for s in range(S):
                dot = group_dot(grads, s)
                gbb[s] = float(dot.detach())
                if not dot.requires_grad:
                    continue
                hv = torch.autograd.grad(dot, params, create_graph=True, allow_unused=True)
                for t in range(S):
                    Hb[s, t] = float(group_dot(hv, t).detach())
                quad = group_dot(hv, s)
                if quad.requires_grad:
                    t3 = torch.autograd.grad(quad, params, retain_graph=True, allow_unused=True)
                    o3b[s] = float(group_dot(t3, s))
        H += n * Hb
        gb += n * gbb
        o3 += n * o3b
        n_total += n
    if n_total == 0:
        raise DataError("the loader for H-bar/g-bar gave no batches")
    H = 0.5 * (H + H.T) / n_total
    return HGSummary(H_bar=H, g_bar=gb / n_total, order3=o3 / n_total, num_samples=n_total)


# ----------------------------------------------------------------------------- learning rates
def _is_pd(M: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(M)
    except np.linalg.LinAlgError:
        return False
    return True


def newton_lrs(H_bar: Tensor, g_bar: Tensor) -> Tensor:
    """``eta = H_bar^{-1} g_bar`` (least squares when ``H_bar`` is singular), float64."""
    H = H_bar.detach().double().cpu()
    g = g_bar.detach().double().cpu()
    try:
        return torch.linalg.solve(H, g)
    except RuntimeError:
        return torch.linalg.lstsq(H, g.unsqueeze(1)).solution.squeeze(1)


def nesterov_lrs(H_bar: Tensor, g_bar: Tensor, order3: Tensor, *, damping_int: float = 1.0) -> Tensor:
    """Learning rates of the anisotropic Nesterov cubic-regularized problem.

    Solves ``eta = (H_bar + damping_int / 2 * ||D eta|| * D^2)^{-1} g_bar`` with
    ``D = diag(|order3|^(1/3))``, taking the solution of largest ``r = ||D eta||``: the unique root of
    ``||D eta(r)|| = r`` on the set where ``H_bar + c r D^2`` is positive definite (``c = damping_int / 2``).
    With ``damping_int = 0`` or ``D = 0`` this is Newton's ``H_bar^{-1} g_bar`` (when ``H_bar`` is positive
    definite). When no ``r`` makes the matrix positive definite (negative curvature in a direction that
    ``D`` does not see), the learning rates are zero and a warning is issued.

    Args:
        H_bar: (S, S) symmetric.
        g_bar: (S,).
        order3: (S,) third derivatives; only ``|order3|^(1/3)`` is used.
        damping_int: ``lambda_int`` >= 0.

    Returns:
        ``eta`` (S,), float64 on the CPU.
    """
    check_positive("damping_int", damping_int, allow_zero=True)
    H = H_bar.detach().double().cpu().numpy()
    g = g_bar.detach().double().cpu().numpy()
    D = np.abs(order3.detach().double().cpu().numpy()) ** (1.0 / 3.0)
    c = 0.5 * damping_int
    if c == 0.0 or not np.any(D > 0):
        if not _is_pd(H):
            warnings.warn(
                "H-bar is not positive definite and there is no cubic term; eta = H^-1 g", stacklevel=2
            )
        return newton_lrs(H_bar, g_bar)
    D2 = np.diag(D**2)

    def eta(r: float) -> np.ndarray:
        return np.linalg.solve(H + c * r * D2, g)

    def phi(r: float) -> float:
        return float(np.linalg.norm(D * eta(r))) - r

    # smallest r >= 0 with H + c r D^2 positive definite
    if _is_pd(H):
        r_lo = 0.0
    else:
        hi = 1.0
        while not _is_pd(H + c * hi * D2):
            hi *= 2.0
            if hi > 1e30:
                warnings.warn(
                    "no cubic regularization makes H-bar positive definite; learning rates set to 0",
                    stacklevel=2,
                )
                return torch.zeros(len(g), dtype=torch.float64)
        lo = 0.0
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if _is_pd(H + c * mid * D2):
                hi = mid
            else:
                lo = mid
            if hi - lo <= 1e-15 * hi:
                break
        r_lo = hi
    if phi(r_lo) <= 0.0:
        return torch.from_numpy(eta(r_lo))
    b = max(1.0, 2.0 * r_lo)
    while phi(b) > 0.0:
        b *= 2.0
    r = brentq(phi, r_lo, b, xtol=1e-300, rtol=1e-15, maxiter=500)
    return torch.from_numpy(eta(r))


# ----------------------------------------------------------------------------- optimizer
class NewtonSummary(torch.optim.Optimizer):
    """Newton-summary optimizer (Wolinski 2023): per-group learning rates from H-bar, g-bar and D.

    The direction is ``u = buf`` with ``buf <- momentum * buf + (1 - dampening) * g`` (``u = g`` without
    momentum). Every ``period_hg`` steps, ``H_bar``, ``g_bar`` and ``order3`` are computed along ``u`` on
    ``hg_loader`` and new rates ``eta`` solved (``nesterov_lrs``, or Newton's ``H_bar^{-1} g_bar`` when
    ``damping_int`` is 0); negative rates are zeroed with ``remove_negative``; the rates are smoothed as
    ``eta <- mom_lrs * eta_old + (1 - mom_lrs) * eta_new``. Group ``s`` then moves by
    ``-damping * eta_s * u_s``; ``eta`` is kept in each group as ``"eta"``.

    Args:
        params: parameter groups (the partition; see ``partition``), or an iterable of tensors (one group).
        full_loss: ``full_loss(x, target) -> scalar`` mean loss of a batch.
        hg_loader: the loader for H-bar/g-bar/D (deterministic; typically a fixed subset).
        damping: global factor ``lambda_1`` > 0 on the learning rates.
        damping_int: internal damping ``lambda_int`` >= 0 of the cubic regularization (0: Newton).
        period_hg: recompute the rates every this many steps.
        mom_lrs: smoothing factor of the rates, in [0, 1).
        remove_negative: set negative rates to zero.
        momentum: momentum of the direction, in [0, 1).
        dampening: dampening of that momentum, in [0, 1).

    Attributes:
        last_summary: the ``HGSummary`` of the latest recomputation.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        full_loss: FullLoss,
        hg_loader: Iterable[Any],
        *,
        damping: float = 1.0,
        damping_int: float = 1.0,
        period_hg: int = 1,
        mom_lrs: float = 0.0,
        remove_negative: bool = False,
        momentum: float = 0.0,
        dampening: float = 0.0,
    ) -> None:
        if not callable(full_loss):
            raise ConfigError(f"full_loss={full_loss!r} must be callable as full_loss(x, target)")
        if hg_loader is None:
            raise ConfigError("hg_loader=None: NewtonSummary needs a loader for H-bar and g-bar")
        check_positive("damping", damping)
        check_positive("damping_int", damping_int, allow_zero=True)
        check_int("period_hg", period_hg)
        check_range("mom_lrs", mom_lrs, 0.0, 1.0)
        check_range("momentum", momentum, 0.0, 1.0)
        check_range("dampening", dampening, 0.0, 1.0)
        defaults = dict(lr=damping, eta=None, eta_raw=None)
        super().__init__(params, defaults)
        self.full_loss = full_loss
        self.hg_loader = hg_loader
        self.damping_int = damping_int
        self.period_hg = period_hg
        self.mom_lrs = mom_lrs
        self.remove_negative = remove_negative
        self.momentum = momentum
        self.dampening = dampening
        self.last_summary: HGSummary | None = None

    @property
    def damping(self) -> float:
        return float(self.param_groups[0]["lr"])

    def _directions(self) -> list[list[Tensor]]:
        dirs = []
        for group in self.param_groups:
            ds = []
            for p in group["params"]:
                if p.grad is None:
                    ds.append(torch.zeros_like(p))
                    continue
                g = p.grad.detach()
                if self.momentum == 0:
                    ds.append(g.clone())
                    continue
                st = self.state[p]
                buf = st.get("momentum_buffer")
                if buf is None:
                    buf = st["momentum_buffer"] = g.clone()
                else:
                    buf.mul_(self.momentum).add_(g, alpha=1.0 - self.dampening)
                ds.append(buf.clone())
            dirs.append(ds)
        return dirs

    def _steps_taken(self) -> int:
        return int(self.param_groups[0].get("steps", 0))

    def _update_rates(self, dirs: list[list[Tensor]]) -> None:
        groups = [list(g["params"]) for g in self.param_groups]
        summary = compute_hg(groups, dirs, self.full_loss, self.hg_loader)
        self.last_summary = summary
        if self.damping_int > 0:
            eta = nesterov_lrs(summary.H_bar, summary.g_bar, summary.order3, damping_int=self.damping_int)
        else:
            eta = newton_lrs(summary.H_bar, summary.g_bar)
        if self.remove_negative:
            eta = eta.clamp(min=0.0)
        for group, e in zip(self.param_groups, eta.tolist()):
            old = group["eta"]
            group["eta_raw"] = e
            group["eta"] = e if old is None else self.mom_lrs * old + (1.0 - self.mom_lrs) * e

    def step(self, closure: Closure | None = None) -> Tensor | None:  # type: ignore[override]
        """One step with the gradient in ``.grad`` (computed by ``closure`` when given).

        Returns:
            The closure's loss, detached, or ``None``.
        """
        loss = call_closure(closure) if closure is not None else None
        dirs = self._directions()
        k = self._steps_taken()
        if k % self.period_hg == 0 or any(g["eta"] is None for g in self.param_groups):
            self._update_rates(dirs)
        with torch.no_grad():
            for group, ds in zip(self.param_groups, dirs):
                scale = group["lr"] * group["eta"]
                for p, d in zip(group["params"], ds):
                    p.add_(d, alpha=-scale)
                group["steps"] = k + 1
        return loss
