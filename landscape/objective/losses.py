"""Training losses by name: ``cross-entropy``, ``mse`` (half squared error) or ``package.module:fn``.

``cross-entropy`` is :class:`CrossEntropy`: the usual cross-entropy for class outputs ``(N, C)`` and
labels ``(N,)``, and for token outputs ``(N, T, V)`` with labels ``(N, T)`` the mean over the counted
tokens (labels other than -100), shifted by one position for causal language models
(:mod:`~landscape.objective.tokens`).

``mse`` follows the convention of Cohen et al. 2021 ("Gradient Descent on Neural Networks Typically
Occurs at the Edge of Stability", arXiv 2103.00065), whose edge-of-stability experiments use the
square loss: for class labels ``y_i`` and outputs ``f(x_i) in R^C``

    L = (1/N) sum_i 1/2 sum_c (f_c(x_i) - onehot(y_i)_c)^2,

and for float targets (regression) ``L = (1/N) sum_i 1/2 ||f(x_i) - y_i||^2``. The factor 1/2 makes the
Hessian of the loss in the outputs the identity, so ``lambda_max`` compares directly with ``2/lr``.
The name a loss is resolved from is what runs and checkpoints record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from landscape.errors import ConfigError, DataError, ModelError
from landscape.objective.tokens import IGNORE_INDEX, aligned, is_token_batch, num_terms

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

LOSS_NAMES = ("cross-entropy", "mse")


class HalfSquaredError(nn.Module):
    """``1/2 ||f(x) - t||^2`` summed over outputs, averaged over samples; ``t = onehot(y)`` for labels.

    Integer targets of shape ``(N,)`` with outputs ``(N, C)`` are class labels in ``[0, C)``; float
    targets must have the outputs' shape (a ``(N,)`` target fits ``(N, 1)`` outputs).
    """

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if not targets.is_floating_point():
            if outputs.dim() != 2 or targets.dim() != 1 or len(targets) != len(outputs):
                raise DataError(
                    f"the mse loss with class labels needs outputs (N, C) and labels (N,), got outputs "
                    f"{tuple(outputs.shape)} and labels {tuple(targets.shape)}"
                )
            num_classes = outputs.shape[1]
            if len(targets) and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
                raise DataError(
                    f"the mse loss got class labels outside [0, {num_classes}) for outputs with "
                    f"{num_classes} classes (labels {int(targets.min())}..{int(targets.max())})"
                )
            target = torch.nn.functional.one_hot(targets, num_classes).to(outputs.dtype)
        else:
            target = targets.to(outputs.dtype)
            if target.shape != outputs.shape and target.dim() == 1 and outputs.shape == (len(target), 1):
                target = target.unsqueeze(1)
            if target.shape != outputs.shape:
                raise DataError(
                    f"the mse loss needs float targets shaped like the outputs {tuple(outputs.shape)}, "
                    f"got {tuple(targets.shape)}"
                )
        diff = (outputs - target).reshape(len(outputs), -1)
        return 0.5 * diff.pow(2).sum(dim=1).mean()


class CrossEntropy(nn.CrossEntropyLoss):
    """Cross-entropy for class outputs and for token outputs (language models, token classification).

    Class outputs ``(N, C)`` with labels ``(N,)``: ``nn.CrossEntropyLoss``. Token outputs ``(N, T, V)``
    with labels ``(N, T)``: ``-(1/M) sum_{counted (i, t)} log softmax(f(x_i)_t)_{y_it}`` over the ``M``
    tokens whose label is not -100, with logits ``[:, :-1]`` against labels ``[:, 1:]`` when
    ``causal``; a batch with no counted token has loss 0 (and weight 0 in the objective).

    Args:
        causal: shift the labels for a causal language model; ``None`` until the objective decides
            from its model (:func:`~landscape.objective.tokens.is_causal_lm`).
    """

    def __init__(self, *, causal: bool | None = None) -> None:
        super().__init__(ignore_index=IGNORE_INDEX)
        self.causal = causal

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if not is_token_batch(outputs, targets):
            return super().forward(outputs, targets)
        logits, labels = aligned(outputs, targets, bool(self.causal))
        total = nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
        # sum / count rather than reduction='mean': no NaN for a batch of padding only
        return total / (labels != IGNORE_INDEX).sum().clamp(min=1)

    def num_terms(self, targets: torch.Tensor) -> int:
        """Counted tokens of a token batch (after the causal shift), else its number of rows."""
        return num_terms(targets, bool(self.causal))


def resolve_loss(name: str) -> LossFn:
    """The batch-mean loss ``loss(outputs, targets)`` called ``name``.

    Args:
        name: ``'cross-entropy'`` (:class:`CrossEntropy`), ``'mse'`` (:class:`HalfSquaredError`) or ``'package.module:attr'``
            naming a loss function ``fn(outputs, targets) -> scalar`` or an ``nn.Module`` class
            built without arguments (e.g. ``torch.nn:SmoothL1Loss``).

    Raises:
        ConfigError: an unknown name, or a target that cannot be imported or is not a loss.
    """
    if name == "cross-entropy":
        return CrossEntropy()
    if name == "mse":
        return HalfSquaredError()
    if ":" not in name:
        raise ConfigError(
            f"loss={name!r} is not valid; choose one of {', '.join(LOSS_NAMES)} or give 'package.module:fn'"
        )
    from landscape.io.factories import resolve_factory

    try:
        obj = resolve_factory(name, kind="loss")
    except ModelError as exc:
        raise ConfigError(str(exc)) from None
    if isinstance(obj, type):
        if not issubclass(obj, nn.Module):
            raise ConfigError(f"loss={name!r} is a class but not a torch.nn.Module")
        try:
            return obj()
        except TypeError as exc:
            raise ConfigError(f"loss={name!r} cannot be built without arguments: {exc}") from None
    return obj


def checkpoint_loss(checkpoint: Any) -> str | None:
    """The training loss a checkpoint records (``'mse'``, ``'cross-entropy'``, ``'pkg.mod:fn'``), if any.

    ``train`` writes it as ``extra["loss"]``; checkpoints from older runs or other tools have none
    (``None``: the analysis commands then use cross-entropy, as those runs did).

    Args:
        checkpoint: a :class:`~landscape.models.checkpoints.Checkpoint` or the dict of a raw checkpoint file.
    """
    extra = checkpoint.get("extra") if isinstance(checkpoint, dict) else getattr(checkpoint, "extra", None)
    loss = extra.get("loss") if isinstance(extra, dict) else None
    return loss if isinstance(loss, str) and loss else None
