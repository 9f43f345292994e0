"""Per-layer curvature, the per-batch protocol, sharpness() and the PyHessian backend, against dense
float64 Hessians."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape.analysis import SharpnessResult, sharpness
from landscape.errors import ConfigError
from landscape.hessian import per_batch_protocol, per_layer, power_iteration
from landscape.hessian.operator import HessianOperator
from landscape.hessian.testing import dense_hessian, digits, make_cnn, make_mlp
from landscape.objective.core import Objective


def _blocks(obj: Objective, H: torch.Tensor, groups: list[list[int]]) -> list[torch.Tensor]:
    offs = [0, *np.cumsum([p.numel() for p in obj.params]).tolist()]
    out = []
    for idx in groups:
        rows = torch.cat([torch.arange(offs[i], offs[i + 1]) for i in idx])
        out.append(H[rows][:, rows])
    return out


@pytest.mark.parametrize("group_by", ["param", "module"], ids=["param", "module"])
def test_per_layer_matches_dense_blocks(cnn_problem, group_by: str) -> None:
    obj, H = cnn_problem
    res = per_layer(obj, group_by=group_by, tol=1e-10, trace_matvecs=200, seed=0)
    names = obj.param_names
    groups = [[names.index(p) for p in e.params] for e in res.layers]
    assert sorted(i for g in groups for i in g) == list(range(len(names)))
    if group_by == "module":
        assert len(res.layers) < len(names)
    for e, B in zip(res.layers, _blocks(obj, H, groups)):
        assert e.num_params == B.shape[0]
        assert e.top_eigenvalue == pytest.approx(float(torch.linalg.eigvalsh(B)[-1]), rel=1e-8, abs=1e-10)
        exact = float(torch.trace(B))
        assert abs(e.trace - exact) <= 5 * e.trace_stderr + 1e-9


def test_per_batch_protocol_matches_dense_batch_hessians() -> None:
    x, y = digits(50)
    obj = Objective(make_mlp(), (x, y), batch_size=20, dtype=torch.float64)  # 20, 20, 10
    res = per_batch_protocol(obj, 2, k=3, which="LM", tol=1e-10)
    rows = []
    for i in range(2):
        one = Objective(make_mlp(), (x[20 * i : 20 * (i + 1)], y[20 * i : 20 * (i + 1)]), dtype=torch.float64)
        ev = torch.linalg.eigvalsh(dense_hessian(one)).numpy()
        rows.append(np.sort(ev[np.argsort(-np.abs(ev))][:3])[::-1])
    ref = np.vstack(rows)
    np.testing.assert_allclose(res.eigenvalues, ref, rtol=1e-8)
    assert res.max == pytest.approx(ref.max())
    assert res.mean_positive == pytest.approx(ref[ref > 0].mean())
    assert res.percent_negative == pytest.approx(100 * (ref < 0).mean())
    assert res.batches == 2 and res.batch_size == 20


def test_sharpness_everything_and_roundtrip(mlp_problem, tmp_path) -> None:
    obj, H = mlp_problem
    res = sharpness(
        obj,
        top_k=3,
        which="SA",
        tol=1e-10,
        trace_rtol=0.05,
        density=True,
        density_runs=2,
        density_steps=10,
        per_layer_by="param",
        per_batch=1,
        seed=0,
    )
    ev = torch.linalg.eigvalsh(H).numpy()
    np.testing.assert_allclose(res.eigenvalues, ev[:3], rtol=1e-8)  # SA: the most negative first
    assert res.trace is not None and res.trace.converged
    assert abs(res.trace.estimate - float(torch.trace(H))) < 5 * res.trace.stderr
    assert res.density is not None and res.per_layer is not None and res.per_batch is not None
    parts = (
        res.eigen_matvecs
        + res.trace.matvecs
        + res.density.matvecs
        + res.per_layer.matvecs
        + res.per_batch.matvecs
    )
    assert res.matvecs == parts
    assert (res.samples, res.dtype, res.bn_mode) == (100, "float64", "eval")
    back = SharpnessResult.load(res.save(tmp_path / "s.json"))
    np.testing.assert_array_equal(back.eigenvalues, res.eigenvalues)
    assert back.trace == res.trace and back.per_layer == res.per_layer
    np.testing.assert_array_equal(back.per_batch.eigenvalues, res.per_batch.eigenvalues)


def test_pyhessian_backend_matches_dense_and_power_iteration(mlp_problem) -> None:
    pytest.importorskip("pyhessian")
    obj, H = mlp_problem
    res = sharpness(
        obj,
        top_k=2,
        tol=1e-9,
        max_matvecs=2000,
        with_trace=True,
        trace_method="hutchinson",
        trace_matvecs=20,
        backend="pyhessian",
        density=True,
        density_runs=1,
        density_steps=5,
    )
    ev = torch.linalg.eigvalsh(H).numpy()
    top_lm = ev[np.argsort(-np.abs(ev))][:2]
    np.testing.assert_allclose(np.sort(res.eigenvalues), np.sort(top_lm), rtol=1e-5)
    assert res.backend == "pyhessian" and res.eigen_matvecs > 2
    assert res.trace is not None and res.trace.matvecs == 20
    assert abs(res.trace.estimate - float(torch.trace(H))) < 5 * res.trace.stderr
    assert any("torch.eig" in n for n in res.notes)
    assert all(p.grad is None for p in obj.params)  # PyHessian's graph was released
    # our power iteration follows the same rule: same answer to the same tolerance
    ours = power_iteration(HessianOperator(obj), 2, max_iter=2000, tol=1e-9)
    np.testing.assert_allclose(np.sort(ours.eigenvalues), np.sort(res.eigenvalues), rtol=1e-5)


def test_pyhessian_backend_single_batch_counts_products() -> None:
    pytest.importorskip("pyhessian")
    obj = Objective(make_cnn(), digits(30), dtype=torch.float64)
    res = sharpness(obj, top_k=1, tol=1e-3, backend="pyhessian", per_batch=1)
    ref = sharpness(obj, top_k=1, which="LM", tol=1e-10)
    assert res.eigenvalues[0] == pytest.approx(ref.eigenvalues[0], rel=1e-2)
    assert 2 <= res.eigen_matvecs <= 100
    assert res.per_batch is not None and res.per_batch.eigenvalues.shape == (1, 5)


@pytest.mark.parametrize("which", ["LA", "SA", "LM"])
def test_eigenvalues_are_listed_most_wanted_first(mlp_problem, which: str) -> None:
    obj, H = mlp_problem
    ev = torch.linalg.eigvalsh(H).numpy()  # ascending
    wanted = {"LA": ev[::-1], "SA": ev, "LM": ev[np.argsort(-np.abs(ev), kind="stable")]}[which][:3]
    res = sharpness(obj, top_k=3, which=which, tol=1e-10, seed=0)
    np.testing.assert_allclose(res.eigenvalues, wanted, rtol=1e-8)
    assert res.which == which and len(res.residuals) == 3 and all(res.converged)
    # the residuals travel with their eigenvalues
    assert np.all(res.residuals <= 1e-10 * np.abs(res.eigenvalues) + 1e-12)
    assert res.lambda_max == pytest.approx(float(max(wanted)), rel=1e-8)


def test_pyhessian_backend_lists_by_magnitude(mlp_problem) -> None:
    pytest.importorskip("pyhessian")
    obj, H = mlp_problem
    res = sharpness(obj, top_k=2, tol=1e-9, max_matvecs=2000, backend="pyhessian")
    assert res.which == "LM"
    assert list(np.abs(res.eigenvalues)) == sorted(np.abs(res.eigenvalues), reverse=True)


def test_non_finite_weights_are_refused_naming_the_tensor() -> None:
    model = make_mlp()
    with torch.no_grad():
        model.net[3].weight[1, 0] = float("inf")
    obj = Objective(model, digits(20), dtype=torch.float64)
    with pytest.raises(ConfigError, match="tensor 'net.3.weight' holds 1 of 80 values that are NaN or Inf"):
        sharpness(obj, top_k=1)


def test_non_finite_loss_is_refused() -> None:
    x, y = digits(20)
    x = x.clone()
    x[3, 0] = float("nan")
    obj = Objective(make_mlp(), (x, y), dtype=torch.float64)
    with pytest.raises(ConfigError, match="the loss at these weights is nan"):
        sharpness(obj, top_k=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"which": "XX"}, "which='XX'"),
        ({"backend": "hessian"}, "backend='hessian'"),
        ({"trace_method": "exact"}, "trace_method='exact'"),
        ({"per_layer_by": "block"}, "per_layer='block'"),
        ({"top_k": 0}, "top_k=0"),
        ({"top_k": 10_000}, r"top_k=10000 is more than the \d+ parameters"),
        ({"top_k": 5, "max_matvecs": 3}, "max_matvecs=3 must be at least top_k=5"),
        ({"with_trace": True, "trace_matvecs": 2}, "trace_matvecs=2 is too small for trace_method='hutch"),
        (
            {"trace_method": "xtrace", "trace_rtol": 0.1},
            "trace_rtol is not available with trace_method='xtrace'",
        ),
        ({"density": True, "density_runs": 0}, "density_runs=0 must be > 0"),
        ({"density": True, "density_steps": 0}, "density_steps=0 must be > 0"),
        ({"per_batch": 0}, "per_batch=0 must be > 0"),
        ({"which": "SA", "backend": "pyhessian"}, "which='SA' is not available with backend='pyhessian'"),
    ],
    ids=[
        "which",
        "backend",
        "trace",
        "per-layer",
        "k",
        "k-too-large",
        "budget",
        "trace-matvecs",
        "xtrace-rtol",
        "density-runs",
        "density-steps",
        "per-batch",
        "pyhessian-SA",
    ],
)
def test_sharpness_bad_arguments(mlp_problem, kwargs: dict, match: str) -> None:
    obj, _ = mlp_problem
    with pytest.raises(ConfigError, match=match):
        sharpness(obj, **kwargs)
