"""Fisher-Rao norm (Liang et al. 2019, as used by Jiang et al. 2019, "Fantastic generalization measures").

    FR(w) = (1/N) sum_i <w, grad_w l(f_w(x_i), y_i)>^2

over every differentiated parameter. For a token-level objective the terms ``i`` are its ``N`` counted
tokens (the objective is their mean), so ``l_i`` is one token's loss. ``<w, grad l_i>`` is the directional derivative of the
per-sample loss along ``w`` itself, so one forward-mode product (``torch.func.jvp`` of the network
with tangent ``w``) gives it for every example of a batch at once, through the chain rule
``<w, grad l_i> = <dl_i/df_i, J_i w>``: no per-sample gradients are formed. Liang et al.'s identity
``<w, grad l> = (d + 1) <f, dl/df>`` for bias-free ReLU nets of depth ``d`` motivates the optional
factor ``(d + 1)^2`` (Jiang et al.'s definition); it is off by default.
"""

from __future__ import annotations

import math

import torch

from landscape.hessian.attention import second_order_attention
from landscape.measures.common import MeasureResult, MeasureRun
from landscape.measures.options import MeasureOptions
from landscape.objective.core import Objective
from landscape.objective.inputs import Inputs


def directional_derivatives(objective: Objective, x: Inputs, y: torch.Tensor) -> torch.Tensor:
    """``<w, grad_w l_i>`` for every term of a batch (example, or token), from one jvp along ``w``.

    The jvp of the network gives ``df_i = J_i w`` for every output at once; the chain rule then
    needs only ``dl_i / df_i``, which is ``B dL / df_i`` for a batch-mean loss ``L = (1/B) sum_i l_i``
    over ``B`` terms (a backward pass through the loss alone, not the network). For token outputs
    ``(N, T, V)`` a term is a counted token and the result is ``(N, T)``, zero where nothing is
    counted (padding, and the last position of a causal model).
    """
    names = objective.param_names
    primals = tuple(p.detach() for p in objective.params)

    def outputs(*params: torch.Tensor) -> torch.Tensor:
        return objective.functional_outputs(dict(zip(names, params)), x)

    # forward-mode through attention needs the math kernel, as every product does
    with objective.model_mode(), second_order_attention():
        out, d_out = torch.func.jvp(outputs, primals, primals)
    out = out.detach().requires_grad_(True)
    with torch.enable_grad():
        (dl_dout,) = torch.autograd.grad(objective.loss_fn(out, y), out)
    per_term = dl_dout * d_out
    if objective.token_level:  # sum over the vocabulary only: one value per position
        return _batch_terms(objective, y) * per_term.sum(dim=-1)
    return len(y) * per_term.reshape(len(y), -1).sum(dim=1)


def _batch_terms(objective: Objective, y: torch.Tensor) -> int:
    """The number of terms the batch-mean loss averages (counted tokens of a token batch)."""
    count = getattr(objective.loss_fn, "num_terms", None)
    return int(count(y)) if callable(count) else len(y)


def fisher_rao_norm(objective: Objective, options: MeasureOptions | None = None) -> MeasureResult:
    """The Fisher-Rao norm ``(1/N) sum_i <w, grad l_i>^2`` (times ``(d + 1)^2`` if ``fisher_rao_depth``).

    Args:
        objective: the loss over a fixed sample; ``loss_fn`` must be the plain mean of per-example
            losses (as for ``nn.CrossEntropyLoss()`` and ``nn.MSELoss()`` with default arguments), or
            of per-token losses for token outputs (the default cross-entropy).
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
    value = math.fsum(squares) / objective.num_terms
    factor = 1.0 if opts.fisher_rao_depth is None else float((opts.fisher_rao_depth + 1) ** 2)
    return run.result(
        "fisher-rao",
        factor * value,
        None,
        settings={"depth": opts.fisher_rao_depth, "depth_factor": factor},
        seed=None,
        details={"without_depth_factor": value},
    )
