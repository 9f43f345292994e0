"""``landscape sweep``: a grid of ``landscape train`` runs over optimizers, decompositions, radii and seeds."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from landscape.cli.common import echo_json, fail, parse_json_kwargs, with_hf_task
from landscape.cli.train import train as train_command
from landscape.data.datasets import DataSpec
from landscape.device import resolve_dtype
from landscape.errors import LandscapeError
from landscape.models.builders import ModelSpec
from landscape.training import TrainConfig
from landscape.training.sweep import describe_plan, plan_runs, plan_sweep, run_sweep

# ``landscape train`` options every run of the sweep shares, taken from that command as they are.
_SHARED_TRAIN_OPTIONS = (
    "model",
    "model_kwargs",
    "hf_task",
    "data",
    "data_dir",
    "data_kwargs",
    "samples",
    "lr",
    "momentum",
    "weight_decay",
    "opt_kwargs",
    "batch_size",
    "epochs",
    "save_every",
    "device",
    "dtype",
)

# Library messages name Python parameters; on the command line they are these flags.
_FLAGS = {
    "optimizers": "--optimizer",
    "decompositions": "--decomposition",
    "rhos": "--rho",
    "seeds": "--seeds",
    "jobs": "--jobs",
    "threads": "--threads",
    "out_dir": "-o/--out",
}
_PARAM = re.compile(r"\b(" + "|".join(_FLAGS) + r")\b(?=[=: ]| is)")


def to_flags(message: str) -> str:
    """``rhos: -0.1 is not valid`` -> ``--rho: -0.1 is not valid``; ``jobs=0`` -> ``--jobs=0``."""
    return _PARAM.sub(lambda m: _FLAGS[m.group(1)], message)


def _shared_params() -> list[click.Parameter]:
    by_name = {p.name: p for p in train_command.params}
    return [copy.copy(by_name[name]) for name in _SHARED_TRAIN_OPTIONS]


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _list_of(convert: Callable[[str], Any], what: str, example: str) -> Callable[..., list[Any]]:
    """A click callback: a comma-separated list of values ``convert`` reads; a bad one is a usage error."""

    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> list[Any]:
        out = []
        for v in _split(value or ""):
            try:
                out.append(convert(v))
            except ValueError:
                raise click.BadParameter(f"{v!r} is not {what}; give {example}") from None
        return out

    return parse


_floats = _list_of(float, "a number", "numbers separated by commas, e.g. 0.05,0.2")
_ints = _list_of(int, "a whole number", "seeds separated by commas, e.g. 0,1,2")


@click.command(params=_shared_params())
@click.option(
    "--optimizer",
    "optimizers",
    required=True,
    metavar="NAME[,NAME...]",
    help="Optimizers, comma-separated (as in 'landscape train --optimizer').",
)
@click.option(
    "--decomposition",
    "decompositions",
    default="",
    metavar="global,elementwise",
    help="Decompositions for sam-direction/sam-magnitude (default: theirs); ignored by the others.",
)
@click.option(
    "--rho",
    "rhos",
    default=None,
    callback=_floats,
    metavar="R[,R...]",
    help="Radii for the methods that have one, >= 0 (default: each method's; sgd/adam get none).",
)
@click.option(
    "--seeds", default="0,1,2", show_default=True, callback=_ints, metavar="S[,S...]", help="Training seeds."
)
@click.option(
    "-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="Folder of the runs."
)
@click.option("--jobs", default=1, show_default=True, type=int, help="Runs at once, each a separate process.")
@click.option(
    "--threads",
    default=None,
    type=int,
    help="CPU threads per run (default: CPUs / --jobs; one run: torch's).",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the plan (each run and whether it is new, resumed or done)."
)
@click.option(
    "-q", "--quiet", is_flag=True, help="No progress lines (failed runs are still listed at the end)."
)
@click.option("--json", "as_json", is_flag=True, help="Print what was trained, skipped and failed as JSON.")
def sweep(
    optimizers: str,
    decompositions: str,
    rhos: list[float],
    seeds: list[int],
    out: Path,
    jobs: int,
    threads: int | None,
    dry_run: bool,
    quiet: bool,
    as_json: bool,
    **shared: Any,
) -> None:
    """Train a grid of runs under one folder: every optimizer x decomposition x rho x seed.

    Decompositions go only to sam-direction and sam-magnitude, radii only to methods that have one;
    each run gets a folder named after its point (e.g. sam-magnitude_elementwise_rho0.2_seed1) and is a
    complete 'landscape train' run folder. Finished runs are skipped and interrupted ones resumed, so
    rerunning the same command is nearly free; a folder holding a run with other settings stops the
    sweep before anything runs. The other options are those of 'landscape train', shared by every run.
    Compare the groups of seeds afterwards with 'landscape compare-magnitude RUNS'.

    \b
    Examples:
      landscape sweep -o runs --optimizer sgd,sam --rho 0.05 --seeds 0,1,2 --model mlp --epochs 20
      landscape sweep -o runs --optimizer sgd,sam,sam-direction,sam-magnitude \\
          --decomposition global,elementwise --rho 0.05,0.2 --seeds 0,1,2 --model mlp --lr 0.1
      landscape sweep -o runs --optimizer sgd,sam --rho 0.05 --jobs 2 --dry-run
    """
    extra = parse_json_kwargs(shared["opt_kwargs"], "--opt-kwargs") or {}
    if "decomposition" in extra:
        fail("--opt-kwargs must not hold 'decomposition'; give it with --decomposition")
        return
    base = TrainConfig(
        model=ModelSpec(
            shared["model"], with_hf_task(parse_json_kwargs(shared["model_kwargs"]), shared["hf_task"]) or {}
        ),
        data=DataSpec(
            shared["data"],
            split="train",
            data_dir=shared["data_dir"],
            subset=shared["samples"],
            kwargs=parse_json_kwargs(shared["data_kwargs"], "--data-kwargs") or {},
        ),
        lr=shared["lr"],
        momentum=shared["momentum"],
        weight_decay=shared["weight_decay"],
        optimizer_kwargs=extra,
        batch_size=shared["batch_size"],
        epochs=shared["epochs"],
        save_every=shared["save_every"],
    )
    dtype = resolve_dtype(shared["dtype"])
    log = (lambda _: None) if quiet else (lambda line: click.echo(line, err=as_json))
    try:
        points = plan_sweep(_split(optimizers), seeds, decompositions=_split(decompositions), rhos=rhos)
        if dry_run:
            planned = plan_runs(out, base, points, dtype=dtype)
            if as_json:
                echo_json([{"run": p.name, "status": p.status, "out": str(p.out_dir)} for p in planned])
            else:
                for line in describe_plan(planned):
                    click.echo(line)
            return
        result = run_sweep(
            out, base, points, jobs=jobs, threads=threads, device=shared["device"], dtype=dtype, log=log
        )
    except LandscapeError as exc:
        from landscape.cli.main import as_flags  # main imports this module: import when needed

        fail(as_flags(to_flags(str(exc)), "sweep"))
        return
    if as_json:
        echo_json(result.to_dict())
    else:
        done = len(result.trained) + len(result.skipped)
        tail = f"; compare them with: landscape compare-magnitude {out}" if done else ""
        click.echo(
            f"{len(result.trained)} trained, {len(result.skipped)} skipped, {len(result.failed)} failed "
            f"in {result.seconds:.1f} s under {out}{tail}"
        )
    if result.failed:
        for name, why in result.failed.items():
            click.echo(f"failed: {name}: {why} (log: {result.logs.get(name, 'none')})", err=True)
        fail(f"{len(result.failed)} run(s) failed: {', '.join(result.failed)} (the reasons are listed above)")
