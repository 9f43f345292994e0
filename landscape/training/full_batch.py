"""Full-batch gradient descent: one optimizer step per epoch on the gradient of the whole training set.

The edge-of-stability experiments (Cohen et al. 2021, arXiv 2103.00065) use deterministic full-batch
gradient descent ``w <- w - lr grad L(w)`` (optionally with momentum) where ``L`` is the mean loss over
all ``N`` training examples. The gradient is accumulated over batches that fit in memory, each weighted
by its sample count (``n_b / N`` times its batch-mean gradient, :meth:`Objective.gradient`), so it equals
the gradient of one batch of all ``N`` examples up to rounding, whatever the batch size.

The model's training flags are left as they are: for a model that treats examples independently (no
batch norm in training mode) the result is the exact full-batch gradient; with batch norm in training
mode every batch is normalized with its own statistics.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from landscape.errors import ConfigError, check_positive
from landscape.objective.core import LossFn, Objective


def full_batch_objective(
    model: nn.Module,
    data: Dataset | tuple[torch.Tensor, torch.Tensor],
    *,
    loss_fn: LossFn | None = None,
    batch_size: int | None = 1024,
) -> Objective:
    """The mean training loss of ``model`` over all of ``data``, in batches of ``batch_size``.

    The model keeps its device, dtype and training flags (:class:`Objective` would switch it to
    evaluation mode).
    """
    if batch_size is not None:
        check_positive("batch_size", batch_size)
    device = next(model.parameters()).device
    flags = [(m, m.training) for m in model.modules()]
    try:
        return Objective(model, data, loss_fn=loss_fn, batch_size=batch_size, device=device)
    finally:
        for m, flag in flags:
            m.training = flag


def full_batch_step(optimizer: torch.optim.Optimizer, objective: Objective) -> float:
    """One optimizer step on the full-batch gradient of ``objective``; returns the loss before it.

    ``optimizer.step(closure)`` is called with a closure that zeroes the gradients, writes the
    sample-weighted full-batch gradient into ``.grad`` of ``objective.params`` and returns the loss, so
    optimizers that evaluate the gradient more than once per step (SAM) get full-batch gradients each
    time. Works with every optimizer that reads ``.grad`` (``torch.optim.SGD`` with or without momentum
    is gradient descent, heavy ball or Nesterov); not with ones that need a graph (``sgd-hess``) or two
    batches (``minmin``).

    Raises:
        ConfigError: a parameter of ``objective`` that ``optimizer`` does not update.
    """
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    missing = [n for n, p in zip(objective.param_names, objective.params) if id(p) not in held]
    if missing:
        raise ConfigError(f"the optimizer does not update parameters {missing} of the objective")
    losses: list[float] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss, grads = objective.gradient()
        for p, g in zip(objective.params, grads):
            p.grad = g.detach()
        losses.append(loss)
        return torch.tensor(loss, dtype=torch.float64)

    optimizer.step(closure)
    if not losses:
        raise ConfigError(f"{type(optimizer).__name__}.step(closure) did not call the closure")
    return losses[0]
