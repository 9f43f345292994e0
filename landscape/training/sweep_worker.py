"""One run of a sweep in a process of its own: ``python -m landscape.training.sweep_worker``.

The sweep hands the worker the run's settings as the JSON object :func:`job_document` makes (the
``TrainConfig`` as ``config.json`` holds it, the run folder, the device and the dtype) on standard
input; the worker rebuilds the ``TrainConfig``, calls :func:`~landscape.training.train` (which
resumes an interrupted run) and prints the final metrics as one JSON line. So every setting of
``TrainConfig`` reaches the process as it is, with nothing to translate into command-line flags.
A refused run prints its one-line message on standard error and exits with status 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from landscape.device import dtype_name, resolve_dtype
from landscape.errors import ConfigError, LandscapeError
from landscape.training.config import TrainConfig, json_plain
from landscape.training.loop import train


def job_document(config: TrainConfig, out_dir: str | Path, *, device: str, dtype: torch.dtype) -> str:
    """The JSON text that makes the worker train ``config`` into ``out_dir``.

    Raises:
        ConfigError: a setting is not a JSON value (an object such as a class), so it cannot reach
            another process; such a sweep runs with ``jobs=1``.
    """
    try:
        settings = json_plain(config.to_dict())
    except ConfigError:
        raise ConfigError(
            f"the settings of {str(out_dir)!r} hold a value that is not JSON (in optimizer_kwargs="
            f"{config.optimizer_kwargs!r} or the model's keyword arguments), so the run cannot go to a "
            "separate training process; use jobs=1"
        ) from None
    return json.dumps(
        {"config": settings, "out_dir": str(out_dir), "device": device, "dtype": dtype_name(dtype)}
    )


def run_job(document: dict[str, Any]) -> dict[str, Any]:
    """Train the run ``document`` describes (see :func:`job_document`); its final metrics."""
    config = TrainConfig.from_dict(document["config"])
    result = train(
        config,
        Path(document["out_dir"]),
        device=str(document["device"]),
        dtype=resolve_dtype(str(document["dtype"])),
        quiet=True,
    )
    return dict(result.final_metrics)


def main() -> int:
    """Read one job from standard input, train it, print its final metrics; the exit status."""
    try:
        metrics = run_job(json.loads(sys.stdin.read()))
    except LandscapeError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(json.dumps(metrics, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
