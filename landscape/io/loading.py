"""From a checkpoint path and options to a ready :class:`~landscape.objective.Objective`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from landscape.device import resolve_device
from landscape.io.checkpoints import Checkpoint, load_model
from landscape.io.data import DataSpec, load_dataset
from landscape.objective import Objective


def resolve_data_spec(
    ckpt: Checkpoint | None,
    *,
    data: str | None = None,
    data_dir: str | None = None,
    split: str | None = None,
    samples: int | None = None,
    seed: int = 0,
) -> DataSpec:
    """The data to analyse: the command line wins, then the checkpoint's own spec, then ``digits``."""
    base = ckpt.data_spec if ckpt is not None and ckpt.data_spec is not None else DataSpec()
    spec = replace(base)
    if data is not None:
        spec = DataSpec(name=data, data_dir=base.data_dir if data == base.name else None)
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
) -> tuple[Objective, Checkpoint, DataSpec]:
    """Load a checkpoint's model onto ``device`` and pair it with its (or the given) data.

    Returns:
        The objective, the checkpoint (with its model spec filled in) and the data spec used.
    """
    net, ckpt = load_model(path, model=model, model_kwargs=model_kwargs, unsafe_load=unsafe_load)
    spec = resolve_data_spec(ckpt, data=data, data_dir=data_dir, split=split, samples=samples, seed=seed)
    dataset = load_dataset(spec)
    objective = Objective(
        net,
        dataset,
        batch_size=batch_size,
        device=resolve_device(device),
        dtype=dtype,
        bn_mode=bn_mode,
        shard=shard,
    )
    return objective, ckpt, spec
