"""``compute_measures``: run several sharpness measures by their public names (:mod:`.registry`)."""

from __future__ import annotations

from collections.abc import Sequence

from landscape.errors import ConfigError
from landscape.measures.common import MeasureResult
from landscape.measures.options import MeasureOptions
from landscape.measures.overlap import Eigenvectors
from landscape.measures.registry import (
    MEASURE_NAMES,
    check_measure_options,
    compute_one,
    get_measure,
    measure_names,
)
from landscape.objective.core import Objective

__all__ = ["MEASURE_NAMES", "compute_measures", "parse_measure_names"]


def parse_measure_names(names: str | Sequence[str]) -> list[str]:
    """``'worst,average'`` or ``['worst', 'average']`` to a list of registered names, in order, no repeats.

    Raises:
        ConfigError: an unknown or empty name.
    """
    items = names.split(",") if isinstance(names, str) else list(names)
    out: list[str] = []
    for raw in items:
        name = get_measure(raw.strip()).name
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError(f"no measure given; choose from {', '.join(measure_names())}")
    return out


def compute_measures(
    objective: Objective,
    names: str | Sequence[str],
    options: MeasureOptions | None = None,
    *,
    eigenvectors: Eigenvectors | None = None,
) -> dict[str, MeasureResult]:
    """Compute the named measures in order; the parameters are restored exactly after each.

    Args:
        objective: the loss over a fixed sample (batch norm in eval mode by default).
        names: registered names (built in: ``worst``, ``average``, ``random-max``, ``keskar``,
            ``pac-bayes``, ``fisher-rao``, ``relative-flatness``, ``overlap``), as a list or
            comma-separated.
        options: every setting (:class:`MeasureOptions`; defaults when ``None``), validated first,
            so a bad setting fails before any measure runs.
        eigenvectors: top Hessian eigenvectors to reuse for a measure that takes them (``overlap``),
            e.g. from a Lanczos stage.

    Returns:
        ``{name: MeasureResult}`` in the order asked.

    Raises:
        ConfigError: an unknown name or a bad setting.
    """
    wanted = parse_measure_names(names)
    opts = options or MeasureOptions()
    check_measure_options(wanted, opts)
    return {name: compute_one(objective, name, opts, eigenvectors=eigenvectors) for name in wanted}
