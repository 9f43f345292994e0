"""Error hierarchy: every user-facing failure is a ``LandscapeError`` with a one-line message.

The CLI turns these into ``error: <message>`` and exit status 1; anything else is a bug.

Messages speak Python, never command-line flags. Name a parameter the way a caller writes it:

- ``name=value`` for a bad value: ``f"batch_size={batch_size} must be positive"``;
- ``name=True`` for an on/off switch: ``"or pass allow_nondeterministic=True"``;
- a bare name only when it has an underscore (``"needs data_dir pointing at ..."``): one-word names
  (``samples``, ``device``) are ordinary English too and must carry ``=``.

The CLI rewrites these as its flags (``--batch-size 0``, ``--allow-nondeterministic``, ``--data-dir``)
through one table, ``PARAM_FLAGS`` in ``landscape/cli/flags.py`` (with ``COMMAND_PARAM_FLAGS`` where one
command's flag has another name). A new parameter a user can get wrong: add its line there.
"""

from __future__ import annotations


class LandscapeError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class ConfigError(LandscapeError, ValueError):
    """A parameter has a bad value; the message names it, the value and the valid choices."""


class CheckpointError(LandscapeError):
    """A checkpoint cannot be read, is unsafe to read, or does not fit the model."""


class ModelError(LandscapeError):
    """A model name or factory cannot be resolved or built."""


class DataError(LandscapeError):
    """A dataset cannot be found, read or batched as asked."""


class NoSplitError(DataError):
    """The data source provides one split only (e.g. a dataset factory without a ``split`` parameter).

    Callers that can do without a test split (training) catch this one class to mean "no test split".
    """


class NonDeterministicDataError(DataError):
    """Two passes over the same loader gave different losses (augmentation, shuffling, dropout)."""


class ResultFileError(LandscapeError):
    """A result file cannot be read, or was made with other settings and would be silently reused."""


class OutputWriteError(LandscapeError):
    """An output file or folder cannot be written (read-only file system, no permission, disk full)."""


class LandscapeWarning(UserWarning):
    """Base class of the one-line warnings the toolkit issues on purpose (the CLI prints them)."""


class DivergenceWarning(LandscapeWarning):
    """Training ended with a loss far above where it started, or not finite: the run diverged."""


class RestartSpreadWarning(LandscapeWarning):
    """The restarts of an ascent (worst-case sharpness) disagree: the budget was too small."""


class SubsetSizeWarning(LandscapeWarning):
    """A requested subset is larger than the dataset; the whole dataset is used (and recorded)."""


def check_choice(name: str, value: object, choices: list[object] | tuple[object, ...]) -> None:
    """Raise ``ConfigError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ConfigError(f"{name}={value!r} is not valid; choose one of {valid}")


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise ``ConfigError`` unless ``value`` is > 0 (or >= 0 with ``allow_zero``)."""
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name}={value!r} must be {bound}")
