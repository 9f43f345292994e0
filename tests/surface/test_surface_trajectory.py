"""PCA of a trajectory against a dense SVD, the three-checkpoint plane, trajectory folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape.errors import ConfigError
from landscape.surface import compute_surface, filter_specs, snapshot
from landscape.surface.trajectory import pca_directions, plane_directions, trajectory_files


def _trajectory(T: int, seed: int = 0) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    shapes = {"a.weight": (3, 4), "a.bias": (3,), "b.weight": (2, 3)}
    base = {n: torch.randn(s, generator=g, dtype=torch.float64) for n, s in shapes.items()}
    drift = {n: torch.randn(s, generator=g, dtype=torch.float64) for n, s in shapes.items()}
    points = [
        {
            n: base[n] + (T - t) * 0.3 * drift[n] + 0.1 * torch.randn(s, generator=g, dtype=torch.float64)
            for n, s in shapes.items()
        }
        for t in range(T)
    ]
    return points, base


@pytest.mark.parametrize("ignore", ["biasbn", "none"], ids=["biasbn", "none"])
def test_pca_matches_dense_svd(ignore):
    points, base = _trajectory(6)
    res = pca_directions(points, base, num=2, ignore=ignore)
    keep = [n for n in base if ignore == "none" or base[n].dim() > 1]
    X = np.stack(
        [
            np.concatenate(
                [
                    (p[n] - base[n]).reshape(-1).numpy() if n in keep else np.zeros(base[n].numel())
                    for n in base
                ]
            )
            for p in points
        ]
    )
    Xc = X - X.mean(axis=0)
    _, s, Vt = np.linalg.svd(Xc, full_matrices=False)
    np.testing.assert_allclose(
        res.explained_variance_ratio[: len(s)], s**2 / (s**2).sum(), rtol=1e-10, atol=1e-14
    )
    for k, d in enumerate(res.directions):
        v = np.concatenate([d[n].reshape(-1).numpy() for n in base])
        ref = Vt[k] * np.sign(Vt[k][np.argmax(np.abs(Vt[k]))])
        np.testing.assert_allclose(v, ref, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(res.path[:, k], X @ ref, rtol=1e-9, atol=1e-12)
        for n in base:
            if n not in keep:
                assert not d[n].any()
    assert abs(float(sum((res.directions[0][n] * res.directions[1][n]).sum() for n in base))) < 1e-12


def test_pca_refuses_degenerate_trajectories():
    _, base = _trajectory(3)
    with pytest.raises(ConfigError, match="at least 2"):
        pca_directions([base], base)
    same = [{n: t + 1.0 for n, t in base.items()}] * 3  # one point repeated: no spread at all
    with pytest.raises(ConfigError, match="spans fewer than"):
        pca_directions(same, base, num=1)


def test_plane_puts_the_three_checkpoints_at_the_corners(make_objective):
    objs = [make_objective("mlp", seed=s) for s in range(3)]
    a, b, c = (snapshot(o) for o in objs)
    s = compute_surface(
        objs[0], plane_directions(a, b, c), np.linspace(0, 1, 2), np.linspace(0, 1, 2), quiet=True
    )
    assert s.loss[0, 0] == objs[0].evaluate().loss
    np.testing.assert_allclose(s.loss[1, 0], objs[1].evaluate().loss, rtol=1e-10)
    np.testing.assert_allclose(s.loss[0, 1], objs[2].evaluate().loss, rtol=1e-10)


def test_trajectory_files_natural_order_and_errors(tmp_path):
    for name in ("step_10.pt", "step_2.pt", "step_1.pt", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in trajectory_files(tmp_path)] == ["step_1.pt", "step_2.pt", "step_10.pt"]
    with pytest.raises(ConfigError, match="not a folder"):
        trajectory_files(tmp_path / "missing")
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match="holds 1 checkpoint"):
        trajectory_files(tmp_path / "one")


def test_path_grid_holds_the_path_and_the_centre():
    from landscape.surface.trajectory import path_grid

    path = np.array([[-3.0, 0.5], [-1.0, 2.0], [0.0, 0.0]])
    xs, ys = path_grid(path, 5, 3, margin=0.1)
    np.testing.assert_allclose(xs, np.linspace(-3.3, 0.3, 5))
    np.testing.assert_allclose(ys, np.linspace(-0.2, 2.2, 3))
    flat_x, _ = path_grid(np.zeros((2, 2)), 3, 3)  # a path that never moves: unit padding
    np.testing.assert_allclose(flat_x, [-1.0, 0.0, 1.0])


def test_pca_leaves_out_norm_layer_weights_by_their_module_not_their_shape():
    # LayerNorm((3, 4)) has a 2-D weight: by shape it looks like a filter bank, by module it is a norm
    model2 = torch.nn.Sequential(torch.nn.Linear(12, 12), torch.nn.LayerNorm((3, 4)))
    base = {n: p.detach().double().clone() for n, p in model2.named_parameters()}
    gen = torch.Generator().manual_seed(0)
    points = [
        {n: t + torch.randn(t.shape, generator=gen, dtype=t.dtype) for n, t in base.items()} for _ in range(4)
    ]
    by_module = pca_directions(points, base, num=2, filters=filter_specs(model2))
    by_shape = pca_directions(points, base, num=2)
    for d in by_module.directions:
        assert torch.count_nonzero(d["1.weight"]) == 0 and torch.count_nonzero(d["1.bias"]) == 0
        assert torch.count_nonzero(d["0.weight"]) > 0
    assert any(torch.count_nonzero(d["1.weight"]) > 0 for d in by_shape.directions)
