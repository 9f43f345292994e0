"""Datasets for analysis and training: :class:`DataSpec`, :func:`load_dataset`, subsets and loaders.

The sources (:mod:`landscape.data.registry`): ``digits`` (scikit-learn's bundled 8x8 handwritten
digits: real data, no download), ``mnist1d`` (Greydanus 2020: generated locally by the optional
``mnist1d`` package and cached), ``cifar10``/``cifar100`` from a local folder in the python-pickle
layout, ``mnist`` from local IDX files, a tensor file (``.pt`` with ``x`` and ``y``, or ``.npz``), and
``package.module:factory`` returning a ``Dataset``. Analysis loaders never shuffle or augment: every
pass sees the same batches.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

# Readers that lived here first, still importable from here.
from landscape.data.common import SPLITS, check_split
from landscape.data.digits import DIGITS_SPLIT_SEED, DIGITS_TEST_FRACTION, digits_tensors
from landscape.data.factory import accepts_split, call_dataset_factory
from landscape.data.registry import data_source, dataset_names
from landscape.data.tensor_file import tensor_file_tensors
from landscape.errors import DataError, SubsetSizeWarning

__all__ = [
    "DATASET_NAMES",
    "DIGITS_SPLIT_SEED",
    "DIGITS_TEST_FRACTION",
    "SPLITS",
    "DataSpec",
    "accepts_split",
    "analysis_loader",
    "call_dataset_factory",
    "digits_tensors",
    "fixed_subset",
    "input_shape",
    "load_dataset",
    "num_classes",
    "tensor_file_tensors",
]

#: The named datasets when this module was imported (:func:`~landscape.data.registry.dataset_names`
#: reads the registry at call time).
DATASET_NAMES: tuple[str, ...] = dataset_names()


@dataclass
class DataSpec:
    """Where the data comes from; saved in checkpoints and results so a run can be redone.

    ``kwargs`` are the keyword arguments of the source's reader (``seq_len`` of ``text``, a factory's
    own); a source adds what it used (``text`` its ``vocab``). They are written only when there are
    some, so the records of every other dataset read as before.
    """

    name: str = "digits"
    split: str = "train"
    data_dir: str | None = None
    subset: int | None = None
    seed: int = 0
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "split": self.split,
            "data_dir": self.data_dir,
            "subset": self.subset,
            "seed": self.seed,
        }
        if self.kwargs:
            d["kwargs"] = dict(self.kwargs)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        return cls(
            name=str(d.get("name", "digits")),
            split=str(d.get("split", "train")),
            data_dir=d.get("data_dir"),
            subset=d.get("subset"),
            seed=int(d.get("seed", 0)),
            kwargs=dict(d.get("kwargs") or {}),
        )


def load_dataset(spec: DataSpec) -> Dataset:
    """Build the dataset a ``DataSpec`` names, with its fixed seeded subset if asked.

    When ``spec.subset`` exceeds the dataset's size the whole dataset is used: a
    :class:`~landscape.errors.SubsetSizeWarning` says so and ``spec.subset`` is set to the number of
    examples used, so every result that records the spec records what was used (redoing it with that
    ``subset`` gives the same data). ``spec.kwargs`` go to the source's reader, and gain what it
    used (``text`` records its ``seq_len`` and ``vocab``).

    Raises:
        DataError: unknown name, missing or damaged files, ``spec.subset`` <= 0, or kwargs for a
            source that takes none.
        NoSplitError: ``spec.split`` is ``"test"`` and the source has one split only (a factory
            without a ``split`` parameter).
    """
    check_split(spec.split)
    ds = _read(spec)
    if spec.subset is not None:
        total = len(ds)  # type: ignore[arg-type]
        if spec.subset > total:
            warnings.warn(
                f"subset={spec.subset} is more than the {total} examples of {spec.name!r} ({spec.split}); "
                f"using all {total}",
                SubsetSizeWarning,
                stacklevel=2,
            )
            spec.subset = total
        ds = fixed_subset(ds, spec.subset, seed=spec.seed)
    return ds


def _read(spec: DataSpec) -> Dataset:
    """The whole split from the spec's source, with the spec's kwargs; records what the source used."""
    source = data_source(spec.name)
    if not isinstance(spec.kwargs, dict):
        raise DataError(f"the data kwargs of {spec.name!r} must be a dict, got {spec.kwargs!r:.60}")
    if spec.kwargs and not source.takes_kwargs:
        raise DataError(
            f"dataset {spec.name!r} takes no keyword arguments, got {spec.kwargs}; leave the data kwargs out"
        )
    if source.takes_kwargs:
        ds: Dataset = source.read(spec.name, spec.data_dir, spec.split, **spec.kwargs)
    else:
        ds = source.read(spec.name, spec.data_dir, spec.split)
    used = getattr(ds, "spec_kwargs", None)
    if isinstance(used, dict):
        spec.kwargs = {**used, **spec.kwargs}
    return ds


def fixed_subset(ds: Dataset, n: int, *, seed: int = 0) -> Dataset:
    """The same ``n`` examples every time for a given seed (sorted indices, no reshuffle)."""
    total = len(ds)  # type: ignore[arg-type]
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise DataError(f"subset={n!r} must be a positive number of examples; omit it to use all {total}")
    if n >= total:
        return ds
    g = torch.Generator().manual_seed(seed)
    idx = torch.sort(torch.randperm(total, generator=g)[:n]).values
    if isinstance(ds, TensorDataset):  # stay in memory so analysis caches it on the device
        return TensorDataset(*(t[idx] for t in ds.tensors))
    return Subset(ds, idx.tolist())


def analysis_loader(ds: Dataset, batch_size: int) -> DataLoader:
    """A loader for analysis: fixed order, no shuffling, no augmentation, keeps the short last batch."""
    if batch_size <= 0:
        raise DataError(f"batch_size={batch_size} must be positive")
    return DataLoader(ds, batch_size=batch_size, shuffle=False, drop_last=False)


#: The inputs whose shape is a dict item's input shape, in order of preference (:func:`input_shape`).
_MAIN_INPUTS = ("input_ids", "pixel_values")


def input_shape(ds: Dataset) -> tuple[int, ...]:
    """Shape of one input example.

    For a dict item in the Hugging Face convention it is the shape of its main input: ``input_ids``,
    else ``pixel_values``, else its first tensor other than ``labels`` (by name).
    """
    item = ds[0]
    if not isinstance(item, Mapping):
        return tuple(torch.as_tensor(item[0]).shape)
    inputs = {k: v for k, v in item.items() if k != "labels"}
    for key in (*_MAIN_INPUTS, *sorted(inputs)):
        if key in inputs:
            return tuple(torch.as_tensor(inputs[key]).shape)
    raise DataError(f"a dict item needs at least one input besides 'labels'; it has the keys {sorted(item)}")


def num_classes(ds: Dataset) -> int:
    """Number of classes: the dataset's own ``num_classes`` (a vocabulary, for ``text``), else the
    largest label + 1 (token labels ignore the padding label -100)."""
    inner = ds.dataset if isinstance(ds, Subset) else ds
    own = getattr(inner, "num_classes", None)
    if isinstance(own, int) and not isinstance(own, bool):
        return own
    if isinstance(ds, TensorDataset):
        return int(ds.tensors[1].max().item()) + 1
    items = (ds[i] for i in range(len(ds)))  # type: ignore[arg-type]
    labels = (item["labels"] if isinstance(item, Mapping) else item[1] for item in items)
    return int(max(int(torch.as_tensor(y).max()) for y in labels)) + 1
