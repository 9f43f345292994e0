"""Worst-case sharpness reports how far its restarts disagree and warns when the best is unconfirmed.

On ``L(w) = 1/2 w^T A w`` away from its minimum, ``L(w + delta) - L(w) = b^T delta + 1/2 delta^T A delta``
with ``b = A w``; its maximum over ``||delta|| <= rho`` is the trust-region solution
``delta = (mu I - A)^-1 b`` with ``mu > lambda_max`` solving ``||delta(mu)|| = rho`` (the secular
equation, solved here by bisection in float64). Curvature dominates (``|b| << rho lambda``): the
ascent has a local maximum near each eigenvector, and a short ascent from one start can stop in a
lower one.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from measure_helpers import quadratic_objective, spd

from landscape.errors import RestartSpreadWarning
from landscape.measures import MeasureOptions, worst_sharpness
from landscape.measures.worst import RESTART_SPREAD_WARNING, restart_values

D = 6
RHO = 1.0


def trust_region_maximum(A: torch.Tensor, b: torch.Tensor, rho: float) -> float:
    """``max_{||delta|| <= rho} b^T delta + 1/2 delta^T A delta`` for symmetric ``A`` (float64)."""
    lam, U = torch.linalg.eigh(A)
    c = U.T @ b
    lo, hi = float(lam.max()), float(lam.max()) + float(c.norm()) / rho + 1.0
    for _ in range(200):  # ||delta(mu)|| decreases from infinity to 0 on (lambda_max, inf)
        mu = (lo + hi) / 2
        if float((c / (mu - lam)).norm()) > rho:
            lo = mu
        else:
            hi = mu
    delta = U @ (c / (mu - lam))
    return float(b @ delta + 0.5 * delta @ A @ delta)


def _case(seed: int) -> tuple[object, float]:
    A = spd(D, seed)
    w = 0.05 * torch.randn(D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return quadratic_objective(A, torch.zeros(D, dtype=torch.float64), w), trust_region_maximum(A, A @ w, RHO)


def _run(obj: object, steps: int, restarts: int) -> tuple[object, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = worst_sharpness(obj, MeasureOptions(rho=RHO, steps=steps, restarts=restarts, seed=0))
    return res, [w for w in caught if issubclass(w.category, RestartSpreadWarning)]


def test_trust_region_reference_is_the_maximum():
    # the reference against a dense sample of the sphere (the maximum of a convex function is on it)
    A = spd(D, 4)
    b = A @ (0.05 * torch.randn(D, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    u = torch.randn(200_000, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    u = RHO * u / u.norm(dim=1, keepdim=True)
    sampled = float((u @ b + 0.5 * ((u @ A) * u).sum(1)).max())
    exact = trust_region_maximum(A, b, RHO)
    assert sampled <= exact + 1e-12
    assert sampled == pytest.approx(exact, rel=1e-2)


def test_a_large_budget_is_exact_and_agrees():
    obj, exact = _case(4)
    res, caught = _run(obj, steps=100, restarts=8)
    assert res.value == pytest.approx(exact, rel=1e-10)
    assert len(res.details["per_restart"]) == 8
    assert max(res.details["per_restart"]) == pytest.approx(res.value, rel=1e-15)
    assert res.details["runner_up_gap"] <= RESTART_SPREAD_WARNING
    assert caught == []


def test_the_default_budget_falls_short_and_restarts_that_disagree_warn():
    obj, exact = _case(4)
    one, caught = _run(obj, steps=20, restarts=1)
    assert one.value < 0.9 * exact  # one start ends in a lower local maximum
    assert one.details["per_restart"] == [pytest.approx(one.value)]
    assert one.details["restart_spread"] == 0.0 and caught == []  # nothing to compare with one restart
    seen = []
    for seed in range(6):  # some case where two short ascents end apart
        obj, exact = _case(seed)
        res, caught = _run(obj, steps=20, restarts=2)
        values = res.details["per_restart"]
        assert len(values) == 2 and max(values) == pytest.approx(res.value, rel=1e-15)
        spread = (max(values) - min(values)) / max(values)
        assert res.details["restart_spread"] == pytest.approx(spread, rel=1e-12, abs=1e-15)
        assert res.details["runner_up_gap"] == pytest.approx(spread, rel=1e-12, abs=1e-15)  # two restarts
        assert (len(caught) == 1) == (spread > RESTART_SPREAD_WARNING)
        if caught:
            message = str(caught[0].message)
            assert "\n" not in message and "raise steps=20 first, then the number of restarts (2)" in message
            seen.append(seed)
    assert seen, "no case warned"


def test_restart_values_averages_each_restart_over_the_batches():
    per_restart, spread, gap = restart_values([[1.0, 2.0, 4.0], [3.0, 2.0, 4.0]])
    assert per_restart == [2.0, 2.0, 4.0]
    assert spread == pytest.approx(0.5) and gap == pytest.approx(0.5)
    assert restart_values([[0.0, 0.0]]) == ([0.0, 0.0], 0.0, 0.0)
    assert restart_values([]) == ([], 0.0, 0.0)


def test_the_cli_prints_the_warning_and_help_says_when_to_raise_the_budget(tmp_path):
    from click.testing import CliRunner

    from landscape.cli.main import cli

    run = tmp_path / "r"
    args = ["--model", "mlp", "--samples", "64", "--batch-size", "64", "--epochs", "1", "--lr", "0.05", "-q"]
    assert CliRunner().invoke(cli, ["train", *args, "-o", str(run)]).exit_code == 0
    base = ["sharpness", str(run / "final.pt"), "--samples", "64", "--top-k", "1", "--measure", "worst"]
    r = CliRunner().invoke(
        cli, [*base, "--restarts", "2", "--steps", "1", "--rho", "2", "-q", "-o", str(tmp_path / "s")]
    )
    assert r.exit_code == 0, r.output
    warned = [ln for ln in r.output.splitlines() if ln.startswith("warning: worst-case sharpness")]
    assert len(warned) == 1 and "restarts" in warned[0]
    import json

    details = json.loads((tmp_path / "s" / "sharpness.json").read_text())["measures"]["worst"]["details"]
    assert len(details["per_restart"]) == 2 and details["runner_up_gap"] > RESTART_SPREAD_WARNING
    help_text = " ".join(CliRunner().invoke(cli, ["sharpness", "--help"]).output.split())
    assert "when the restarts disagree" in help_text and "differ by more than 1%" in help_text
