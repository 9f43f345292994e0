"""``compute_measures``: run several sharpness measures by their public names."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from landscape.errors import ConfigError
from landscape.measures.average import average_sharpness
from landscape.measures.common import MeasureResult
from landscape.measures.fisher_rao import fisher_rao_norm
from landscape.measures.keskar import keskar_sharpness
from landscape.measures.options import MeasureOptions
from landscape.measures.overlap import Eigenvectors, gradient_overlap
from landscape.measures.pac_bayes import pac_bayes_sharpness
from landscape.measures.random_max import random_max_sharpness
from landscape.measures.relative import relative_flatness
from landscape.measures.worst import worst_sharpness
from landscape.objective.core import Objective

MEASURES: dict[str, Callable[[Objective, MeasureOptions], MeasureResult]] = {
    "worst": worst_sharpness,
    "average": average_sharpness,
    "random-max": random_max_sharpness,
    "keskar": keskar_sharpness,
    "pac-bayes": pac_bayes_sharpness,
    "fisher-rao": fisher_rao_norm,
    "relative-flatness": relative_flatness,
    "overlap": gradient_overlap,
}
MEASURE_NAMES = tuple(MEASURES)


def parse_measure_names(names: str | Sequence[str]) -> list[str]:
    """``'worst,average'`` or ``['worst', 'average']`` to a list of known names, in order, no repeats.

    Raises:
        ConfigError: an unknown or empty name.
    """
    items = names.split(",") if isinstance(names, str) else list(names)
    out: list[str] = []
    for raw in items:
        name = raw.strip()
        if name not in MEASURES:
            raise ConfigError(f"measure {name!r} is not known; choose from {', '.join(MEASURE_NAMES)}")
        if name not in out:
            out.append(name)
    if not out:
        raise ConfigError(f"no measure given; choose from {', '.join(MEASURE_NAMES)}")
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
        names: public names (``worst``, ``average``, ``random-max``, ``keskar``, ``pac-bayes``,
            ``fisher-rao``, ``relative-flatness``, ``overlap``), as a list or comma-separated.
        options: every setting (:class:`MeasureOptions`; defaults when ``None``), validated first,
            so a bad setting fails before any measure runs.
        eigenvectors: top Hessian eigenvectors to reuse for ``overlap`` (e.g. from a Lanczos stage).

    Returns:
        ``{name: MeasureResult}`` in the order asked.

    Raises:
        ConfigError: an unknown name or a bad setting.
    """
    wanted = parse_measure_names(names)
    opts = options or MeasureOptions()
    opts.validate()
    results: dict[str, MeasureResult] = {}
    for name in wanted:
        if name == "overlap":
            results[name] = gradient_overlap(objective, opts, eigenvectors=eigenvectors)
        else:
            results[name] = MEASURES[name](objective, opts)
    return results
