"""Direction/magnitude decompositions and step statistics against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from landscape.errors import ConfigError
from landscape.optim.decompose import (
    combine_direction_magnitude,
    magnitude_statistics,
    sam_direction_update,
    sam_magnitude_update,
    summarize_statistics,
)

A = [torch.tensor([3.0, -4.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64)]
B = [torch.tensor([1.0, 0.5], dtype=torch.float64), torch.tensor([-2.0], dtype=torch.float64)]


def test_statistics_by_hand():
    s = magnitude_statistics(A, B)
    # ||A|| = 5, ||B|| = sqrt(1 + 0.25 + 4) = sqrt(5.25); <A, B> = 3 - 2 = 1
    assert s["grad_norm_ratio"] == pytest.approx(5 / math.sqrt(5.25), rel=1e-14)
    assert s["cosine"] == pytest.approx(1 / (5 * math.sqrt(5.25)), rel=1e-14)
    assert s["frac_larger"] == pytest.approx(2 / 3)


def test_statistics_zero_denominator_is_nan():
    s = magnitude_statistics(A, [torch.zeros(2, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    assert (
        math.isnan(s["grad_norm_ratio"])
        and math.isnan(s["cosine"])
        and s["frac_larger"] == pytest.approx(2 / 3)
    )


@pytest.mark.parametrize(
    ("decomposition", "expected"),
    [
        ("global", [[3.0 / 5 * math.sqrt(5.25), -4.0 / 5 * math.sqrt(5.25)], [0.0]]),
        ("elementwise", [[1.0, -0.5], [0.0]]),
    ],
    ids=["global", "elementwise"],
)
def test_combine_by_hand(decomposition, expected):
    out = combine_direction_magnitude(A, B, decomposition=decomposition)
    for o, e in zip(out, expected):
        torch.testing.assert_close(o, torch.tensor(e, dtype=torch.float64))


@pytest.mark.parametrize("decomposition", ["global", "elementwise"])
def test_sam_direction_and_magnitude_are_the_two_orders(decomposition):
    g = torch.Generator().manual_seed(0)
    gs, gg = (
        torch.randn(7, generator=g, dtype=torch.float64),
        torch.randn(7, generator=g, dtype=torch.float64),
    )
    d = sam_direction_update(gs, gg, decomposition=decomposition)[0]
    m = sam_magnitude_update(gs, gg, decomposition=decomposition)[0]
    if decomposition == "global":
        assert float(d.norm()) == pytest.approx(float(gg.norm()), rel=1e-14)
        assert float(d @ gs / (d.norm() * gs.norm())) == pytest.approx(1.0, rel=1e-14)
        assert float(m.norm()) == pytest.approx(float(gs.norm()), rel=1e-14)
    else:
        assert torch.equal(d.abs(), gg.abs()) and torch.equal(torch.sign(d), torch.sign(gs))
        assert torch.equal(m.abs(), gs.abs()) and torch.equal(torch.sign(m), torch.sign(gg))


def test_bad_inputs():
    with pytest.raises(ConfigError, match="decomposition='norm'"):
        combine_direction_magnitude(A, B, decomposition="norm")
    with pytest.raises(ConfigError, match="same structure"):
        magnitude_statistics(A, B[:1])


def test_summarize_statistics():
    recs = [
        {"grad_norm_ratio": 1.0, "cosine": 0.5, "frac_larger": 0.2},
        {"grad_norm_ratio": 3.0, "cosine": math.nan},
    ]
    s = summarize_statistics(recs)
    assert s["grad_norm_ratio"] == {"mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0, "count": 2.0}
    assert s["cosine"]["count"] == 1.0 and s["frac_larger"]["mean"] == pytest.approx(0.2)
