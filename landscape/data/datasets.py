"""Datasets for analysis and training.

Sources: ``digits`` (scikit-learn's bundled 8x8 handwritten digits: real data, no download),
``mnist1d`` (Greydanus 2020: generated locally by the optional ``mnist1d`` package and cached),
``cifar10``/``cifar100`` from a local folder in the python-pickle layout, ``mnist`` from local IDX
files, a tensor file (``.pt`` with ``x`` and ``y``, or ``.npz``), and ``package.module:factory``
returning a ``Dataset``. Analysis loaders never shuffle or augment: every pass sees the same batches.
"""

from __future__ import annotations

import gzip
import inspect
import pickle
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from landscape.errors import DataError, NoSplitError, SubsetSizeWarning

DATASET_NAMES = ("digits", "mnist1d", "cifar10", "cifar100", "mnist")
SPLITS = ("train", "test")
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


@dataclass
class DataSpec:
    """Where the data comes from; saved in checkpoints and results so a run can be redone."""

    name: str = "digits"
    split: str = "train"
    data_dir: str | None = None
    subset: int | None = None
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "split": self.split,
            "data_dir": self.data_dir,
            "subset": self.subset,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        return cls(
            name=str(d.get("name", "digits")),
            split=str(d.get("split", "train")),
            data_dir=d.get("data_dir"),
            subset=d.get("subset"),
            seed=int(d.get("seed", 0)),
        )


def digits_tensors(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as ``x`` (N, 1, 8, 8) float32 in [0, 1] and ``y`` (N,) int64.

    A fixed seeded 80/20 split: 1438 training and 359 test images.
    """
    _check_split(split)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    g = torch.Generator().manual_seed(DIGITS_SPLIT_SEED)
    perm = torch.randperm(len(y), generator=g)
    n_test = int(round(DIGITS_TEST_FRACTION * len(y)))
    idx = perm[n_test:] if split == "train" else perm[:n_test]
    idx, _ = torch.sort(idx)
    return x[idx].contiguous(), y[idx].contiguous()


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"split={split!r} is not valid; choose one of {', '.join(SPLITS)}")


def _require_dir(data_dir: str | None, name: str) -> Path:
    if not data_dir:
        raise DataError(f"dataset {name!r} needs data_dir pointing at its local files (no download is made)")
    path = Path(data_dir)
    if not path.is_dir():
        raise DataError(f"data_dir={str(path)!r} does not exist or is not a directory")
    return path


def _cifar_tensors(name: str, data_dir: str | None, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    root = _require_dir(data_dir, name)
    sub = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[name]
    if (root / sub).is_dir():
        root = root / sub
    if name == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        label_key = b"labels"
    else:
        files = ["train"] if split == "train" else ["test"]
        label_key = b"fine_labels"
    xs, ys = [], []
    for fname in files:
        f = root / fname
        if not f.is_file():
            raise DataError(
                f"{name}: missing file {str(f)!r} (expected the python-pickle layout in data_dir)"
            )
        try:
            with open(f, "rb") as fh:
                # CIFAR's official files are pickles of plain dicts of arrays; a restricted
                # unpickler keeps a planted file from running code.
                entry = _NumpyOnlyUnpickler(fh, encoding="bytes").load()
            xs.append(np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(entry[label_key], dtype=np.int64))
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{name}: cannot read {str(f)!r}: {exc}") from exc
    x = torch.from_numpy(np.concatenate(xs)).float() / 255.0
    return x, torch.from_numpy(np.concatenate(ys))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    _allowed = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise DataError(f"refusing to unpickle {module}.{name} from a data file")


def _read_idx(path: Path, expected_ndim: int) -> np.ndarray:
    """An IDX file (optionally gzipped) of unsigned bytes with ``expected_ndim`` dimensions."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(
            f"mnist: {str(path)!r} is not a valid gzip file ({exc}); download it again or unpack it"
        ) from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"mnist: {str(path)!r} is not an IDX file (bad magic number); download it again")
    _, _, dtype_code, ndim = struct.unpack(">BBBB", data[:4])
    if dtype_code != 0x08:
        raise DataError(f"mnist: {str(path)!r} has IDX type {dtype_code:#x}, expected unsigned bytes (0x08)")
    if ndim != expected_ndim:
        raise DataError(f"mnist: {str(path)!r} has {ndim} dimensions, expected {expected_ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"mnist: {str(path)!r} has a short header ({len(data)} bytes, need {header}); download it again"
        )
    shape = struct.unpack(">" + "I" * ndim, data[4:header])
    arr = np.frombuffer(data, dtype=np.uint8, offset=header)
    if arr.size != int(np.prod(shape)):
        raise DataError(
            f"mnist: {str(path)!r} holds {arr.size} bytes of data but its header promises "
            f"{int(np.prod(shape))} (shape {shape}); the file is truncated or damaged, download it again"
        )
    return arr.reshape(shape)


