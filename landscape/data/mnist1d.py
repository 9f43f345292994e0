"""MNIST-1D (Greydanus 2020, *Scaling down deep learning*), generated locally and cached.

The ten digits are 1-D templates of length 12, padded, scaled, translated, sheared, blurred with
correlated and i.i.d. noise and resampled to length 40 by the ``mnist1d`` package's ``make_dataset``
(its default arguments: 5000 examples, the first 80% for training, seed 42). Nothing is downloaded:
the package's ``get_dataset`` (which fetches a pickle from GitHub) is never called.

Layout: ``x`` is float32 of shape ``(N, 40)`` for every model (the package's own layout; the 1-D CNN of
:mod:`landscape.models.mnist1d` adds the channel axis itself), ``y`` is int64 in ``0..9``. With the
default arguments there are 4000 training and 1000 test examples.

The arrays are cached as ``mnist1d-<key>.npz`` in ``$LANDSCAPE_CACHE`` (default
``~/.cache/landscape``), written atomically, so only the first load pays for the generation (seconds).
The key hashes the generation arguments and the package version.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from landscape.data.common import check_split
from landscape.errors import DataError
from landscape.io.atomic import atomic_save_npz

EXTRA_HINT = "pip install 'landscape-geometry[mnist1d]'"
CACHE_ENV = "LANDSCAPE_CACHE"
_KEYS = ("x", "y", "x_test", "y_test")


def cache_dir() -> Path:
    """``$LANDSCAPE_CACHE`` if set, else ``~/.cache/landscape``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "landscape"


def _package() -> tuple[Any, str]:
    """The ``mnist1d.data`` module and the package version, or one line naming the extra."""
    try:
        data_module = importlib.import_module("mnist1d.data")
    except ImportError:
        raise DataError(f"MNIST-1D needs the mnist1d package: {EXTRA_HINT}") from None
    from importlib.metadata import PackageNotFoundError, version

    try:
        pkg_version = version("mnist1d")
    except PackageNotFoundError:  # an unpackaged checkout of mnist1d has no metadata
        pkg_version = "unknown"
    return data_module, pkg_version


def _generation_args(data_module: Any, num_samples: int | None) -> Any:
    args = data_module.get_dataset_args()  # plain defaults; no download happens here
    if num_samples is not None:
        if num_samples < 10:
            raise DataError(f"num_samples={num_samples} must be >= 10 (one example per digit at least)")
        args.num_samples = int(num_samples)
    return args


def _cache_key(args: Any, pkg_version: str) -> str:
    settings = {k: v for k, v in vars(args).items() if k != "url"}
    blob = json.dumps({"args": settings, "mnist1d": pkg_version}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@contextmanager
def _global_rng_kept() -> Iterator[None]:
    """``make_dataset`` reseeds numpy's and Python's global generators: put them back afterwards."""
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def mnist1d_arrays(
    *, num_samples: int | None = None, cache: str | Path | None = None
) -> dict[str, np.ndarray]:
    """The MNIST-1D arrays ``x``, ``y``, ``x_test``, ``y_test`` (float32 ``(N, 40)``, int64 ``(N,)``).

    Args:
        num_samples: total examples before the 80/20 split (``None``: the package's default, 5000).
        cache: cache folder (``None``: :func:`cache_dir`).

    Returns:
        The four arrays, from the cache when present, else generated and cached atomically.

    Raises:
        DataError: the ``mnist1d`` package is missing, or the cache file is unreadable.
    """
    data_module, pkg_version = _package()
    args = _generation_args(data_module, num_samples)
    folder = Path(cache).expanduser() if cache is not None else cache_dir()
    path = folder / f"mnist1d-{_cache_key(args, pkg_version)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in _KEYS}
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(
                f"MNIST-1D cache {str(path)!r} is unreadable ({exc}); delete it to regenerate"
            ) from None
    with _global_rng_kept():
        raw = data_module.make_dataset(args)
    arrays = {
        "x": np.asarray(raw["x"], dtype=np.float32),
        "y": np.asarray(raw["y"], dtype=np.int64),
        "x_test": np.asarray(raw["x_test"], dtype=np.float32),
        "y_test": np.asarray(raw["y_test"], dtype=np.int64),
    }
    with contextlib.suppress(OSError):  # a read-only home still gets the data, just uncached
        atomic_save_npz(path, **arrays)
    return arrays


def mnist1d_tensors(
    split: str = "train", *, num_samples: int | None = None, cache: str | Path | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` float32 ``(N, 40)`` and ``y`` int64 ``(N,)`` of one split (4000 train / 1000 test)."""
    check_split(split)
    arrays = mnist1d_arrays(num_samples=num_samples, cache=cache)
    x, y = (arrays["x"], arrays["y"]) if split == "train" else (arrays["x_test"], arrays["y_test"])
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))


def mnist1d_dataset(split: str = "train") -> TensorDataset:
    """MNIST-1D as a ``TensorDataset``; the data named ``mnist1d`` (``--data mnist1d``)."""
    return TensorDataset(*mnist1d_tensors(split))
