"""Model inputs: tensors or Hugging Face style dicts, moved to the objective's device, and model calls.

A batch is either ``(x, y)`` or a dict in the Hugging Face convention (``input_ids``, ``attention_mask``,
``pixel_values``, ``token_type_ids``, ..., and ``labels``): everything but ``labels`` is the model's
input, called as ``model(**inputs)``; ``labels`` are the targets. A model may return a tensor, or a
``ModelOutput``, a dict or any object with ``logits``: the logits are what the loss sees. Every model call
of the objective and of the curvature products goes through :func:`call_model` or
:func:`call_functional`, so all of them accept the same inputs and outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from landscape.errors import DataError

Inputs = torch.Tensor | Mapping[str, Any]
LABELS = "labels"


def split_batch(batch: Any) -> tuple[Inputs, torch.Tensor]:
    """``(inputs, labels)`` of a batch given as ``(x, y)`` or as a dict holding ``labels``.

    Raises:
        DataError: a dict batch without ``labels``, or a batch that is neither a pair nor a dict.
    """
    if isinstance(batch, Mapping):
        if LABELS not in batch:
            raise DataError(f"a dict batch needs the targets under 'labels'; it has the keys {sorted(batch)}")
        return {k: v for k, v in batch.items() if k != LABELS}, torch.as_tensor(batch[LABELS])
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise DataError(
        f"a batch of type {type(batch).__name__} is neither (inputs, targets) nor a dict with 'labels'"
    )


def move_inputs(x: Inputs, device: torch.device, dtype: torch.dtype) -> Inputs:
    """``x`` on ``device``; floating tensors in ``dtype``, integer ones (token ids, masks) untouched."""
    if isinstance(x, Mapping):
        return {k: move_inputs(v, device, dtype) if isinstance(v, torch.Tensor) else v for k, v in x.items()}
    x = x.to(device)
    return x.to(dtype) if x.is_floating_point() else x


def slice_inputs(x: Inputs, start: int, stop: int) -> Inputs:
    """Rows ``start:stop`` of every tensor of ``x`` (other values are shared)."""
    if isinstance(x, Mapping):
        return {k: v[start:stop] if isinstance(v, torch.Tensor) else v for k, v in x.items()}
    return x[start:stop]


def input_tensors(x: Inputs) -> list[tuple[str, torch.Tensor]]:
    """The tensors of ``x`` by name (``''`` for a plain tensor), in a fixed order."""
    if isinstance(x, Mapping):
        return [(str(k), x[k]) for k in sorted(x) if isinstance(x[k], torch.Tensor)]
    return [("", x)]


def logits_of(out: Any) -> Any:
    """The logits of a model output: the tensor itself, ``out['logits']`` or ``out.logits``.

    Other outputs (a tuple, say) are given to the loss as they are.
    """
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping) and "logits" in out:
        return out["logits"]
    logits = getattr(out, "logits", None)
    return logits if isinstance(logits, torch.Tensor) else out


def call_model(module: nn.Module, x: Inputs) -> Any:
    """The logits of ``module`` on ``x``: ``module(**x)`` for a dict, ``module(x)`` otherwise."""
    out = module(**x) if isinstance(x, Mapping) else module(x)
    return logits_of(out)


def call_functional(module: nn.Module, params: Mapping[str, torch.Tensor], x: Inputs) -> Any:
    """:func:`call_model` with ``params`` substituted (``torch.func.functional_call``)."""
    if isinstance(x, Mapping):
        out = torch.func.functional_call(module, dict(params), (), dict(x), strict=False)
    else:
        out = torch.func.functional_call(module, dict(params), (x,), strict=False)
    return logits_of(out)
