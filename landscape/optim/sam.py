"""Sharpness-Aware Minimization (Foret et al., ICLR 2021, arXiv 2010.01412), ASAM (Kwon et al., ICML 2021,
arXiv 2102.11600), and the SAM-direction / SAM-magnitude variants of the empirical SAM study.

SAM step with gradient ``g = grad L(w)``:

* ``e = rho * g / ||g||`` (ASAM: ``e = rho * T^2 g / ||T g||`` with ``T = diag(|w|)``);
* ``g_SAM = grad L(w + e)``;
* restore ``w`` exactly from a saved copy and let the base optimizer step with ``g_SAM``.

The conventions are those of davda54/sam: ``first_step(zero_grad)``, ``second_step(zero_grad)``, a
``base_optimizer`` class built on the same ``param_groups`` (so LR schedulers attached to the SAM
optimizer drive the base optimizer), and ``step(closure)``. Unlike davda54/sam, ``step(closure)`` also
computes the first gradient: the closure is called twice (at ``w`` and at ``w + e``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from landscape.errors import ConfigError, check_choice, check_positive
from landscape.optim._common import (
    Closure,
    call_closure,
    frozen_bn_stats,
    link_to_base,
    require_closure,
    strip_state,
)
from landscape.optim.decompose import DECOMPOSITIONS, combine_direction_magnitude, magnitude_statistics
from landscape.optim.entry import BuildRequest

_TRANSIENT = ("old_p", "sgd_grad", "sam_grad")


class SAM(torch.optim.Optimizer):
    """Sharpness-Aware Minimization around any base optimizer.

    Args:
        params: parameters or parameter groups (groups may set their own ``rho``/``adaptive``).
        base_optimizer: the optimizer *class* (default ``torch.optim.SGD``); built with ``**kwargs`` on
            the shared parameter groups.
        rho: neighbourhood radius, >= 0.
        adaptive: ASAM's scale-invariant neighbourhood ``T = |w|``.
        model: optional; when given, ``step(closure)`` freezes its batch-norm running statistics
            during the second forward pass.
        track_stats: keep ``g_SGD`` to fill ``last_stats`` after each second step.
        **kwargs: base optimizer hyperparameters (``lr``, ``momentum``, ``weight_decay``, ...).

    Attributes:
        last_stats: after each completed step, ``{"grad_norm_ratio", "cosine", "frac_larger"}`` of
            ``g_SAM`` against ``g_SGD`` (see ``landscape.optim.decompose``), or ``None``.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[torch.optim.Optimizer] = torch.optim.SGD,
        *,
        rho: float = 0.05,
        adaptive: bool = False,
        model: nn.Module | None = None,
        track_stats: bool = True,
        **kwargs: Any,
    ) -> None:
        check_positive("rho", rho, allow_zero=True)
        if not (isinstance(base_optimizer, type) and issubclass(base_optimizer, torch.optim.Optimizer)):
            raise ConfigError(
                f"base_optimizer={base_optimizer!r} must be a torch.optim.Optimizer class (not an instance)"
            )
        defaults = dict(rho=rho, adaptive=adaptive, **kwargs)
        super().__init__(params, defaults)
        try:
            self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"base optimizer {base_optimizer.__name__} rejected {kwargs!r}: {exc}") from exc
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)
        link_to_base(self, self.base_optimizer)
        self.model = model
        self.track_stats = track_stats
        self.last_stats: dict[str, float] | None = None

    # ------------------------------------------------------------------ internals
    def _params_with_grad(self) -> list[tuple[dict[str, Any], Tensor]]:
        return [(g, p) for g in self.param_groups for p in g["params"] if p.grad is not None]

    def _grad_norm(self) -> Tensor:
        pairs = self._params_with_grad()
        if not pairs:
            return torch.zeros(())
        device = pairs[0][1].device
        norms = [
            ((p.abs() if g["adaptive"] else 1.0) * p.grad).norm(p=2).to(device)
            for g, p in pairs  # type: ignore[operator]
        ]
        return torch.linalg.vector_norm(torch.stack(norms))

    def _grads(self, key: str) -> list[Tensor]:
        return [self.state[p][key] for _, p in self._params_with_grad() if key in self.state[p]]

    # ------------------------------------------------------------------ API
    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Save ``w``, move to ``w + e`` with ``e = rho * T^2 g / ||T g||`` (``T = I`` for SAM)."""
        grad_norm = self._grad_norm()
        for group, p in self._params_with_grad():
            st = self.state[p]
            st["old_p"] = p.detach().clone()
            if self.track_stats:
                st["sgd_grad"] = p.grad.detach().clone()
            scale = group["rho"] / (grad_norm.to(p.device) + 1e-12)
            e_w = (p.pow(2) if group["adaptive"] else 1.0) * p.grad * scale
            p.add_(e_w)
        if zero_grad:
            self.zero_grad()

    def _transform_grads(self) -> None:
        """Hook for subclasses: rewrite ``p.grad`` (holding ``g_SAM``) before the base step."""

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore ``w`` exactly from the saved copy, then take the base optimizer's step with g_SAM."""
        pairs = self._params_with_grad()
        for _, p in pairs:
            st = self.state[p]
            if "old_p" not in st:
                raise ConfigError("second_step() called without first_step(); call first_step() first")
            p.copy_(st.pop("old_p"))
        if self.track_stats:
            sgd = [self.state[p]["sgd_grad"] for _, p in pairs if "sgd_grad" in self.state[p]]
            sam = [p.grad for _, p in pairs if "sgd_grad" in self.state[p]]
            self.last_stats = magnitude_statistics(sam, sgd) if sgd else None
        self._transform_grads()
        for _, p in pairs:
            self.state[p].pop("sgd_grad", None)
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Closure | None = None) -> Tensor:  # type: ignore[override]
        """One full SAM step.

        Args:
            closure: zeroes the gradients, runs forward and backward and returns the loss. It is called
                at ``w`` and again at ``w + e`` (with batch-norm statistics frozen when ``model`` was
                given).

        Returns:
            The loss at ``w`` (before the step), detached.
        """
        closure = require_closure(closure, type(self).__name__)
        self.zero_grad()
        loss = call_closure(closure)
        self.first_step(zero_grad=True)
        with frozen_bn_stats(self.model):
            call_closure(closure)
        self.second_step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        """The shared state (base optimizer buffers included) without the transient SAM copies."""
        return strip_state(super().state_dict(), _TRANSIENT)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        link_to_base(self, self.base_optimizer)


