"""Statistics across seeds: mean, sample standard deviation, Student-t intervals, paired differences.

A claim such as "SAM-magnitude is flatter than SAM-direction" rests on several seeds per method. For
``n`` values ``x_1..x_n`` (one per seed) this module reports

* the mean ``m = sum(x_i) / n``,
* the sample standard deviation ``s = sqrt(sum((x_i - m)^2) / (n - 1))`` (``ddof=1``),
* the two-sided ``confidence`` (default 95%) Student-t interval for the population mean
  ``m +- t_{(1 + confidence)/2, n-1} * s / sqrt(n)`` (Student 1908; exact for normal data),

and compares two methods by the paired differences ``d_i = a_i - b_i`` over the seeds both have
(same seed: same initialization and data order), whose t-interval is usually much narrower than
the two unpaired intervals because the seed's own effect cancels.

With ``n = 1`` the standard deviation and interval are undefined and reported as NaN; with ``n = 0``
the mean is NaN too. Non-finite values (a metric a run did not record) are dropped before counting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from landscape.errors import ConfigError

CONFIDENCE = 0.95
#: The suffixes of the columns a :class:`Summary` fills (``<metric>_mean`` and so on).
SUMMARY_FIELDS = ("mean", "std", "ci95_low", "ci95_high")


@dataclass(frozen=True)
class Summary:
    """``n`` finite values: their mean, sample std (ddof 1) and Student-t interval for the mean."""

    n: int
    mean: float
    std: float
    ci95_low: float
    ci95_high: float

    @property
    def half_width(self) -> float:
        """Half the width of the interval, ``t * s / sqrt(n)`` (NaN below two values)."""
        return (self.ci95_high - self.ci95_low) / 2

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Summary:
        """Read :meth:`to_dict` of this version or another: unknown keys (a statistic added since)
        are dropped, a missing count is 0 and a missing or ``null`` statistic is NaN."""

        def value(name: str) -> float:
            v = d.get(name)
            return float("nan") if v is None else float(v)

        return cls(n=int(d.get("n") or 0), **{f.name: value(f.name) for f in fields(cls) if f.name != "n"})


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence={confidence!r} must be in (0, 1), e.g. 0.95")


def _finite(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray(
        [float(v) for v in values if v is not None and math.isfinite(float(v))], dtype=np.float64
    )


def t_quantile(confidence: float, dof: int) -> float:
    """``t_{(1 + confidence)/2, dof}``: the two-sided Student-t critical value (``scipy.stats.t``)."""
    from scipy import stats

    _check_confidence(confidence)
    return float(stats.t.ppf(0.5 + confidence / 2, dof))


def summarize(values: Sequence[float | None], *, confidence: float = CONFIDENCE) -> Summary:
    """Mean, sample std and the Student-t interval of the finite ``values``.

    Args:
        values: one number per seed; ``None`` and non-finite values are dropped.
        confidence: coverage of the two-sided interval (the fields keep the name ``ci95_*``).

    Returns:
        :class:`Summary`; ``std`` and the interval are NaN for fewer than two values, the mean is
        NaN for none.

    Raises:
        ConfigError: ``confidence`` outside (0, 1).
    """
    _check_confidence(confidence)
    v = _finite(values)
    n = len(v)
    nan = float("nan")
    if n == 0:
        return Summary(0, nan, nan, nan, nan)
    mean = float(v.mean())
    if n == 1:
        return Summary(1, mean, nan, nan, nan)
    std = float(v.std(ddof=1))
    half = t_quantile(confidence, n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def paired_differences(
    a: Mapping[int, float | None], b: Mapping[int, float | None], *, confidence: float = CONFIDENCE
) -> tuple[list[int], Summary]:
    """``a[s] - b[s]`` over the seeds ``s`` both have a finite value for, and their summary.

    Args:
        a: value per seed of the first group.
        b: value per seed of the second (the baseline).
        confidence: coverage of the interval.

    Returns:
        ``(seeds, summary)``: the seeds paired (sorted) and the :class:`Summary` of the differences.
    """

    def ok(x: float | None) -> bool:
        return x is not None and math.isfinite(float(x))

    seeds = sorted(s for s in set(a) & set(b) if ok(a[s]) and ok(b[s]))
    diffs = [float(a[s]) - float(b[s]) for s in seeds]  # type: ignore[arg-type]
    return seeds, summarize(diffs, confidence=confidence)
