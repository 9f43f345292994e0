"""SGD-Hess: SGD on a gradient rescaled by a Hutchinson estimate of the Hessian diagonal.

From the empirical SAM study (Luong 2024, https://github.com/lhchau/empirical-sam): a first-order
expansion of SAM's gradient is ``grad L(w + rho g) ~ (I + rho H) g``, i.e. SAM rescales the gradient by
the curvature. SGD-Hess keeps that rescaling with a diagonal, AdaHessian-style (Yao et al., AAAI 2021,
arXiv 2006.00719) estimate:

    d = g + rho * g * |H z|,    z ~ Rademacher (z_i = +-1),

where ``|H z| = |z * H z|`` is a one-probe Hutchinson estimate of ``|diag(H)|``. The probe is refreshed
every ``hessian_period`` steps and reused in between. ``d`` then goes through SGD with momentum and
(coupled) weight decay: ``buf = mu * buf + d + wd * w``, ``w <- w - lr * buf``.

Hessian-vector products need the gradient graph: on probe steps (``needs_create_graph`` is True) the
loss must be back-propagated with ``loss.backward(create_graph=True)``; ``landscape.optim.training_step``
does this automatically.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from landscape.errors import ConfigError, LandscapeError, check_positive
from landscape.optim._common import Closure, call_closure, check_int, check_range


class SGDHess(torch.optim.Optimizer):
    """SGD with the gradient rescaled by ``1 + rho * |Hz|``.

    Args:
        params: parameters or parameter groups.
        lr: learning rate, > 0.
        rho: strength of the curvature rescaling, >= 0 (``rho = 0`` is plain SGD).
        hessian_period: draw a new Rademacher probe every this many steps (k >= 1).
        momentum: heavy-ball momentum in [0, 1).
        weight_decay: coupled L2 penalty, >= 0.
        seed: the probe of the j-th probe step is drawn from ``torch.Generator().manual_seed(seed + j)``,
            so a resumed run draws the same probes as an uninterrupted one.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.01,
        *,
        rho: float = 0.05,
        hessian_period: int = 1,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        seed: int = 0,
    ) -> None:
        check_positive("lr", lr)
        check_positive("rho", rho, allow_zero=True)
        check_int("hessian_period", hessian_period)
        check_range("momentum", momentum, 0.0, 1.0)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        defaults = dict(lr=lr, rho=rho, momentum=momentum, weight_decay=weight_decay)
        super().__init__(params, defaults)
        self.hessian_period = hessian_period
        self.seed = int(seed)

    def _step_count(self) -> int:
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state.get(p)
                if st and "step" in st:
                    return int(st["step"])
        return 0

    @property
    def needs_create_graph(self) -> bool:
        """Whether the next step draws a probe (and so needs ``backward(create_graph=True)``)."""
        return self._step_count() % self.hessian_period == 0

    def _probe(self, params: list[Tensor], grads: list[Tensor], step: int) -> list[Tensor]:
        if any(g.grad_fn is None for g in grads):
            raise LandscapeError(
                "SGDHess needs the gradient graph on probe steps: call loss.backward(create_graph=True) "
                "when optimizer.needs_create_graph is True (landscape.optim.training_step does this)"
            )
        gen = torch.Generator().manual_seed(self.seed + step // self.hessian_period)
        zs = [
            (torch.randint(0, 2, p.shape, generator=gen, dtype=torch.int8) * 2 - 1).to(p.device, p.dtype)
            for p in params
        ]
        hz = torch.autograd.grad(grads, params, grad_outputs=zs, allow_unused=True)
        return [torch.zeros_like(p) if h is None else h.detach().abs() for p, h in zip(params, hz)]

    def step(self, closure: Closure | None = None) -> Tensor | None:  # type: ignore[override]
        """One step. ``closure`` (optional) zeroes gradients, runs forward/backward, returns the loss.

        Returns:
            The closure's loss, detached, or ``None`` without a closure.
        """
        loss = None
        if closure is not None:
            loss = call_closure(closure)
        step = self._step_count()
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not params:
            return loss
        if step % self.hessian_period == 0:
            diags = self._probe(params, [p.grad for p in params], step)
            for p, d in zip(params, diags):
                self.state[p]["hess_diag"] = d
        for p in params:  # drop the graph: breaks the parameter -> grad -> parameter reference cycle
            p.grad = p.grad.detach()
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    st = self.state[p]
                    if "hess_diag" not in st:
                        raise ConfigError("SGDHess state has no Hessian diagonal; load a complete state_dict")
                    d = p.grad + group["rho"] * p.grad * st["hess_diag"]
                    if group["weight_decay"] != 0:
                        d = d.add(p, alpha=group["weight_decay"])
                    if group["momentum"] != 0:
                        buf = st.get("momentum_buffer")
                        if buf is None:
                            buf = st["momentum_buffer"] = d.clone()
                        else:
                            buf.mul_(group["momentum"]).add_(d)
                        d = buf
                    p.add_(d, alpha=-group["lr"])
                    st["step"] = step + 1
        return loss
