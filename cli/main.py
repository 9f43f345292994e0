"""The ``landscape`` command: a click group that turns LandscapeError into one line and exit 1."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from landscape import __version__
from landscape.errors import LandscapeError

EPILOG = "Run 'landscape COMMAND -h' for a command's options and examples."


class LandscapeGroup(click.Group):
    """Turns library errors (and unexpected ones) into a single line on stderr, exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LandscapeError as exc:
            click.echo(f"error: {exc}", err=True)
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
            if os.environ.get("LANDSCAPE_DEBUG"):
                raise
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
from cli.compare_magnitude import compare_magnitude  # noqa: E402
from cli.demo import demo  # noqa: E402
from cli.evaluate import evaluate  # noqa: E402
from cli.info import info  # noqa: E402
from cli.plot1d import plot1d  # noqa: E402
from cli.plot2d import plot2d  # noqa: E402
from cli.sharpness import sharpness  # noqa: E402
from cli.train import train  # noqa: E402

cli.add_command(info)
cli.add_command(sharpness)
cli.add_command(evaluate)
cli.add_command(plot1d)
cli.add_command(plot2d)
cli.add_command(train)
cli.add_command(compare_magnitude)
cli.add_command(demo)


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
