"""Fisher-Rao norm (Liang et al. 2019, as used by Jiang et al. 2019, "Fantastic generalization measures").

    FR(w) = (1/N) sum_i <w, grad_w l(f_w(x_i), y_i)>^2

over every differentiated parameter. ``<w, grad l_i>`` is the directional derivative of the
per-sample loss along ``w`` itself, so one forward-mode product (``torch.func.jvp`` with tangent
``w``) of the vector of per-sample losses (``torch.func.vmap`` over one-example batches) gives it for
every example of a batch at once: no per-sample gradients are formed. Liang et al.'s identity
``<w, grad l> = (d + 1) <f, dl/df>`` for bias-free ReLU nets of depth ``d`` motivates the optional
factor ``(d + 1)^2`` (Jiang et al.'s definition); it is off by default.
"""

from __future__ import annotations

import math
import time

import torch

from landscape.measures.common import Cost, MeasureResult, check_objective
from landscape.measures.options import MeasureOptions
from landscape.objective import Objective


def directional_derivatives(objective: Objective, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``<w, grad_w l(f_w(x_i), y_i)>`` for every example of a batch, by one jvp along ``w``."""
    names = objective.param_names
    primals = tuple(p.detach() for p in objective.params)

    def per_sample_losses(*params: torch.Tensor) -> torch.Tensor:
        sub = dict(zip(names, params))

        def one(xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
            return objective.functional_batch_loss(sub, xi.unsqueeze(0), yi.unsqueeze(0))

        return torch.func.vmap(one)(x, y)

    return torch.func.jvp(per_sample_losses, primals, primals)[1]


def fisher_rao_norm(objective: Objective, options: MeasureOptions | None = None) -> MeasureResult:
    """The Fisher-Rao norm ``(1/N) sum_i <w, grad l_i>^2`` (times ``(d + 1)^2`` if ``fisher_rao_depth``).

    Args:
        objective: the loss over a fixed sample; ``loss_fn`` applied to a one-example batch must give
            that example's loss (true for the mean-reduced losses of ``torch.nn``).
        options: ``fisher_rao_depth`` (``None``: no depth factor).

    Returns:
        :class:`MeasureResult` ``'fisher-rao'`` (deterministic: ``stderr`` and ``seed`` are ``None``).
        The cost is one forward-mode pass over the sample (counted as one forward pass).
    """
    opts = options or MeasureOptions()
    opts.validate()
    check_objective(objective)
    t0 = time.perf_counter()
    cost = Cost(objective.num_samples)
    squares: list[float] = []
    for x, y, _ in objective.batches():
        d = directional_derivatives(objective, x, y).detach().double()
        squares.append(float(d.pow(2).sum()))
        cost.add(len(y))
    value = math.fsum(squares) / objective.num_samples
    factor = 1.0 if opts.fisher_rao_depth is None else float((opts.fisher_rao_depth + 1) ** 2)
    return MeasureResult(
        name="fisher-rao",
        value=factor * value,
        stderr=None,
        settings={"depth": opts.fisher_rao_depth, "depth_factor": factor},
        seed=None,
        forward_passes=cost.forward,
        backward_passes=cost.backward,
        seconds=time.perf_counter() - t0,
        details={"without_depth_factor": value},
        objective=objective.metadata(),
    )
