"""APGD ascent on plain functions: feasibility of every evaluated point and closed-form maxima."""

from __future__ import annotations

import pytest
import torch

from landscape.errors import ConfigError
from landscape.measures.ascent import apgd_ascent, checkpoints, project, random_start


def _norm(u: torch.Tensor, norm: str) -> float:
    return float(torch.linalg.vector_norm(u, ord=2 if norm == "l2" else float("inf")))


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_every_evaluated_point_is_feasible(norm):
    g = torch.Generator().manual_seed(1)
    a = torch.randn(50, generator=g, dtype=torch.float64)
    radius = 0.3
    seen: list[float] = []

    def f(u):  # a linear function pushes every iterate against the boundary
        seen.append(_norm(u, norm))
        return float(a @ u) + float(u @ u), a + 2 * u

    start = 10 * torch.randn(50, generator=g, dtype=torch.float64)  # infeasible on purpose
    res = apgd_ascent(f, start, radius=radius, norm=norm, steps=25)
    assert len(seen) == res.evaluations == 26
    assert max(seen) <= radius * (1 + 1e-12)
    assert _norm(res.u, norm) <= radius * (1 + 1e-12)


@pytest.mark.parametrize(
    "norm, expected",
    [
        ("l2", lambda a, r: r * float(a.norm()) + r**2),
        ("linf", lambda a, r: r * float(a.abs().sum()) + 50 * r**2),
    ],
    ids=["l2", "linf"],
)
def test_reaches_the_closed_form_maximum(norm, expected):
    # f(u) = a.u + ||u||^2: on the l2 ball the max is r ||a|| + r^2 at u = r a/||a||; on the box it is
    # r ||a||_1 + n r^2 at u = r sign(a)
    g = torch.Generator().manual_seed(2)
    a = torch.randn(50, generator=g, dtype=torch.float64)
    r = 0.3
    res = apgd_ascent(
        lambda u: (float(a @ u + u @ u), a + 2 * u),
        torch.zeros(50, dtype=torch.float64),
        radius=r,
        norm=norm,
        steps=20,
    )
    assert res.value == pytest.approx(expected(a, r), rel=1e-9)


def test_projection():
    u = torch.tensor([3.0, 4.0], dtype=torch.float64)
    assert torch.allclose(project(u, 1.0, "l2"), torch.tensor([0.6, 0.8], dtype=torch.float64))
    assert torch.equal(project(u, 1.0, "linf"), torch.tensor([1.0, 1.0], dtype=torch.float64))
    inside = torch.tensor([0.1, -0.2], dtype=torch.float64)
    assert torch.equal(project(inside, 1.0, "l2"), inside)


def test_checkpoints_follow_apgd():
    # p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (Croce & Hein 2020)
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


def test_random_start_is_feasible_and_masked():
    g = torch.Generator().manual_seed(0)
    like = torch.zeros(10, dtype=torch.float64)
    mask = torch.ones(10, dtype=torch.float64)
    mask[:3] = 0
    for norm in ("l2", "linf"):
        u = random_start(10, 0.5, norm, generator=g, like=like, mask=mask)
        assert _norm(u, norm) <= 0.5 * (1 + 1e-12)
        assert torch.all(u[:3] == 0)


def test_stalls_on_a_constant_function():
    res = apgd_ascent(
        lambda u: (1.0, torch.zeros_like(u)),
        torch.ones(4, dtype=torch.float64),
        radius=1.0,
        norm="l2",
        steps=10,
    )
    assert res.stalled and res.best_step == 0


def test_bad_settings():
    f = lambda u: (0.0, u)  # noqa: E731
    z = torch.zeros(2, dtype=torch.float64)
    with pytest.raises(ConfigError, match="perturb_norm='l1'"):
        apgd_ascent(f, z, radius=1.0, norm="l1", steps=3)
    with pytest.raises(ConfigError, match="rho=0"):
        apgd_ascent(f, z, radius=0, norm="l2", steps=3)
