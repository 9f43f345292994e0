"""Fisher-Rao norm (Liang et al. 2019, as used by Jiang et al. 2019, "Fantastic generalization measures").

    FR(w) = (1/N) sum_i <w, grad_w l(f_w(x_i), y_i)>^2

over every differentiated parameter. ``<w, grad l_i>`` is the directional derivative of the
per-sample loss along ``w`` itself, so one forward-mode product (``torch.func.jvp`` of the network
with tangent ``w``) gives it for every example of a batch at once, through the chain rule
``<w, grad l_i> = <dl_i/df_i, J_i w>``: no per-sample gradients are formed. Liang et al.'s identity
``<w, grad l> = (d + 1) <f, dl/df>`` for bias-free ReLU nets of depth ``d`` motivates the optional
factor ``(d + 1)^2`` (Jiang et al.'s definition); it is off by default.
"""

from __future__ import annotations

import math

import torch

from landscape.measures.common import MeasureResult, MeasureRun
from landscape.measures.options import MeasureOptions
from landscape.objective.core import Objective


def directional_derivatives(objective: Objective, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``<w, grad_w l(f_w(x_i), y_i)>`` for every example of a batch, from one jvp along ``w``.

    The jvp of the network gives ``df_i = J_i w`` for every output at once; the chain rule then
    needs only ``dl_i / df_i``, which is ``B dL / df_i`` for a batch-mean loss ``L = (1/B) sum_i l_i``
    (a backward pass through the loss alone, not the network).
    """
    names = objective.param_names
    primals = tuple(p.detach() for p in objective.params)

    def outputs(*params: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(objective.model, dict(zip(names, params)), (x,), strict=False)

    with objective.model_mode():  # the objective's batch-norm mode, never the caller's training mode
        out, d_out = torch.func.jvp(outputs, primals, primals)
    out = out.detach().requires_grad_(True)
    with torch.enable_grad():
        (dl_dout,) = torch.autograd.grad(objective.loss_fn(out, y), out)
    return len(y) * (dl_dout * d_out).reshape(len(y), -1).sum(dim=1)


def fisher_rao_norm(objective: Objective, options: MeasureOptions | None = None) -> MeasureResult:
    """The Fisher-Rao norm ``(1/N) sum_i <w, grad l_i>^2`` (times ``(d + 1)^2`` if ``fisher_rao_depth``).

    Args:
        objective: the loss over a fixed sample; ``loss_fn`` must be the plain mean of per-example
            losses (as for ``nn.CrossEntropyLoss()`` and ``nn.MSELoss()`` with default arguments).
        options: ``fisher_rao_depth`` (``None``: no depth factor).

    Returns:
        :class:`MeasureResult` ``'fisher-rao'`` (deterministic: ``stderr`` and ``seed`` are ``None``).
        The cost is one forward-mode pass over the sample (counted as one forward pass).
    """
    run = MeasureRun.start(objective, options)
    opts, cost = run.options, run.cost
    squares: list[float] = []
    for x, y, _ in objective.batches():
        d = directional_derivatives(objective, x, y).detach().double()
        squares.append(float(d.pow(2).sum()))
        cost.add(len(y))
    value = math.fsum(squares) / objective.num_samples
    factor = 1.0 if opts.fisher_rao_depth is None else float((opts.fisher_rao_depth + 1) ** 2)
    return run.result(
        "fisher-rao",
        factor * value,
        None,
        settings={"depth": opts.fisher_rao_depth, "depth_factor": factor},
        seed=None,
        details={"without_depth_factor": value},
    )
