"""The ``landscape`` command: a click group that turns LandscapeError into one line and exit 1."""

from __future__ import annotations

import os
import re
import sys
import warnings
from typing import Any

import click

from landscape import __version__
from landscape.errors import LandscapeError, SubsetSizeWarning
from landscape.io.atomic import write_error

EPILOG = "Run 'landscape COMMAND -h' for a command's options and examples."


# Library messages name Python parameters; on the command line the user knows the flags.
_FLAG_NAMES = (
    (re.compile(r"\bunsafe_load=True\b"), "--unsafe-load"),
    (re.compile(r"\bsamples=(\S+)"), r"--samples \1"),
    (re.compile(r"\bsubset=(\S+)"), r"--samples \1"),
    (re.compile(r"\bmodel='NAME'"), "--model NAME"),
    (re.compile(r"\bmodel_kwargs num_classes=(\d+)"), r"""--model-kwargs '{"num_classes": \1}'"""),
)

# torch's own wording for a class label the model has no output for (CPU cross-entropy).
_TARGET_RE = re.compile(r"Target (-?\d+) is out of bounds")


# Where a command sets a library parameter with a flag of another name.
_COMMAND_FLAG_NAMES = {
    "compare-magnitude": ((re.compile(r"\b(?:samples|subset)=(\S+)"), r"--sharpness \1"),),
}


def as_flags(message: str, command: str | None = None) -> str:
    """Rewrite the library's parameter names in ``message`` as the flags of ``command`` that set them."""
    for pattern, flag in (*_COMMAND_FLAG_NAMES.get(command or "", ()), *_FLAG_NAMES):
        message = pattern.sub(flag, message)
    return message


class LandscapeGroup(click.Group):
    """Turns library errors (and unexpected ones) into a single line on stderr, exit status 1."""

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


@click.group(cls=LandscapeGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(__version__, "--version", prog_name="landscape")
def cli() -> None:
    """Loss-landscape geometry for PyTorch: Hessian spectra, sharpness and loss surfaces."""


# -- commands (one module each) ------------------------------------------------------------------
from landscape.cli.compare_magnitude import compare_magnitude  # noqa: E402
from landscape.cli.connect import connect  # noqa: E402
from landscape.cli.demo import demo  # noqa: E402
from landscape.cli.evaluate import evaluate  # noqa: E402
from landscape.cli.info import info  # noqa: E402
from landscape.cli.plot1d import plot1d  # noqa: E402
from landscape.cli.plot2d import plot2d  # noqa: E402
from landscape.cli.plot_sharpness import plot_sharpness  # noqa: E402
from landscape.cli.sharpness import sharpness  # noqa: E402
from landscape.cli.sweep import sweep  # noqa: E402
from landscape.cli.train import train  # noqa: E402

cli.add_command(info)
cli.add_command(sharpness)
cli.add_command(evaluate)
cli.add_command(plot1d)
cli.add_command(plot2d)
cli.add_command(train)
cli.add_command(compare_magnitude)
cli.add_command(connect)
cli.add_command(demo)
cli.add_command(plot_sharpness)
cli.add_command(sweep)


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
