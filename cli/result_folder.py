"""The ``-o DIR`` of ``sharpness`` and ``evaluate``: never replace a result made with other settings.

The rules are the library's one result-folder guard (:mod:`landscape.io.result_folder`); these
functions keep the command-line names in its messages (``-o/--out``, ``--overwrite``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from landscape.cli.flags import with_flags
from landscape.errors import ConfigError, LandscapeError
from landscape.io import result_folder as guard


def check_out_folder(out: Path | None) -> None:
    """``-o`` must name a folder (existing or not), never an existing file."""
    try:
        guard.check_out_folder(out)
    except LandscapeError as exc:
        raise with_flags(exc) from None


def check_replaceable(
    result: Path, settings: dict[str, Any], *, companions: Sequence[str] = (), overwrite: bool = False
) -> None:
    """Refuse to write ``result`` over one made with other ``settings`` unless ``overwrite``.

    Args:
        result: the result JSON about to be written.
        settings: what the new result is made from (JSON-able).
        companions: names of files written beside ``result`` by the same command.
        overwrite: replace whatever is there.

    Raises:
        ResultFileError: naming the file, what differs and ``--overwrite``.
    """
    try:
        guard.check_replaceable(result, settings, companions=companions, overwrite=overwrite)
    except LandscapeError as exc:
        raise with_flags(exc) from None


def check_batch_size(batch_size: int) -> None:
    """``--batch-size`` must be a positive number of examples."""
    if batch_size < 1:
        raise ConfigError(
            f"--batch-size {batch_size} must be a positive number of examples per batch, e.g. --batch-size 256"
        )
