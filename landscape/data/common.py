"""What every reader of the data package shares: the split names and the local-folder check."""

from __future__ import annotations

from pathlib import Path

from landscape.errors import DataError

SPLITS = ("train", "test")


def check_split(split: str) -> None:
    """Raise ``DataError`` unless ``split`` is one of ``SPLITS``."""
    if split not in SPLITS:
        raise DataError(f"split={split!r} is not valid; choose one of {', '.join(SPLITS)}")


def require_dir(data_dir: str | None, name: str) -> Path:
    """``data_dir`` as a path to an existing folder; ``DataError`` naming dataset ``name`` otherwise."""
    if not data_dir:
        raise DataError(f"dataset {name!r} needs data_dir pointing at its local files (no download is made)")
    path = Path(data_dir)
    if not path.is_dir():
        raise DataError(f"data_dir={str(path)!r} does not exist or is not a directory")
    return path
