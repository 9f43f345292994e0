"""Statistics across seeds against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from landscape.errors import ConfigError
from landscape.runs.stats import paired_differences, summarize, t_quantile


def test_summary_of_one_to_four_matches_hand_computation():
    # mean 2.5; std sqrt(5/3) = 1.290994; t_{0.975,3} = 3.182446; half = 3.182446 * 1.290994 / 2
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert s.n == 4
    assert s.mean == pytest.approx(2.5, abs=1e-15)
    assert s.std == pytest.approx(math.sqrt(5 / 3), rel=1e-14)
    assert s.std == pytest.approx(1.2910, abs=5e-5)
    assert s.half_width == pytest.approx(2.0543, abs=5e-5)
    assert (s.ci95_low, s.ci95_high) == pytest.approx((2.5 - 2.054260, 2.5 + 2.054260), abs=1e-5)


@pytest.mark.parametrize(
    ("confidence", "dof", "expected"),
    [(0.95, 1, 12.706205), (0.95, 3, 3.182446), (0.95, 10, 2.228139), (0.90, 4, 2.131847)],
    ids=["95-dof1", "95-dof3", "95-dof10", "90-dof4"],
)
def test_t_quantile_matches_tables(confidence, dof, expected):
    assert t_quantile(confidence, dof) == pytest.approx(expected, abs=1e-6)


def test_summary_interval_agrees_with_dense_float64_formula():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=7)
    s = summarize(list(x))
    m, sd = x.mean(), math.sqrt(((x - x.mean()) ** 2).sum() / 6)
    half = t_quantile(0.95, 6) * sd / math.sqrt(7)
    assert (s.mean, s.std, s.ci95_low, s.ci95_high) == pytest.approx((m, sd, m - half, m + half), rel=1e-13)


def test_one_value_has_nan_std_and_interval_and_none_has_nan_mean():
    one = summarize([0.7])
    assert one.n == 1 and one.mean == 0.7
    assert all(math.isnan(v) for v in (one.std, one.ci95_low, one.ci95_high))
    none = summarize([])
    assert none.n == 0 and math.isnan(none.mean)


def test_non_finite_and_missing_values_are_dropped():
    s = summarize([1.0, None, float("nan"), 3.0, float("inf")])
    assert s.n == 2 and s.mean == 2.0 and s.std == pytest.approx(math.sqrt(2))


def test_paired_differences_pair_by_seed():
    # seeds 0..2 shared; differences 0.2, 0.1, 0.3 -> mean 0.2, std 0.1, half = 4.302653 * 0.1 / sqrt(3)
    a = {0: 0.9, 1: 0.8, 2: 1.0, 5: 9.0}
    b = {2: 0.7, 1: 0.7, 0: 0.7, 3: 0.1}
    seeds, s = paired_differences(a, b)
    assert seeds == [0, 1, 2]
    assert s.mean == pytest.approx(0.2, abs=1e-12)
    assert s.std == pytest.approx(0.1, abs=1e-12)
    assert s.half_width == pytest.approx(4.302653 * 0.1 / math.sqrt(3), abs=1e-6)
    # a paired interval is narrower than the unpaired one when the seed effect is shared
    assert s.half_width < summarize(list(a.values())[:3]).half_width


def test_paired_differences_skip_seeds_with_missing_values():
    seeds, s = paired_differences({0: 1.0, 1: float("nan")}, {0: 0.5, 1: 0.5})
    assert seeds == [0] and s.n == 1 and s.mean == 0.5 and math.isnan(s.std)


@pytest.mark.parametrize("bad", [0.0, 1.0, 95.0], ids=["zero", "one", "percent"])
def test_bad_confidence_is_refused_by_name(bad):
    with pytest.raises(ConfigError, match="confidence="):
        summarize([1.0, 2.0], confidence=bad)


T_975_1 = 12.706204736174698  # Student t quantile, 97.5%, 1 degree of freedom (table value)
T_975_3 = 3.182446305284263  # ... 3 degrees of freedom


def test_summary_against_table_quantiles_drops_nan_and_one_value_has_no_interval():
    # moved from the demo's own mean_ci, which was this function under another name
    s = summarize([1.0, 2.0, 3.0, 4.0]).to_dict()
    std = math.sqrt(5.0 / 3.0)  # sum of squares 5 over n - 1 = 3
    half = T_975_3 * std / 2.0
    assert s["n"] == 4
    assert s["mean"] == pytest.approx(2.5, abs=1e-15)
    assert s["std"] == pytest.approx(std, rel=1e-14)
    assert s["ci95_low"] == pytest.approx(2.5 - half, rel=1e-12)
    assert s["ci95_high"] == pytest.approx(2.5 + half, rel=1e-12)
    two = summarize([1.0, 3.0, float("nan")]).to_dict()  # NaN dropped
    assert two["n"] == 2 and two["ci95_high"] == pytest.approx(2.0 + T_975_1 * math.sqrt(2) / math.sqrt(2))
    one = summarize([5.0]).to_dict()
    assert one["mean"] == 5.0 and math.isnan(one["std"]) and math.isnan(one["ci95_low"])