class _SAMDecomposed(SAM):
    """SAM whose final update combines the direction of one gradient with the magnitude of the other."""

    _direction_from_sam: bool = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[torch.optim.Optimizer] = torch.optim.SGD,
        *,
        rho: float = 0.05,
        decomposition: str = "global",
        adaptive: bool = False,
        model: nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        check_choice("decomposition", decomposition, DECOMPOSITIONS)
        super().__init__(
            params, base_optimizer, rho=rho, adaptive=adaptive, model=model, track_stats=True, **kwargs
        )
        self.decomposition = decomposition
        self.sgd_grad: list[Tensor] | None = None
        self.sam_grad: list[Tensor] | None = None

    @torch.no_grad()
    def _transform_grads(self) -> None:
        pairs = [(g, p) for g, p in self._params_with_grad() if "sgd_grad" in self.state[p]]
        params = [p for _, p in pairs]
        sgd = [self.state[p].pop("sgd_grad") for p in params]
        sam = [p.grad.detach().clone() for p in params]
        if self._direction_from_sam:
            new = combine_direction_magnitude(sam, sgd, decomposition=self.decomposition)
        else:
            new = combine_direction_magnitude(sgd, sam, decomposition=self.decomposition)
        for p, d in zip(params, new):
            p.grad.copy_(d)
        self.sgd_grad, self.sam_grad = sgd, sam


class SAMDirection(_SAMDecomposed):
    """SAM-direction: SAM's direction with SGD's magnitude (Luong 2024, empirical SAM study).

    ``global``: ``d = g_SAM / ||g_SAM|| * ||g_SGD||``; ``elementwise``: ``d_i = sign(g_SAM_i) |g_SGD_i|``.
    The base optimizer steps with ``d``. After each step ``sgd_grad`` and ``sam_grad`` hold the two
    gradients (lists, one tensor per parameter with a gradient) and ``last_stats`` their statistics.

    Args: as ``SAM``, plus ``decomposition`` (``"global"`` or ``"elementwise"``).
    """

    _direction_from_sam = True


class SAMMagnitude(_SAMDecomposed):
    """SAM-magnitude: SGD's direction with SAM's magnitude (Luong 2024, empirical SAM study).

    ``global``: ``d = g_SGD / ||g_SGD|| * ||g_SAM||``; ``elementwise``: ``d_i = sign(g_SGD_i) |g_SAM_i|``.
    Otherwise as ``SAMDirection``.
    """

    _direction_from_sam = False


def build_sam_family(
    cls: type, request: BuildRequest, *, adaptive: bool | None = None
) -> torch.optim.Optimizer:
    """Build SAM, ASAM, SAM-direction or SAM-magnitude around ``options['base_optimizer']`` (SGD).

    The base optimizer takes ``lr`` and ``weight_decay``, and ``momentum`` when it is SGD; ``adaptive``
    is passed where the entry fixes it (``sam``: False, ``asam``: True).
    """
    options = dict(request.options)
    base = options.pop("base_optimizer", torch.optim.SGD)
    base_kw: dict[str, Any] = {"lr": request.lr, "weight_decay": request.weight_decay}
    if base is torch.optim.SGD:
        base_kw["momentum"] = request.momentum
    fixed = {} if adaptive is None else {"adaptive": adaptive}
    return cls(request.params, base, rho=request.rho, model=request.model, **fixed, **base_kw, **options)
