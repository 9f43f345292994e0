"""A tensor file: ``.pt`` (a dict loaded with ``weights_only=True``) or ``.npz`` with ``x`` and ``y``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from landscape.errors import DataError

TENSOR_FILE_SUFFIXES = (".pt", ".pth", ".npz")


def is_tensor_file(name: str) -> bool:
    """Whether a data name means a tensor file: it ends in a tensor-file suffix or is an existing file."""
    return name.endswith(TENSOR_FILE_SUFFIXES) or Path(name).is_file()


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
