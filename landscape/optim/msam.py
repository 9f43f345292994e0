"""Momentum-SAM (Becker, Altrock & Risse, TMLR 2024, arXiv 2401.12033) and AdamW-MSAM-ScheduleFree.

**Momentum-SAM** needs no extra gradient: the perturbation is taken along the *negative* normalized
momentum ``v`` of SGD (``v <- mu v + g``, ``w <- w - lr v``):

    w~_t = w_t - rho * v_t / ||v_t||,   g = grad L(w~_t),   v_{t+1} = mu v_t + g + wd w_t,
    w_{t+1} = w_t - lr v_{t+1}.

During training the model holds the perturbed point ``w~`` (so the next forward pass computes the
perturbed gradient); ``eval()`` / ``move_from_ascent()`` restore the unperturbed ``w`` exactly from a
saved copy and ``train()`` / ``move_to_ascent()`` go back.

**AdamW-MSAM-ScheduleFree** follows the seed design (Adam moments, MSAM ascent along the normalized
ascent momentum, decoupled weight decay, schedule-free averaging of Defazio et al., NeurIPS 2024,
arXiv 2405.15682). At step ``t`` (from 1), with gradient ``g_t`` taken at the ascent point:

    alpha_t = lr * min(1, t / warmup_steps) * sqrt(1 - beta2^t) / (1 - beta1^t)
    m_t = beta1 m_{t-1} + (1 - beta1) g_t,      v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
    ascent point: y_{t-1} + rho * a_{t-1} / ||a_{t-1}||          (gradient g_t taken there;
                                                       -rho with negative_momentum=True)
    z_t = z_{t-1} - alpha_t m_t / (sqrt(v_t) + eps) - alpha_t * lambda * z_{t-1}
    a_t = beta1 a_{t-1} + g_t
    w_t = t^r * (max_{s<=t} alpha_s)^p,         c_t = w_t / sum_{i<=t} w_i
    x_t = (1 - c_t) x_{t-1} + c_t z_t            (so x_t = sum_i w_i z_i / sum_i w_i)
    y_t = (1 - beta_i) z_t + beta_i x_t          (``interpolation`` beta_i; 0 gives y = z)

The model holds ``y`` in train mode and ``x`` in eval mode. Two readings of the seed are made explicit:
its training loop moves back from the ascent point before ``step()``, so the update (and the weight
decay) applies to the unperturbed iterate; and its averaging ``theta_t = (1 - c_t) theta_{t-1} + c_t
theta''_t`` is read as the schedule-free average ``x`` of the base sequence ``z``. The seed's loop also
does a first, unused backward pass at ``y`` without zeroing gradients in between; ``step(closure)``
takes the one pass the update needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from landscape.errors import ConfigError, check_positive
from landscape.optim._common import Closure, call_closure, check_range


def _global_norm(tensors: list[Tensor]) -> Tensor:
    device = tensors[0].device
    return torch.linalg.vector_norm(torch.stack([t.norm().to(device) for t in tensors]))


class _AscentMixin(torch.optim.Optimizer):
    """Exact move to / from an ascent point, and train/eval bookkeeping shared by both optimizers."""

    _momentum_key: str = "momentum_buffer"
    _ascent_sign: float = -1.0

    def _params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    @property
    def at_ascent(self) -> bool:
        """Whether the parameters now hold the perturbed (ascent) point."""
        return any("base_p" in self.state[p] for p in self._params() if p in self.state)

    @property
    def train_mode(self) -> bool:
        return bool(self.param_groups[0]["train_mode"])

    @torch.no_grad()
    def move_to_ascent(self) -> None:
        """Save the parameters and move them by ``sign * rho * m / ||m||`` (no-op without momentum)."""
        if self.at_ascent:
            return
        moms = [
            self.state[p][self._momentum_key] for p in self._params() if self._momentum_key in self.state[p]
        ]
        if not moms:
            return
        norm = _global_norm(moms)
        if float(norm) == 0.0:
            return
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state[p]
                if self._momentum_key not in st:
                    continue
                st["base_p"] = p.detach().clone()
                sign = group.get("ascent_sign", self._ascent_sign)
                p.add_(st[self._momentum_key], alpha=sign * group["rho"] / float(norm))

    @torch.no_grad()
    def move_from_ascent(self) -> None:
        """Restore the parameters saved by ``move_to_ascent`` exactly (no-op when not at the ascent)."""
        for p in self._params():
            st = self.state.get(p)
            if st is not None and "base_p" in st:
                p.copy_(st.pop("base_p"))

    def _require_train(self) -> None:
        if not self.train_mode:
            raise ConfigError(
                f"{type(self).__name__}.step() called in eval mode; call optimizer.train() before training "
                "and optimizer.eval() before evaluation"
            )


class MSAM(_AscentMixin):
    """Momentum-SAM: SGD with momentum whose gradients are taken at ``w - rho * v / ||v||``.

    Args:
        params: parameters or parameter groups.
        lr: learning rate, > 0.
        momentum: ``mu`` in [0, 1).
        rho: perturbation radius, >= 0.
        weight_decay: coupled L2 penalty at the unperturbed point, >= 0.

    ``step(closure)``: the closure zeroes the gradients, computes the loss at the parameters as they are
    (the perturbed point in train mode), calls ``backward`` and returns the loss; ``step`` returns that
    loss. Call ``eval()`` before evaluating (restores ``w`` exactly) and ``train()`` after.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.1,
        *,
        momentum: float = 0.9,
        rho: float = 0.3,
        weight_decay: float = 0.0,
    ) -> None:
        check_positive("lr", lr)
        check_range("momentum", momentum, 0.0, 1.0)
        check_positive("rho", rho, allow_zero=True)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        super().__init__(
            params, dict(lr=lr, momentum=momentum, rho=rho, weight_decay=weight_decay, train_mode=True)
        )

    def step(self, closure: Closure | None = None) -> Tensor | None:  # type: ignore[override]
        """One MSAM step with the gradient now in ``.grad`` (or computed by ``closure``)."""
        self._require_train()
        loss = call_closure(closure) if closure is not None else None
        self.move_from_ascent()
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    st = self.state[p]
                    d = p.grad.detach()
                    if group["weight_decay"] != 0:
                        d = d.add(p, alpha=group["weight_decay"])
                    buf = st.get(self._momentum_key)
                    if buf is None:
                        buf = st[self._momentum_key] = d.clone()
                    else:
                        buf.mul_(group["momentum"]).add_(d)
                    p.add_(buf, alpha=-group["lr"])
        self.move_to_ascent()
        return loss

    def eval(self) -> None:
        """Put the unperturbed parameters in the model (for evaluation or saving)."""
        self.move_from_ascent()
        for group in self.param_groups:
            group["train_mode"] = False

    def train(self) -> None:
        """Go back to the perturbed point for training."""
        for group in self.param_groups:
            group["train_mode"] = True
        self.move_to_ascent()


