"""States mode: batch-norm running variances move geometrically, so they stay positive past both ends.

Closed forms: ``v(alpha) = v_1^(1 - alpha) v_2^alpha`` and ``m(alpha) = m_1 + alpha (m_2 - m_1)``;
``alpha = 0`` is the first checkpoint bit for bit, ``alpha = 1`` the second to 1e-12 (float64).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from landscape.errors import ConfigError
from landscape.surface import (
    PointEvaluator,
    compute_surface,
    interpolation_direction,
    is_variance,
    plane_directions,
    random_directions,
    snapshot,
)


def _set_stats(obj, mean: float, var: float, tracked: int) -> None:
    with torch.no_grad():
        for i, m in enumerate(m for m in obj.model.modules() if isinstance(m, nn.BatchNorm2d)):
            m.running_mean.fill_(mean + 0.1 * i)
            m.running_var.copy_(var * torch.linspace(1.0, 1.5, m.num_features, dtype=m.running_var.dtype))
            m.num_batches_tracked.fill_(tracked)


def _buffers(obj) -> dict[str, torch.Tensor]:
    return {n: b.detach().clone() for n, b in obj.model.named_buffers()}


@pytest.fixture
def pair(make_objective):
    """Two CNNs whose variances shrink 1.0 -> 0.027: the straight line is -0.459 at alpha = 1.5."""
    a, b = make_objective("cnn", seed=0), make_objective("cnn", seed=1)
    _set_stats(a, 0.2, 1.0, 7)
    _set_stats(b, -0.3, 0.0273, 11)
    return a, b


def test_variances_follow_the_geometric_path(pair):
    a, b = pair
    va, vb = _buffers(a), _buffers(b)
    d = interpolation_direction(snapshot(a, "states"), snapshot(b, "states"))
    names = [n for n in d if is_variance(n)]
    assert names
    # the straight line would have gone negative here (the bug): the test would fail on it
    assert any(bool((va[n] + 1.5 * (vb[n] - va[n]) < 0).any()) for n in names)
    with PointEvaluator(a, [d]) as ev:
        for alpha in (-0.5, 0.25, 1.5):
            ev.set_point([alpha])
            live = dict(a.model.named_buffers())
            for n in names:
                expected = va[n] ** (1 - alpha) * vb[n] ** alpha
                torch.testing.assert_close(live[n], expected, rtol=1e-12, atol=0)
                assert bool((live[n] > 0).all())
            mean = next(n for n in d if n.endswith("running_mean"))
            torch.testing.assert_close(
                live[mean], va[mean] + alpha * (vb[mean] - va[mean]), rtol=1e-12, atol=1e-12
            )


def test_endpoints_are_the_checkpoints_buffers(pair):
    a, b = pair
    va, vb = _buffers(a), _buffers(b)
    pa, pb = snapshot(a), snapshot(b)
    d = interpolation_direction(snapshot(a, "states"), snapshot(b, "states"))
    with PointEvaluator(a, [d]) as ev:
        ev.set_point([0.0])
        for n, t in a.model.named_buffers():
            assert torch.equal(t, va[n]), n  # bit for bit
        ev.set_point([1.0])
        for n, t in a.model.named_buffers():
            if n.endswith("num_batches_tracked"):  # a step counter, not a statistic: it stays
                assert torch.equal(t, va[n])
            else:
                torch.testing.assert_close(t, vb[n], rtol=1e-12, atol=1e-15)
        for n, p in zip(a.param_names, a.params):
            torch.testing.assert_close(p, pb[n], rtol=1e-12, atol=1e-15)
    for n, p in zip(a.param_names, a.params):
        assert torch.equal(p, pa[n])
    for n, t in a.model.named_buffers():
        assert torch.equal(t, va[n])


def test_float32_alpha_one_is_the_second_checkpoint_to_rounding(make_objective):
    a, b = make_objective("cnn", seed=0), make_objective("cnn", seed=1)
    a.model.float()
    b.model.float()
    _set_stats(a, 0.2, 1.0, 0)
    _set_stats(b, -0.3, 0.0273, 0)
    vb = _buffers(b)
    d = interpolation_direction(snapshot(a, "states"), snapshot(b, "states"))
    assert all(d[n].dtype == torch.float64 for n in d if is_variance(n))  # the log-ratio keeps float64
    with PointEvaluator(a, [d]) as ev:
        ev.set_point([1.0])
        for n, t in a.model.named_buffers():
            if is_variance(n):
                torch.testing.assert_close(t, vb[n], rtol=2**-23, atol=0)


def test_no_nan_past_either_end(pair):
    """The README example's grid: alpha in -0.5..1.5 gives finite losses (NaN before the fix)."""
    a, b = pair
    d = interpolation_direction(snapshot(a, "states"), snapshot(b, "states"))
    # one point per pass: the centre is then bit for bit the objective's own evaluation
    s = compute_surface(a, [d], np.array([-0.5, 0.0, 1.0, 1.5]), points_per_pass=1, quiet=True)
    assert np.isfinite(s.loss).all() and np.isfinite(s.accuracy).all() and s.num_nonfinite == 0
    assert s.loss[1] == a.evaluate().loss
    np.testing.assert_allclose(s.loss[2], b.evaluate().loss, rtol=1e-10)


def test_plane_corners_are_the_three_checkpoints(pair, make_objective):
    a, b = pair
    c = make_objective("cnn", seed=2)
    _set_stats(c, 0.5, 3.0, 2)
    vb, vc = _buffers(b), _buffers(c)
    states = [snapshot(o, "states") for o in (a, b, c)]
    dirs = plane_directions(*states)
    with PointEvaluator(a, dirs) as ev:
        for coords, ref in (((1.0, 0.0), vb), ((0.0, 1.0), vc)):
            ev.set_point(coords)
            for n, t in a.model.named_buffers():
                if not n.endswith("num_batches_tracked"):
                    torch.testing.assert_close(t, ref[n], rtol=1e-12, atol=1e-15)
        ev.set_point((-0.5, 1.5))
        assert all(bool((t > 0).all()) for n, t in a.model.named_buffers() if is_variance(n))


def test_random_states_direction_scales_variances_by_e_to_the_alpha(make_objective):
    obj = make_objective("cnn")
    v0 = _buffers(obj)
    (d,) = random_directions(obj, 1, seed=3, mode="states", ignore="none")
    with PointEvaluator(obj, [d]) as ev:
        ev.set_point([-2.0])
        for n, t in obj.model.named_buffers():
            if is_variance(n):
                torch.testing.assert_close(t, v0[n] * math.exp(-2.0), rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    ("first", "second"),
    [(1.0, 0.0), (0.0, 1.0), (1.0, -1.0), (1.0, float("nan"))],
    ids=["zero-in-second", "zero-in-first", "negative", "nan"],
)
def test_variance_without_a_geometric_path_is_refused(first, second):
    a = {"bn.running_var": torch.tensor([1.0, first], dtype=torch.float64)}
    b = {"bn.running_var": torch.tensor([2.0, second], dtype=torch.float64)}
    with pytest.raises(ConfigError, match=r"running variance 'bn.running_var' has 1 entries.*mode='weights'"):
        interpolation_direction(a, b)


def test_variance_zero_in_both_stays_zero():
    a = {"bn.running_var": torch.tensor([1.0, 0.0], dtype=torch.float64)}
    b = {"bn.running_var": torch.tensor([4.0, 0.0], dtype=torch.float64)}
    d = interpolation_direction(a, b)["bn.running_var"]
    assert d[1] == 0.0 and d[0] == pytest.approx(math.log(4.0), rel=1e-15)
