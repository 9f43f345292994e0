"""From a checkpoint path and options to a ready :class:`~landscape.objective.core.Objective`.

This module sits above both :mod:`landscape.io` (which reads checkpoints and data and knows nothing
of objectives) and :mod:`landscape.objective.core`; the commands and the surface, connect and sharpness
entry points load through it, so every one pairs a checkpoint with its data the same way.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset, TensorDataset

from landscape.data.datasets import DataSpec, load_dataset
from landscape.device import resolve_device
from landscape.errors import ConfigError, DataError
from landscape.models.checkpoints import Checkpoint, load_model
from landscape.objective.core import Objective
from landscape.objective.inputs import call_model
from landscape.objective.losses import checkpoint_loss, resolve_loss


def resolve_data_spec(
    ckpt: Checkpoint | None,
    *,
    data: str | None = None,
    data_dir: str | None = None,
    split: str | None = None,
    samples: int | None = None,
    seed: int = 0,
    data_kwargs: dict[str, Any] | None = None,
) -> DataSpec:
    """The data to analyse: the command line wins, then the checkpoint's own spec, then ``digits``.

    ``data_kwargs`` (the reader's keyword arguments, e.g. ``seq_len`` of ``text``) replace the
    checkpoint's; without them the checkpoint's stay when the data is the checkpoint's own.

    Raises:
        ConfigError: ``samples`` is not a positive integer.
    """
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples <= 0):
        raise ConfigError(
            f"samples={samples!r} must be a positive number of examples; omit it to use the whole dataset"
        )
    base = ckpt.data_spec if ckpt is not None and ckpt.data_spec is not None else DataSpec()
    spec = replace(base)
    if data is not None:
        same = data == base.name
        spec = DataSpec(
            name=data, data_dir=base.data_dir if same else None, kwargs=dict(base.kwargs) if same else {}
        )
    if data_kwargs is not None:
        spec.kwargs = dict(data_kwargs)
    if data_dir is not None:
        spec.data_dir = data_dir
    spec.split = split if split is not None else (spec.split or "train")
    spec.subset = samples
    spec.seed = seed
    return spec


def objective_from_checkpoint(
    path: str | Path,
    *,
    model: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    unsafe_load: bool = False,
    data: str | None = None,
    data_dir: str | None = None,
    split: str | None = None,
    samples: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    device: str | torch.device = "auto",
    dtype: torch.dtype | None = None,
    bn_mode: str = "eval",
    shard: tuple[int, int] | None = None,
    loss: str | None = None,
    data_kwargs: dict[str, Any] | None = None,
) -> tuple[Objective, Checkpoint, DataSpec]:
    """Load a checkpoint's model onto ``device`` and pair it with its (or the given) data.

    The loss is ``loss`` when given (``cross-entropy``, ``mse`` or ``pkg.mod:fn``), else the one the
    checkpoint records (``landscape train`` writes it), else cross-entropy (class or token outputs).
    Dataset items may be dicts with ``labels`` (the Hugging Face convention). The model is loaded at
    the checkpoint's precision, so with ``dtype=None`` a float64 checkpoint is analysed in float64
    and any other in the model's dtype (``objective.metadata()['dtype']`` records which).

    Returns:
        The objective, the checkpoint (with its model spec filled in) and the data spec used.
    """
    net, ckpt = load_model(path, model=model, model_kwargs=model_kwargs, unsafe_load=unsafe_load)
    spec = resolve_data_spec(
        ckpt, data=data, data_dir=data_dir, split=split, samples=samples, seed=seed, data_kwargs=data_kwargs
    )
    dataset = load_dataset(spec)
    check_labels_fit(net, dataset)
    objective = Objective(
        net,
        dataset,
        batch_size=batch_size,
        device=resolve_device(device),
        dtype=dtype,
        bn_mode=bn_mode,
        shard=shard,
        loss_fn=resolve_loss(loss or checkpoint_loss(ckpt) or "cross-entropy"),
    )
    return objective, ckpt, spec


def _tensor_labels(ds: Dataset) -> torch.Tensor | None:
    """The label tensor of an in-memory dataset (or a subset of one); ``None`` for other datasets."""
    if isinstance(ds, TensorDataset) and len(ds.tensors) >= 2:
        return ds.tensors[1]
    if isinstance(ds, Subset):
        inner = _tensor_labels(ds.dataset)
        return inner[list(ds.indices)] if inner is not None else None
    return None


def check_labels_fit(model: nn.Module, dataset: Dataset) -> None:
    """Refuse integer class labels outside ``0 .. C-1`` for a model with ``C`` outputs.

    Cross-entropy would fail mid-pass with "Target 13 is out of bounds" on the CPU and a device-side
    assertion on CUDA. Only in-memory datasets are checked (reading every label of a user's dataset
    would cost a pass); ``C`` comes from one forward pass of the first example in evaluation mode,
    which reads batch-norm statistics and changes nothing.

    Raises:
        DataError: a label is negative or >= the number of model outputs.
    """
    labels = _tensor_labels(dataset)
    if labels is None or labels.numel() == 0 or labels.is_floating_point() or labels.dim() != 1:
        return
    low, high = int(labels.min()), int(labels.max())
    first = next(iter(model.parameters()), None)
    x = torch.as_tensor(dataset[0][0]).unsqueeze(0)
    if first is not None and x.is_floating_point():
        x = x.to(dtype=first.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = call_model(model, x)
    except RuntimeError:  # input does not fit the model: the objective reports it on its first pass
        return
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        return
    classes = out.shape[1]
    if low < 0:
        raise DataError(
            f"the data has label {low} but class labels must be 0..{classes - 1} for this model's "
            f"{classes} outputs; relabel the data with non-negative class indices"
        )
    if high >= classes:
        raise DataError(
            f"the data has label {high} but the model outputs {classes} classes (labels 0..{classes - 1}); "
            f"use a model with at least {high + 1} outputs (e.g. model_kwargs num_classes={high + 1}) "
            "or data that matches the model"
        )
