"""The sharpness measures by public name: how to compute each, the options it reads, its label.

One :class:`Measure` entry per measure. Its ``options`` (option name -> default) are the only options
that key the measure: its stage of a resumable ``sharpness`` run is keyed by
:func:`measure_settings`, so a new option of one measure leaves every other measure's stored results
valid. Adding a measure is one module with its compute function and one entry in :data:`MEASURES`
(or :func:`register_measure` from outside the package).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

from landscape.errors import ConfigError
from landscape.measures.average import average_sharpness
from landscape.measures.common import MeasureResult
from landscape.measures.fisher_rao import fisher_rao_norm
from landscape.measures.keskar import keskar_sharpness
from landscape.measures.options import MeasureOptions
from landscape.measures.overlap import gradient_overlap
from landscape.measures.pac_bayes import pac_bayes_sharpness
from landscape.measures.random_max import random_max_sharpness
from landscape.measures.relative import relative_flatness
from landscape.measures.worst import worst_sharpness
from landscape.objective.core import Objective

MeasureFunction = Callable[..., MeasureResult]
_DEFAULTS = {f.name: f.default for f in fields(MeasureOptions) if f.name != "extra"}


def shared_options(*names: str) -> Mapping[str, Any]:
    """``{name: default}`` for fields of :class:`MeasureOptions`, with the dataclass's defaults."""
    unknown = sorted(set(names) - set(_DEFAULTS))
    if unknown:
        raise ConfigError(f"{unknown} are not fields of MeasureOptions; choose from {sorted(_DEFAULTS)}")
    return MappingProxyType({name: _DEFAULTS[name] for name in names})


@dataclass(frozen=True)
class Measure:
    """One registry entry.

    Attributes:
        name: public name (what ``measures=`` and ``MeasureResult.name`` say).
        compute: ``(objective, options) -> MeasureResult`` with a :class:`MeasureOptions` (plus an
            ``eigenvectors=`` keyword when :attr:`top_eigenvectors` is set).
        options: every option the measure reads, name -> default: fields of :class:`MeasureOptions`
            (:func:`shared_options`) or its own, which a caller sets in ``MeasureOptions.extra``.
        label: how tables and figures name it.
        hessian_products: it spends Hessian-vector products (``MeasureResult.hvps``).
        top_eigenvectors: the option that counts the top (largest algebraic) Hessian eigenvectors
            the measure can take instead of computing them (``'k'`` for ``overlap``); ``None``: none.
        check: validation of its own options beyond :meth:`MeasureOptions.validate`, given
            :func:`measure_settings` (raises :class:`ConfigError`).
    """

    name: str
    compute: MeasureFunction
    options: Mapping[str, Any]
    label: str
    hessian_products: bool = False
    top_eigenvectors: str | None = None
    check: Callable[[dict[str, Any]], None] | None = None


MEASURES: dict[str, Measure] = {
    m.name: m
    for m in (
        Measure(
            "worst",
            worst_sharpness,
            shared_options("rho", "perturb_norm", "adaptive", "m", "steps", "restarts", "seed"),
            "worst-case sharpness",
        ),
        Measure(
            "average",
            average_sharpness,
            shared_options("rho", "adaptive", "mc_samples", "seed"),
            "average-case sharpness",
        ),
        Measure(
            "random-max",
            random_max_sharpness,
            shared_options("eps", "random_max_samples", "seed"),
            "random-max sharpness",
        ),
        Measure(
            "keskar", keskar_sharpness, shared_options("eps", "steps", "restarts", "seed"), "Keskar sharpness"
        ),
        Measure(
            "pac-bayes",
            pac_bayes_sharpness,
            shared_options(
                "pac_bayes_target",
                "pac_bayes_magnitude",
                "pac_bayes_eps",
                "mc_samples",
                "bisection_steps",
                "seed",
            ),
            r"PAC-Bayes $1/\sigma^2$",
        ),
        Measure("fisher-rao", fisher_rao_norm, shared_options("fisher_rao_depth"), "Fisher-Rao norm"),
        Measure(
            "relative-flatness",
            relative_flatness,
            shared_options(
                "layer",
                "relative_flatness_method",
                "relative_flatness_max_exact",
                "hutchinson_probes",
                "seed",
            ),
            "relative flatness",
            hessian_products=True,
        ),
        Measure(
            "overlap",
            gradient_overlap,
            shared_options("k", "lanczos_tol", "seed"),
            "gradient overlap (top-k)",
            hessian_products=True,
            top_eigenvectors="k",
        ),
    )
}
MEASURE_NAMES = tuple(MEASURES)  # the built-in measures; measure_names() adds the registered ones


