"""A Hugging Face ``datasets`` folder written by ``save_to_disk``: data name ``hf-disk:DIR``.

The folder holds a ``DatasetDict`` with splits ``train`` and ``test`` (or one ``Dataset``, read as the
training split), already tokenized. Items are dicts of tensors in the Hugging Face convention
(``input_ids``, ``attention_mask``, ``labels``, ``pixel_values``, ...); columns that are not numbers
(the raw ``text``) are left out, since everything but ``labels`` goes to the model. Nothing is
downloaded: the folder is read with ``datasets.load_from_disk``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from landscape.data.common import check_split
from landscape.errors import DataError, NoSplitError

HF_DISK_PREFIX = "hf-disk:"


def is_hf_disk(name: str) -> bool:
    """Whether a data name means a ``save_to_disk`` folder (``hf-disk:DIR``)."""
    return name.startswith(HF_DISK_PREFIX)


def _load_from_disk(folder: Path, name: str) -> Any:
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"data {name!r} needs the 'datasets' package, which is not installed: pip install datasets"
        ) from None
    if not folder.is_dir():
        raise DataError(f"data {name!r}: {str(folder)!r} is not a folder; give one written by save_to_disk")
    try:
        return datasets.load_from_disk(str(folder))
    except FileNotFoundError:
        raise DataError(
            f"data {name!r}: {str(folder)!r} is not a datasets folder (no dataset_info.json or "
            "dataset_dict.json); write one with save_to_disk"
        ) from None


def _numeric_columns(split: Any) -> list[str]:
    """The columns whose values become tensors (numbers or nested lists of numbers)."""
    kept = []
    for column, feature in split.features.items():
        while hasattr(feature, "feature"):  # Sequence / List / Array wrap their item type
            feature = feature.feature
        dtype = str(getattr(feature, "dtype", ""))
        if dtype.startswith(("int", "uint", "float", "bool")) or type(feature).__name__.startswith("Array"):
            kept.append(column)
    return kept


class SavedSplit(Dataset):
    """One split of a ``datasets`` folder as a torch map-style dataset of dicts of tensors.

    ``datasets.Dataset`` is no ``torch.utils.data.Dataset``; the objective and the loaders take this.
    """

    def __init__(self, split: Any) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(v) for k, v in self.split[int(index)].items()}


def read_hf_disk(name: str, split: str) -> SavedSplit:
    """The ``split`` of the folder ``hf-disk:DIR`` as a map-style dataset of dicts of tensors.

    Raises:
        DataError: ``datasets`` is not installed, or the folder is missing, not a datasets folder, or
            has no numeric column.
        NoSplitError: the folder holds one ``Dataset`` and ``split`` is ``test``, or a
            ``DatasetDict`` without that split.
    """
    check_split(split)
    folder = Path(name[len(HF_DISK_PREFIX) :]).expanduser()
    loaded = _load_from_disk(folder, name)
    if hasattr(loaded, "keys"):  # a DatasetDict
        if split not in loaded:
            raise NoSplitError(
                f"data {name!r} has splits {sorted(loaded.keys())}, not {split!r}; save the folder with "
                "a 'train' and a 'test' split"
            )
        part = loaded[split]
    elif split == "train":
        part = loaded
    else:
        raise NoSplitError(f"data {name!r} holds one dataset (used as the training split) and no test split")
    columns = _numeric_columns(part)
    if not columns:
        raise DataError(
            f"data {name!r} has no numeric column ({', '.join(part.column_names)}); tokenize it first"
        )
    return SavedSplit(part.select_columns(columns).with_format("torch"))
