"""MNIST from local IDX files, optionally gzipped (no download): registry name ``mnist``."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from landscape.data.common import require_dir
from landscape.errors import DataError


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


def mnist_tensors(data_dir: str | None, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (N, 1, 28, 28) float32 in [0, 1] and ``y`` (N,) int64 from ``data_dir``'s IDX files."""
    root = require_dir(data_dir, "mnist")
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