def measure_names() -> tuple[str, ...]:
    """Every registered measure's name, in registration order."""
    return tuple(MEASURES)


def get_measure(name: str) -> Measure:
    """The entry of ``name``.

    Raises:
        ConfigError: no measure of that name.
    """
    try:
        return MEASURES[name]
    except KeyError:
        raise ConfigError(f"measure {name!r} is not known; choose from {', '.join(MEASURES)}") from None


def register_measure(measure: Measure) -> Measure:
    """Add ``measure`` to the registry (``measures=``, :func:`compute_measures` and ``sharpness`` take it).

    Raises:
        ConfigError: the name is taken or unusable in a comma-separated list, or one of its options
            has another default than the same option of :class:`MeasureOptions` or another measure.
    """
    name = measure.name
    if name in MEASURES:
        raise ConfigError(f"measure {name!r} is registered already; give the new measure another name")
    if not name or name != name.strip() or "," in name:
        raise ConfigError(f"measure name {name!r} must be non-empty, without commas or outer spaces")
    for option, default in measure.options.items():
        _check_default(name, option, default)
    MEASURES[name] = measure
    return measure


def _check_default(name: str, option: str, default: Any) -> None:
    """One default per option name: a field's is the dataclass's, an own option's its first reader's."""
    if option in _DEFAULTS:
        known, owner = _DEFAULTS[option], "MeasureOptions"
    else:
        readers = [m for m in MEASURES.values() if option in m.options]
        if not readers:
            return
        known, owner = readers[0].options[option], f"measure {readers[0].name!r}"
    if default != known:
        raise ConfigError(
            f"option {option!r} of measure {name!r} defaults to {default!r}, but {owner} gives it "
            f"{known!r}; use that default or another option name"
        )


def measure_settings(name: str, options: MeasureOptions | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The options measure ``name`` reads, with their values: what keys its stored result.

    Args:
        name: a registered measure.
        options: a :class:`MeasureOptions`, or its ``to_dict()`` as a stored file holds it; an option
            it lacks (a file written before the option existed) takes the measure's default.

    Returns:
        ``{option: value}`` in the order of the entry's ``options``.
    """
    measure = get_measure(name)
    given = options.to_dict() if isinstance(options, MeasureOptions) else dict(options or {})
    extra = given.get("extra") or {}
    return {
        option: given[option] if option in _DEFAULTS and option in given else extra.get(option, default)
        for option, default in measure.options.items()
    }


def measure_label(name: str) -> str:
    """How tables and figures name measure ``name``."""
    return get_measure(name).label


def check_measure_options(names: list[str], options: MeasureOptions) -> None:
    """Validate ``options`` for the measures ``names``: the fields, the names in ``extra`` (each must be
    an option of a registered measure) and each measure's own check.

    Raises:
        ConfigError: the first bad option, its value and what would be valid.
    """
    options.validate()
    readable = {option for m in MEASURES.values() for option in m.options if option not in _DEFAULTS}
    unknown = sorted(set(options.extra) - readable)
    if unknown:
        raise ConfigError(
            f"extra holds {unknown}, which no registered measure reads; options of the registered "
            f"measures beyond the fields: {sorted(readable) or 'none'}"
        )
    for name in names:
        measure = get_measure(name)
        if measure.check is not None:
            measure.check(measure_settings(name, options))


def compute_one(
    objective: Objective, name: str, options: MeasureOptions, *, eigenvectors: Any = None
) -> MeasureResult:
    """Measure ``name`` with ``options`` (validated by the caller); ``eigenvectors`` go to a measure
    that takes them and are ignored by the others."""
    measure = get_measure(name)
    if measure.top_eigenvectors is not None:
        return measure.compute(objective, options, eigenvectors=eigenvectors)
    return measure.compute(objective, options)