class AdamWMSAMScheduleFree(_AscentMixin):
    """AdamW with Momentum-SAM ascent and schedule-free averaging (formula in the module docstring).

    Args:
        params: parameters or parameter groups.
        lr: peak learning rate, > 0.
        betas: ``(beta1, beta2)`` in [0, 1).
        eps: Adam's epsilon, > 0.
        weight_decay: decoupled weight decay ``lambda``, >= 0.
        rho: MSAM ascent radius, >= 0.
        warmup_steps: linear warmup length (0: none).
        r: exponent of ``t`` in the averaging weights.
        weight_lr_power: exponent ``p`` of the maximal learning rate in the averaging weights.
        interpolation: ``beta_i`` of ``y = (1 - beta_i) z + beta_i x``, in [0, 1).
        negative_momentum: perturb along ``-a / ||a||`` as Momentum-SAM and the official AdamW_MSAM
            (MarlonBecker/MSAM) do, instead of the seed formula's ``+a / ||a||``.

    Attributes:
        Per group after each step: ``"k"`` (steps taken), ``"lr_max"``, ``"weight_sum"``, ``"last_c"``
        (the ``c_t`` just used) and ``"last_alpha"``.
    """

    _momentum_key = "ascent_momentum"
    _ascent_sign = 1.0

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.0025,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        rho: float = 0.05,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        interpolation: float = 0.0,
        negative_momentum: bool = False,
    ) -> None:
        check_positive("lr", lr)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ConfigError(f"betas={betas!r} must be a pair (beta1, beta2)")
        check_range("betas[0]", betas[0], 0.0, 1.0)
        check_range("betas[1]", betas[1], 0.0, 1.0)
        check_positive("eps", eps)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        check_positive("rho", rho, allow_zero=True)
        if int(warmup_steps) != warmup_steps or warmup_steps < 0:
            raise ConfigError(f"warmup_steps={warmup_steps!r} must be an integer >= 0")
        check_positive("r", r, allow_zero=True)
        check_positive("weight_lr_power", weight_lr_power, allow_zero=True)
        check_range("interpolation", interpolation, 0.0, 1.0)
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            rho=rho,
            warmup_steps=int(warmup_steps),
            r=r,
            weight_lr_power=weight_lr_power,
            interpolation=interpolation,
            ascent_sign=-1.0 if negative_momentum else 1.0,
            train_mode=True,
            k=0,
            lr_max=0.0,
            weight_sum=0.0,
            last_c=0.0,
            last_alpha=0.0,
        )
        super().__init__(params, defaults)

    @staticmethod
    def _y(z: Tensor, x: Tensor, beta_i: float) -> Tensor:
        return z.clone() if beta_i == 0 else z * (1.0 - beta_i) + x * beta_i

    @staticmethod
    def alpha(group: dict[str, Any], t: int) -> float:
        """``alpha_t = lr * min(1, t / warmup) * sqrt(1 - beta2^t) / (1 - beta1^t)``."""
        beta1, beta2 = group["betas"]
        warm = min(1.0, t / group["warmup_steps"]) if group["warmup_steps"] > 0 else 1.0
        return group["lr"] * warm * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)

    def step(self, closure: Closure | None = None) -> Tensor | None:  # type: ignore[override]
        """One step.

        With a closure: move to the ascent point, ``loss = closure()`` (zero grads, forward, backward,
        return loss), move back, update; returns that loss (taken at the ascent point). Without one:
        the gradients in ``.grad`` are used (the seed's loop: ``move_to_ascent()``, backward,
        ``move_from_ascent()``, ``step()``).
        """
        self._require_train()
        loss = None
        if closure is not None:
            self.move_to_ascent()
            try:
                loss = call_closure(closure)
            finally:
                self.move_from_ascent()
        self.move_from_ascent()
        with torch.no_grad():
            for group in self.param_groups:
                t = group["k"] + 1
                beta1, beta2 = group["betas"]
                alpha = self.alpha(group, t)
                lr_max = max(group["lr_max"], alpha)
                weight = (t ** group["r"]) * (lr_max ** group["weight_lr_power"])
                weight_sum = group["weight_sum"] + weight
                c = weight / weight_sum if weight_sum > 0 else 1.0
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    g = p.grad.detach()
                    st = self.state[p]
                    if "z" not in st:
                        st["z"] = p.detach().clone()
                        st["x"] = p.detach().clone()
                        st["exp_avg"] = torch.zeros_like(p)
                        st["exp_avg_sq"] = torch.zeros_like(p)
                        st[self._momentum_key] = torch.zeros_like(p)
                    z, x = st["z"], st["x"]
                    st["exp_avg"].mul_(beta1).add_(g, alpha=1.0 - beta1)
                    st["exp_avg_sq"].mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
                    denom = st["exp_avg_sq"].sqrt().add_(group["eps"])
                    z.mul_(1.0 - alpha * group["weight_decay"]).addcdiv_(st["exp_avg"], denom, value=-alpha)
                    st[self._momentum_key].mul_(beta1).add_(g)
                    x.mul_(1.0 - c).add_(z, alpha=c)
                    p.copy_(self._y(z, x, group["interpolation"]))
                group.update(k=t, lr_max=lr_max, weight_sum=weight_sum, last_c=c, last_alpha=alpha)
        return loss

    @torch.no_grad()
    def eval(self) -> None:
        """Put the averaged sequence ``x`` in the model."""
        self.move_from_ascent()
        for group in self.param_groups:
            if group["train_mode"]:
                for p in group["params"]:
                    if "x" in self.state.get(p, {}):
                        p.copy_(self.state[p]["x"])
            group["train_mode"] = False

    @torch.no_grad()
    def train(self) -> None:
        """Put the gradient-evaluation sequence ``y`` back in the model (bit-identical to before ``eval``)."""
        for group in self.param_groups:
            if not group["train_mode"]:
                for p in group["params"]:
                    st = self.state.get(p, {})
                    if "z" in st:
                        p.copy_(self._y(st["z"], st["x"], group["interpolation"]))
            group["train_mode"] = True
