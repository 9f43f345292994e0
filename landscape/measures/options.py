"""The settings a caller gives the sharpness measures, in one dataclass, with defaults and validation.

One object travels from the caller (the CLI maps its flags onto these fields one to one) to
:func:`~landscape.measures.compute_measures`. Each measure reads only the options its registry entry
names (:mod:`landscape.measures.registry`), and only those key its stored result; a measure added by a
registry entry keeps options that are not fields here in :attr:`MeasureOptions.extra`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from landscape.errors import ConfigError, check_choice, check_positive

PERTURB_NORMS = ("l2", "linf")
RELATIVE_FLATNESS_METHODS = ("auto", "exact", "hutchinson")

# Per-measure defaults of ``eps`` (``None`` in the options means "the measure's own default").
RANDOM_MAX_EPS = 0.01  # the seed documents' reference
KESKAR_EPS = 1e-3  # Keskar et al. 2017 (their tables use 1e-3 and 5e-4)


@dataclass
class MeasureOptions:
    """Settings of the sharpness measures (each measure reads the fields it needs).

    Attributes:
        rho: radius of ``worst`` and standard deviation scale of ``average`` (in units of ``|w|``
            when ``adaptive``).
        perturb_norm: ``'l2'`` or ``'linf'``, the norm of the ``worst`` constraint ``||delta / c||_p <= rho``.
        adaptive: ``c = |w|`` (Kwon et al. 2021) instead of ``c = 1`` for ``worst`` and ``average``.
        m: batch size of m-sharpness for ``worst`` (``None``: the whole sample as one batch).
        steps: ascent iterations of ``worst`` and ``keskar`` (Andriushchenko et al. 2023 use 20).
        restarts: random starts of the ascent per batch (the best is kept).
        mc_samples: Monte Carlo draws: antithetic pairs of ``average``, noise draws per bisection
            step of ``pac-bayes``.
        random_max_samples: Gaussian perturbations of ``random-max`` (10 in the reference).
        eps: ``random-max`` scale (default 0.01) or ``keskar`` box size (default 1e-3); ``None``
            for each measure's default.
        pac_bayes_target: allowed change of the training error of ``pac-bayes`` (0.1 in Jiang et al.).
        pac_bayes_eps: the floor ``eps`` of the magnitude-aware variance ``sigma^2 w_i^2 + eps^2``.
        pac_bayes_magnitude: use the magnitude-aware variance instead of ``sigma^2``.
        bisection_steps: bisection iterations of ``pac-bayes``.
        fisher_rao_depth: multiply Fisher-Rao by ``(depth + 1)^2`` (Liang et al. 2019); ``None``: off.
        layer: the linear layer of ``relative-flatness``: the name of an ``nn.Linear`` or Hugging Face
            ``Conv1D`` module (or its ``.weight`` parameter); a head tied to an embedding counts.
        relative_flatness_method: ``'exact'``, ``'hutchinson'`` or ``'auto'`` (exact when it needs at
            most ``relative_flatness_max_exact`` Hessian-vector products).
        relative_flatness_max_exact: HVP budget of the exact path under ``'auto'``.
        hutchinson_probes: probes of the Hutchinson path of ``relative-flatness``.
        k: top-k eigenvectors of ``overlap``.
        lanczos_tol: residual tolerance of the Lanczos run behind ``overlap``.
        seed: seed of every random draw (restarts, Monte Carlo, probes, Lanczos start).
        extra: options of measures whose options are not fields above (a measure added by a registry
            entry), by option name; :func:`~landscape.measures.compute_measures` refuses a name that no
            registered measure reads.
    """

    rho: float = 0.05
    perturb_norm: str = "l2"
    adaptive: bool = False
    m: int | None = None
    steps: int = 20
    restarts: int = 1
    mc_samples: int = 64
    random_max_samples: int = 10
    eps: float | None = None
    pac_bayes_target: float = 0.1
    pac_bayes_eps: float = 1e-3
    pac_bayes_magnitude: bool = False
    bisection_steps: int = 20
    fisher_rao_depth: int | None = None
    layer: str | None = None
    relative_flatness_method: str = "auto"
    relative_flatness_max_exact: int = 4096
    hutchinson_probes: int = 64
    k: int = 5
    lanczos_tol: float = 1e-6
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad field, its value and the valid range."""
        check_positive("rho", self.rho)
        check_choice("perturb_norm", self.perturb_norm, PERTURB_NORMS)
        check_choice("relative_flatness_method", self.relative_flatness_method, RELATIVE_FLATNESS_METHODS)
        for name in ("steps", "restarts", "mc_samples", "random_max_samples", "bisection_steps", "k"):
            _check_count(name, getattr(self, name))
        _check_count("hutchinson_probes", self.hutchinson_probes, least=2)
        _check_count("relative_flatness_max_exact", self.relative_flatness_max_exact)
        if self.m is not None:
            _check_count("m", self.m)
        if self.fisher_rao_depth is not None:
            _check_count("fisher_rao_depth", self.fisher_rao_depth)
        if self.eps is not None:
            check_positive("eps", self.eps)
        check_positive("pac_bayes_eps", self.pac_bayes_eps, allow_zero=True)
        check_positive("lanczos_tol", self.lanczos_tol)
        if not 0 < self.pac_bayes_target < 1:
            raise ConfigError(f"pac_bayes_target={self.pac_bayes_target!r} must be in (0, 1)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} must be an integer >= 0")
        if not isinstance(self.extra, dict):
            raise ConfigError(f"extra={self.extra!r} must be a dict of option name -> value")
        shadowed = sorted(set(self.extra) & FIELD_NAMES)
        if shadowed:
            raise ConfigError(
                f"extra holds {shadowed}, which are fields of MeasureOptions; pass {shadowed[0]}=... itself"
            )

    def get(self, name: str, default: Any = None) -> Any:
        """The option ``name``: a field's value, else its value in :attr:`extra`, else ``default``."""
        if name in FIELD_NAMES:
            return getattr(self, name)
        return self.extra.get(name, default)

    def to_dict(self) -> dict[str, Any]:
        """Every field by name; ``extra`` only when it holds something, so the dictionary of the
        fields alone (what stored results hold) is the same as before ``extra`` existed."""
        d = asdict(self)
        if not d["extra"]:
            del d["extra"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MeasureOptions:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown measure options {unknown}; valid: {sorted(known)}")
        return cls(**d)


FIELD_NAMES = frozenset(f.name for f in fields(MeasureOptions)) - {"extra"}


def _check_count(name: str, value: object, *, least: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{name}={value!r} must be an integer >= {least}")
