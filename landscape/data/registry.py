"""The data sources of the toolkit: named datasets, tensor files and factories, each with a reader and help.

:func:`~landscape.data.datasets.load_dataset`, the training run's test split and the command line's
``--data`` help read this table. A named source matches its name; the others match a pattern (a
tensor file's suffix, a factory's ``:``) and are tried in order after the names. Adding a dataset is
its reader module plus one entry below; :func:`register_dataset` adds one at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset, TensorDataset

from landscape.data.cifar import cifar_tensors
from landscape.data.digits import digits_tensors
from landscape.data.factory import factory_dataset
from landscape.data.hf_disk import is_hf_disk, read_hf_disk
from landscape.data.mnist import mnist_tensors
from landscape.data.tensor_file import is_tensor_file, tensor_file_tensors
from landscape.data.text import read_text
from landscape.errors import DataError

#: ``reader(name, data_dir, split, **kwargs)``: the whole split as a map-style dataset (keyword
#: arguments only for a source that takes them).
Reader = Callable[..., Any]


@dataclass(frozen=True)
class DataSource:
    """One source of data.

    Attributes:
        name: the name ``--data`` takes, or for a pattern source the form it takes (``FILE``).
        read: ``read(name, data_dir, split)`` -> the split as a map-style dataset.
        help: a few words for the command line's help.
        matches: for a pattern source, whether a data name is one of its own (``None``: the name).
        has_test_split: ``False`` where the source holds one dataset only (a tensor file).
        takes_kwargs: the reader takes keyword arguments (a data spec's ``kwargs``: ``seq_len`` of
            ``text``, a factory's own).
    """

    name: str
    read: Reader
    help: str
    matches: Callable[[str], bool] | None = None
    has_test_split: bool = True
    takes_kwargs: bool = False

    def is_for(self, name: str) -> bool:
        """Whether the data name ``name`` is read by this source."""
        return self.matches(name) if self.matches is not None else name == self.name


def _mnist1d(name: str, data_dir: str | None, split: str) -> Dataset:
    # the optional extra is imported when asked for: without it, one line names the extra
    from landscape.data.mnist1d import mnist1d_tensors

    return TensorDataset(*mnist1d_tensors(split))


_SOURCES = (
    DataSource("digits", lambda name, d, split: TensorDataset(*digits_tensors(split)), "embedded"),
    DataSource("mnist1d", _mnist1d, "generated; the [mnist1d] extra"),
    DataSource(
        "cifar10", lambda name, d, split: TensorDataset(*cifar_tensors(name, d, split)), "local files"
    ),
    DataSource(
        "cifar100", lambda name, d, split: TensorDataset(*cifar_tensors(name, d, split)), "local files"
    ),
    DataSource("mnist", lambda name, d, split: TensorDataset(*mnist_tensors(d, split)), "local IDX files"),
    DataSource(
        "text",
        lambda name, d, split, **kwargs: read_text(split, **kwargs),
        "embedded characters of pydoc_data; seq_len in the data kwargs, default 64",
        takes_kwargs=True,
    ),
    DataSource(
        "FILE",
        lambda name, d, split: TensorDataset(*tensor_file_tensors(name)),
        "a .pt/.npz tensor file",
        matches=is_tensor_file,
        has_test_split=False,
    ),
    DataSource(
        "hf-disk:DIR",
        lambda name, d, split: read_hf_disk(name, split),
        "a Hugging Face datasets folder (save_to_disk, tokenized)",
        matches=is_hf_disk,
    ),
    DataSource(
        "pkg.mod:factory",
        lambda name, d, split, **kwargs: factory_dataset(name, split, kwargs),
        "or a factory",
        matches=lambda name: ":" in name,
        takes_kwargs=True,
    ),
)

#: Every source, the named ones first, in the order they are tried and listed.
DATA_SOURCES: list[DataSource] = list(_SOURCES)


def dataset_names() -> tuple[str, ...]:
    """The names of the named sources, in order (read at call time, so later registrations count)."""
    return tuple(s.name for s in DATA_SOURCES if s.matches is None)


def data_source(name: str) -> DataSource:
    """The source that reads the data name ``name``: a named one, else the first pattern that matches.

    Raises:
        DataError: no source reads ``name`` (the message lists the names and the forms).
    """
    for source in sorted(DATA_SOURCES, key=lambda s: s.matches is not None):
        if source.is_for(name):
            return source
    raise DataError(
        f"unknown dataset {name!r}; choose one of {', '.join(dataset_names())}, a .pt/.npz file, "
        "'hf-disk:DIR' or 'package.module:factory'"
    )


def data_help() -> str:
    """``name (help), ..., help`` for every source (a pattern source by its help alone): the command
    line's ``--data`` help."""
    return ", ".join(s.help if s.matches is not None else f"{s.name} ({s.help})" for s in DATA_SOURCES)


def register_dataset(source: DataSource) -> None:
    """Add a named source (a user's own dataset, available by its name from then on).

    Raises:
        DataError: the name is taken, or would read as a file or a factory.
    """
    if source.name in dataset_names() or ":" in source.name or is_tensor_file(source.name):
        raise DataError(
            f"dataset name {source.name!r} is taken or reads as a file or factory; use another name"
        )
    DATA_SOURCES.insert(len(dataset_names()), source)