def _mnist_tensors(data_dir: str | None, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    root = _require_dir(data_dir, "mnist")
    if (root / "MNIST" / "raw").is_dir():
        root = root / "MNIST" / "raw"
    prefix = "train" if split == "train" else "t10k"
    found = {}
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        for cand in (root / f"{prefix}-{kind}", root / f"{prefix}-{kind}.gz"):
            if cand.is_file():
                found[kind] = cand
                break
        else:
            raise DataError(f"mnist: missing {prefix}-{kind}[.gz] in {str(root)!r}")
    images = _read_idx(found["images-idx3-ubyte"], 3)
    labels = _read_idx(found["labels-idx1-ubyte"], 1)
    if len(images) != len(labels):
        raise DataError(
            f"mnist: {str(found['images-idx3-ubyte'])!r} holds {len(images)} images but "
            f"{str(found['labels-idx1-ubyte'])!r} holds {len(labels)} labels; use files of the same split"
        )
    x = torch.from_numpy(images.copy()).float().unsqueeze(1) / 255.0
    return x, torch.from_numpy(labels.astype(np.int64))


def tensor_file_tensors(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read ``x`` and ``y`` from a ``.pt`` (dict, loaded with ``weights_only=True``) or ``.npz`` file."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {str(p)!r} does not exist")
    try:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                obj = {k: torch.from_numpy(z[k]) for k in z.files}
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"cannot read data file {str(p)!r}: {exc}") from exc
    if not isinstance(obj, dict) or "x" not in obj or "y" not in obj:
        raise DataError(f"data file {str(p)!r} must hold a mapping with keys 'x' and 'y'")
    x, y = torch.as_tensor(obj["x"]), torch.as_tensor(obj["y"])
    if len(x) != len(y):
        raise DataError(f"data file {str(p)!r}: x has {len(x)} rows but y has {len(y)}")
    if x.is_floating_point() is False:
        x = x.float()
    return x, y


def load_dataset(spec: DataSpec) -> Dataset:
    """Build the dataset a ``DataSpec`` names, with its fixed seeded subset if asked.

    When ``spec.subset`` exceeds the dataset's size the whole dataset is used: a
    :class:`~landscape.errors.SubsetSizeWarning` says so and ``spec.subset`` is set to the number of
    examples used, so every result that records the spec records what was used (redoing it with that
    ``subset`` gives the same data).

    Raises:
        DataError: unknown name, missing or damaged files, or ``spec.subset`` <= 0.
        NoSplitError: ``spec.split`` is ``"test"`` and the source has one split only (a factory
            without a ``split`` parameter).
    """
    _check_split(spec.split)
    name = spec.name
    if name == "digits":
        ds: Dataset = TensorDataset(*digits_tensors(spec.split))
    elif name == "mnist1d":
        from landscape.data.mnist1d import mnist1d_tensors  # without the package: one line naming the extra

        ds = TensorDataset(*mnist1d_tensors(spec.split))
    elif name in ("cifar10", "cifar100"):
        ds = TensorDataset(*_cifar_tensors(name, spec.data_dir, spec.split))
    elif name == "mnist":
        ds = TensorDataset(*_mnist_tensors(spec.data_dir, spec.split))
    elif name.endswith((".pt", ".pth", ".npz")) or Path(name).is_file():
        ds = TensorDataset(*tensor_file_tensors(name))
    elif ":" in name:
        from landscape.io.factories import resolve_factory

        try:
            factory = resolve_factory(name, kind="dataset")
        except Exception as exc:
            raise DataError(str(exc)) from exc
        ds = call_dataset_factory(factory, name, spec.split)
        if not hasattr(ds, "__getitem__") or not hasattr(ds, "__len__"):
            raise DataError(f"dataset factory {name!r} returned {type(ds).__name__}, not a map-style Dataset")
    else:
        names = ", ".join(DATASET_NAMES)
        raise DataError(
            f"unknown dataset {name!r}; choose one of {names}, a .pt/.npz file or 'package.module:factory'"
        )
    if spec.subset is not None:
        total = len(ds)  # type: ignore[arg-type]
        if spec.subset > total:
            warnings.warn(
                f"subset={spec.subset} is more than the {total} examples of {name!r} ({spec.split}); "
                f"using all {total}",
                SubsetSizeWarning,
                stacklevel=2,
            )
            spec.subset = total
        ds = fixed_subset(ds, spec.subset, seed=spec.seed)
    return ds


def accepts_split(factory: Any) -> bool:
    """Whether ``factory`` takes a ``split`` keyword (a parameter of that name, or ``**kwargs``)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature (some builtins): assume the plain contract
        return False
    return any(
        p.kind is inspect.Parameter.VAR_KEYWORD
        or (p.name == "split" and p.kind is not inspect.Parameter.POSITIONAL_ONLY)
        for p in params
    )


def call_dataset_factory(factory: Any, name: str, split: str) -> Any:
    """Call a user's dataset factory for ``split`` following the README's contract.

    A factory with a ``split`` parameter (or ``**kwargs``) is called as ``factory(split=split)``.
    One without provides a single dataset, used as the training split; asking it for the test split
    raises :class:`~landscape.errors.NoSplitError` rather than silently returning the training data.
    The factory's own exceptions propagate unchanged (a TypeError inside it is not a signature issue).
    """
    if accepts_split(factory):
        return factory(split=split)
    if split != "train":
        raise NoSplitError(
            f"dataset factory {name!r} takes no 'split' parameter, so it provides one dataset only "
            f"(used as the training split) and has no split={split!r}; give the factory a 'split' "
            "parameter to provide one"
        )
    return factory()


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


def input_shape(ds: Dataset) -> tuple[int, ...]:
    """Shape of one input example."""
    x = ds[0][0]
    return tuple(torch.as_tensor(x).shape)


def num_classes(ds: Dataset) -> int:
    """Number of classes seen in the labels (max label + 1)."""
    if isinstance(ds, TensorDataset):
        return int(ds.tensors[1].max().item()) + 1
    return int(max(int(ds[i][1]) for i in range(len(ds)))) + 1  # type: ignore[arg-type]
