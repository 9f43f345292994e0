"""The data of a training run: seeded batches by index and the test split that goes with the data.

The order of epoch ``e`` is a permutation drawn from ``derived_seed(seed, e)`` alone, so an epoch's
batches are the same whether the run was interrupted before it or not (bit-exact resume).
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, TensorDataset, default_collate

from landscape.data.datasets import DataSpec, load_dataset
from landscape.data.registry import data_source
from landscape.errors import NoSplitError
from landscape.objective.inputs import Inputs, move_inputs, split_batch

# A prime multiplier keeps the derived seeds of (seed, key) pairs apart for any realistic key.
_SEED_MULTIPLIER = 1_000_003


def derived_seed(seed: int, *keys: int) -> int:
    """A seed for one part of a run (an epoch, ...) derived from the run's ``seed``.

    ``derived_seed(s, k) = s * 1_000_003 + k``, and for more keys the same rule applied in turn.
    """
    out = seed
    for key in keys:
        out = out * _SEED_MULTIPLIER + key
    return out


class SeededBatches:
    """Batches of a dataset by index, in an order that depends only on ``(seed, epoch)``."""

    def __init__(self, ds: Dataset, device: torch.device, dtype: torch.dtype) -> None:
        self.ds = ds
        self.n = len(ds)  # type: ignore[arg-type]
        self.device = device
        self.dtype = dtype
        self.tensors = ds.tensors[:2] if isinstance(ds, TensorDataset) else None

    def take(self, idx: torch.Tensor) -> tuple[Inputs, torch.Tensor]:
        """The examples ``idx`` as one batch ``(x, y)`` on the run's device (float inputs in its dtype).

        Items may be ``(x, y)`` pairs or dicts in the Hugging Face convention; for dict items ``x`` is
        the dict of every tensor but ``labels`` (:func:`~landscape.objective.inputs.split_batch`).
        """
        if self.tensors is not None:
            x, y = self.tensors[0][idx], self.tensors[1][idx]
        else:
            x, y = split_batch(default_collate([self.ds[int(i)] for i in idx]))
        return move_inputs(x, self.device, self.dtype), y.to(self.device)

    def order(self, seed: int, epoch: int) -> torch.Tensor:
        """The permutation of the examples for ``epoch``."""
        g = torch.Generator().manual_seed(derived_seed(seed, epoch))
        return torch.randperm(self.n, generator=g)


def load_test_split(spec: DataSpec) -> Dataset | None:
    """The test split that goes with the training data, or ``None`` where the source has none.

    A tensor file holds one dataset (its source has no test split, :mod:`landscape.data.registry`), and
    a dataset factory without a ``split`` parameter provides one (:class:`~landscape.errors.NoSplitError`);
    anything else that fails is a real error and is raised.
    """
    if not data_source(spec.name).has_test_split:
        return None
    try:
        return load_dataset(
            DataSpec(spec.name, split="test", data_dir=spec.data_dir, kwargs=dict(spec.kwargs))
        )
    except NoSplitError:
        return None
