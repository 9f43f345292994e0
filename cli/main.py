"""The ``landscape`` command: a click group that turns LandscapeError into one line and exit 1.

The group is lazy: it lists its commands from a static table and imports a command's module (and
with it torch) only to run it or show its own help, so ``landscape --help``, ``--version`` and usage
errors answer at once. Library messages name Python parameters (``batch_size=0``); :func:`as_flags`
rewrites them as the flags that set them (``--batch-size 0``) through the one table in
:mod:`landscape.cli.flags` (``as_flags`` stays importable from here).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import warnings
from typing import Any

import click

from landscape import __version__
from landscape.cli.flags import as_flags
from landscape.errors import LandscapeError, SubsetSizeWarning

__all__ = ["COMMANDS", "as_flags", "cli", "main"]

EPILOG = "Run 'landscape COMMAND -h' for a command's options and examples."

# name -> ("module:attribute", the first paragraph of the command's help). The help is copied so the
# listing needs no import; tests/cli/test_foundation_cli.py checks it against each command's own.
COMMANDS: dict[str, tuple[str, str]] = {
    "info": (
        "landscape.cli.info:info",
        "Describe CHECKPOINT: format, model, parameters per layer type, buffers, dtype, metadata.",
    ),
    "sharpness": (
        "landscape.cli.sharpness:sharpness",
        "Hessian sharpness of CHECKPOINT on a fixed sample: top eigenvalues, trace, density.",
    ),
    "evaluate": (
        "landscape.cli.evaluate:evaluate",
        "Mean loss and accuracy of CHECKPOINT over a whole dataset (exact per-sample weighting).",
    ),
    "plot1d": (
        "landscape.cli.plot1d:plot1d",
        "Loss and accuracy along one direction through CHECKPOINT, saved as a resumable surface file.",
    ),
    "plot2d": (
        "landscape.cli.plot2d:plot2d",
        "Loss over a plane through CHECKPOINT, saved as a resumable surface file, drawn as contours.",
    ),
    "train": (
        "landscape.cli.train:train",
        "Train a model and write a run folder: checkpoints per epoch, final.pt, metrics.csv, steps.csv.",
    ),
    "compare-magnitude": (
        "landscape.cli.compare_magnitude:compare_magnitude",
        "Compare the runs under RUNS: does SAM win by the direction or by the size of its update?",
    ),
    "compare": (
        "landscape.cli.compare_magnitude:compare",
        "Compare the runs under RUNS: does SAM win by the direction or by the size of its update?",
    ),
    "connect": (
        "landscape.cli.connect:connect",
        "Are checkpoints A and B in one basin? Loss, accuracy and barriers along paths from A to B.",
    ),
    "demo": (
        "landscape.cli.demo:demo",
        "Train SGD, SAM, SAM-direction and SAM-magnitude over seeds and report how flat their minima are.",
    ),
    "sweep": (
        "landscape.cli.sweep:sweep",
        "Train a grid of runs under one folder: every optimizer x decomposition x rho x seed.",
    ),
    "plot-sharpness": (
        "landscape.cli.plot_sharpness:plot_sharpness",
        "Sharpness lambda_max against steps with its stability threshold, training loss below.",
    ),
}

# torch's own wording for a class label the model has no output for (CPU cross-entropy).
_TARGET_RE = re.compile(r"Target (-?\d+) is out of bounds")


class LandscapeGroup(click.Group):
    """Lists commands from :data:`COMMANDS` without importing them; turns library errors (and
    unexpected ones) into a single line on stderr, exit status 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attribute = target[0].partition(":")
        return getattr(importlib.import_module(module_name), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command listing, from the static help (click's own layout and truncation)."""
        width = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [
            (name, click.Command(name, help=COMMANDS[name][1]).get_short_help_str(width))
            for name in sorted(COMMANDS)
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        with warnings.catch_warnings():
            # "always": a second command in the same process (tests, notebooks) warns again.
            warnings.simplefilter("always", SubsetSizeWarning)
            default_show = warnings.showwarning

            def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
                if issubclass(category, SubsetSizeWarning):
                    click.echo(f"warning: {as_flags(str(message), ctx.invoked_subcommand)}", err=True)
                else:
                    default_show(message, category, *args, **kwargs)

            warnings.showwarning = show
            return self._invoke_mapped(ctx)

    def _invoke_mapped(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LandscapeError as exc:
            click.echo(f"error: {as_flags(str(exc), ctx.invoked_subcommand)}", err=True)
            sys.exit(1)
        except OSError as exc:  # not one of ours: a folder made outside the atomic writers, say
            from landscape.io.atomic import write_error

            mapped = write_error(exc, exc.filename) if exc.filename else None
            if mapped is None:
                raise_unexpected(exc)
            click.echo(f"error: {mapped}", err=True)
            sys.exit(1)
        except IndexError as exc:
            match = _TARGET_RE.search(str(exc))
            if match is None:
                raise_unexpected(exc)
            click.echo(
                f"error: the data has label {match.group(1)}, which the model has no output for; "
                "use a model with enough outputs (--model-kwargs '{\"num_classes\": N}') or matching data",
                err=True,
            )
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except MemoryError:
            click.echo(
                "error: out of memory; use --samples, a smaller --batch-size or another --device", err=True
            )
            sys.exit(1)
        except RuntimeError as exc:  # torch reports device and shape problems as RuntimeError
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            click.echo(f"error: {first}", err=True)
            sys.exit(1)
        except Exception as exc:  # a bug, or a failure inside a user's own model or dataset code
            raise_unexpected(exc)


def raise_unexpected(exc: Exception) -> None:
    """One line for an exception nobody anticipated; the traceback with ``LANDSCAPE_DEBUG=1``."""
    if os.environ.get("LANDSCAPE_DEBUG"):
        raise exc
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    click.echo(
        f"error: unexpected {type(exc).__name__}: {first} (set LANDSCAPE_DEBUG=1 for the traceback)",
        err=True,
    )
    sys.exit(1)


def _check_threads(ctx: click.Context, param: click.Parameter, value: str) -> int | None:
    from landscape.errors import ConfigError
    from landscape.threads import choose_threads

    try:
        return choose_threads(value)
    except ConfigError as exc:
        raise click.BadParameter(f"{value!r} is not auto or a whole number >= 1", ctx, param) from exc


@click.group(cls=LandscapeGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(__version__, "--version", prog_name="landscape")
@click.option(
    "--threads",
    default="auto",
    show_default=True,
    callback=_check_threads,
    help="torch CPU threads: a number, or auto (the cores other processes leave idle, by the "
    "one-minute load average; torch's own choice when OMP_NUM_THREADS is set).",
)
def cli(threads: int | None) -> None:
    """Loss-landscape geometry for PyTorch: Hessian spectra, sharpness and loss surfaces."""
    if threads is not None:  # only once a command runs: a usage error never loads torch
        import torch

        torch.set_num_threads(threads)


def main() -> None:
    """Entry point: usage errors too become one line (``error: ...``), exit status 2."""
    try:
        cli.main(prog_name="landscape", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} -h')" if ctx is not None else ""
        click.echo(f"error: {exc.format_message()}{hint}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
