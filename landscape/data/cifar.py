"""CIFAR-10 and CIFAR-100 from a local folder in the python-pickle layout (no download)."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import torch

from landscape.data.common import require_dir
from landscape.errors import DataError


def cifar_tensors(name: str, data_dir: str | None, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (N, 3, 32, 32) float32 in [0, 1] and ``y`` (N,) int64 of ``cifar10`` or ``cifar100``."""
    root = require_dir(data_dir, name)
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
