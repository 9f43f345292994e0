"""Options and helpers shared by the commands. No maths here: commands call one library function."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from landscape.data.common import SPLITS
from landscape.data.registry import data_help
from landscape.device import resolve_dtype
from landscape.errors import ConfigError
from landscape.models.huggingface import HF_TASKS
from landscape.models.registry import model_help

F = Callable[..., Any]


def _compose(*decorators: F) -> F:
    def wrap(f: F) -> F:
        for d in reversed(decorators):
            f = d(f)
        return f

    return wrap


def with_hf_task(model_kwargs: dict[str, Any] | None, hf_task: str | None) -> dict[str, Any] | None:
    """``model_kwargs`` with ``--hf-task`` added as the ``task`` of a Hugging Face folder model."""
    if hf_task is None:
        return model_kwargs
    return {**(model_kwargs or {}), "task": hf_task}


def parse_json_kwargs(value: str | None, option: str = "--model-kwargs") -> dict[str, Any] | None:
    """Parse a JSON object given on the command line; errors name the option."""
    if value is None:
        return None
    try:
        obj = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{option} is not valid JSON ({exc.msg} at column {exc.colno}): {value!r}"
        ) from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{option} must be a JSON object like '{{\"width\": 32}}', got {value!r}")
    return obj


model_options = _compose(
    click.option(
        "--model",
        default=None,
        metavar="NAME|pkg.mod:factory",
        help="Model architecture (required for plain state dicts; overrides the checkpoint's): "
        + model_help()
        + "; or a factory.",
    ),
    click.option(
        "--model-kwargs", default=None, metavar="JSON", help="Keyword arguments of the model factory."
    ),
    click.option(
        "--hf-task",
        default=None,
        type=click.Choice(list(HF_TASKS)),
        help="Task of an hf:DIR / hf-config:DIR model when its config.json does not say (architectures).",
    ),
    click.option(
        "--unsafe-load",
        is_flag=True,
        help="Allow unpickling arbitrary objects (a whole nn.Module). Only for files you trust.",
    ),
)

data_options = _compose(
    click.option(
        "--data",
        default=None,
        metavar="NAME|FILE|pkg.mod:factory",
        help=data_help() + ". Default: the checkpoint's data, else digits.",
    ),
    click.option("--data-dir", default=None, type=click.Path(), help="Folder with local dataset files."),
    click.option(
        "--data-kwargs",
        default=None,
        metavar="JSON",
        help="Keyword arguments of the dataset (a registry dataset's, e.g. text's '{\"seq_len\": 128}', or a "
        "factory's); recorded with the data.",
    ),
    click.option("--split", default=None, type=click.Choice(SPLITS), help="Data split (default train)."),
    click.option(
        "--samples", default=None, type=int, help="Use a fixed seeded subset of N examples (default: all)."
    ),
    click.option("--batch-size", default=256, show_default=True, type=int, help="Batch size of each pass."),
    click.option(
        "--loss",
        default=None,
        metavar="cross-entropy|mse|pkg.mod:fn",
        help="Loss of the objective (default: the one the checkpoint was trained with, else cross-entropy).",
    ),
)

device_options = _compose(
    click.option(
        "--device",
        default="auto",
        show_default=True,
        metavar="auto|cpu|cuda|cuda:N|mps",
        help="Where to compute (auto: cuda, then mps, then cpu).",
    ),
    click.option(
        "--dtype",
        default=None,
        type=click.Choice(["float32", "float64"]),
        help="Floating-point precision of the model and data (default: the checkpoint's own: float64 for a "
        "float64 checkpoint, else float32; recorded in every result).",
    ),
)

output_options = _compose(
    click.option("-o", "--out", "out", default=None, type=click.Path(path_type=Path), help="Output folder."),
    click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout."),
    click.option("-q", "--quiet", is_flag=True, help="No progress bars."),
)

SEED_MAX = 2**63 - 1  # torch.manual_seed takes a 64-bit seed; above this it overflows


class SeedType(click.ParamType):
    """An integer seed in ``0 .. 2**63-1``; anything else is one clear usage error naming ``--seed``."""

    name = "INTEGER"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            seed = value
        else:
            try:
                seed = int(str(value).strip(), 10)
            except ValueError:
                self.fail(f"{value!r} is not an integer; give a whole number in 0..{SEED_MAX}", param, ctx)
        if not 0 <= seed <= SEED_MAX:
            self.fail(f"{seed} is out of range; give a whole number in 0..{SEED_MAX} (2**63-1)", param, ctx)
        return seed


SEED = SeedType()

seed_option = click.option(
    "--seed", default=0, show_default=True, type=SEED, help="Seed of every random draw (0..2**63-1)."
)


SOURCE_KEYS = (
    "model",
    "model_kwargs",
    "unsafe_load",
    "data",
    "data_dir",
    "split",
    "samples",
    "batch_size",
    "device",
    "dtype",
    "loss",
)


def source_options(f: F) -> F:
    """The model, data and device options, handed to the command as one ``source`` dict.

    ``source`` holds the keyword arguments of ``objective_from_checkpoint`` (and of the surface and
    sharpness entry points) with ``--model-kwargs`` parsed (``--hf-task`` in it as ``task``) and
    ``--dtype`` resolved, so every command loads a checkpoint the same way. ``--data-kwargs``, checked
    to be a JSON object, is in it as ``data_kwargs`` only when given.
    """

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        source = {k: kwargs.pop(k) for k in SOURCE_KEYS}
        source["model_kwargs"] = with_hf_task(
            parse_json_kwargs(source["model_kwargs"]), kwargs.pop("hf_task")
        )
        data_kwargs = parse_json_kwargs(kwargs.pop("data_kwargs"), "--data-kwargs")
        if data_kwargs is not None:
            source["data_kwargs"] = data_kwargs
        source["dtype"] = resolve_dtype(source["dtype"]) if source["dtype"] is not None else None
        return f(*args, source=source, **kwargs)

    return model_options(data_options(device_options(wrapper)))


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def echo_table(rows: list[tuple[str, Any]]) -> None:
    """Two aligned columns."""
    width = max((len(k) for k, _ in rows), default=0)
    for k, v in rows:
        click.echo(f"{k.ljust(width)}  {v}")


def fail(message: str) -> None:
    """Print one error line and exit 1 (for errors the CLI detects itself)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)
