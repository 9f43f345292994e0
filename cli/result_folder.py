"""The ``-o DIR`` of ``sharpness`` and ``evaluate``: never replace a result made with other settings.

A result JSON records the settings it was made with (``settings``: the checkpoint's weights digest,
the data, every numerical option). Writing into a folder that holds a result with other settings (or
files of ours without their JSON) is refused unless the user passes ``--overwrite``; the same
settings may be written again (a rerun, or the resume of an interrupted ``sharpness``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from landscape.errors import ConfigError, ResultFileError
from landscape.io.jsonio import json_default


def check_out_folder(out: Path | None) -> None:
    """``-o`` must name a folder (existing or not), never an existing file."""
    if out is not None and out.exists() and not out.is_dir():
        raise ConfigError(
            f"-o/--out {str(out)!r} is an existing file, not a folder; name a folder (it is created if needed)"
        )


def _canonical(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=json_default))


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
    if overwrite:
        return
    fix = "use another -o/--out, or --overwrite to replace it"
    if not result.exists():
        stray = [c for c in companions if (result.parent / c).exists()]
        if stray:
            raise ResultFileError(
                f"{str(result.parent)!r} holds {', '.join(stray)} of another result without its "
                f"{result.name}; {fix}"
            )
        return
    try:
        old = json.loads(result.read_text()).get("settings")
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise ResultFileError(f"{str(result)!r} exists and cannot be read ({exc}); {fix}") from None
    if not isinstance(old, dict):
        raise ResultFileError(f"{str(result)!r} was written without its settings (an older version); {fix}")
    new = _canonical(settings)
    old = _canonical(old)
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if diff:
        raise ResultFileError(
            f"{str(result)!r} was made with other settings (differs in: {', '.join(diff)}); {fix}"
        )


def remove_stale(folder: Path, names: Sequence[str]) -> None:
    """Remove files of a replaced result that the new result does not have."""
    for name in names:
        (folder / name).unlink(missing_ok=True)


def check_batch_size(batch_size: int) -> None:
    """``--batch-size`` must be a positive number of examples."""
    if batch_size < 1:
        raise ConfigError(
            f"--batch-size {batch_size} must be a positive number of examples per batch, e.g. --batch-size 256"
        )
