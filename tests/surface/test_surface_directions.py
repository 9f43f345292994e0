"""Random normalized directions: per-filter norms, orthogonality, seeds, states mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape import Objective
from landscape.errors import ConfigError
from landscape.surface import (
    direction_dot,
    direction_norm,
    interpolation_direction,
    normalize_direction,
    random_directions,
    snapshot,
)
from landscape.surface.filters import FilterSpec, filter_rows, filter_specs, from_filter_rows


def _group_norms(t: torch.Tensor, norm: str) -> torch.Tensor:
    if norm == "filter":
        return t.reshape(t.shape[0], -1).norm(dim=1)
    return t.norm().reshape(1)


@pytest.mark.parametrize("model", ["mlp", "cnn"], ids=["mlp", "cnn"])
@pytest.mark.parametrize("norm", ["filter", "layer"], ids=["filter", "layer"])
@pytest.mark.parametrize("num", [1, 2], ids=["1d", "2d"])
def test_group_norms_equal_the_weights(make_objective, model, norm, num):
    obj = make_objective(model)
    weights = snapshot(obj)
    dirs = random_directions(obj, num, seed=3, norm=norm)
    assert len(dirs) == num
    for d in dirs:
        for name, w in weights.items():
            if w.dim() > 1:
                torch.testing.assert_close(
                    _group_norms(d[name], norm), _group_norms(w, norm), rtol=1e-12, atol=0
                )
            else:
                assert not d[name].any(), f"1-D tensor {name} is not zeroed with ignore='biasbn'"


@pytest.mark.parametrize("num", [1, 2], ids=["1d", "2d"])
def test_model_norm_equals_the_weights_norm(make_objective, num):
    obj = make_objective("cnn")
    weights = {n: w for n, w in snapshot(obj).items() if w.dim() > 1}
    for d in random_directions(obj, num, seed=4, norm="model"):
        kept = {n: d[n] for n in weights}
        assert direction_norm(kept) == pytest.approx(direction_norm(weights), rel=1e-12)


def test_ignore_none_copies_one_dimensional_tensors(make_objective):
    obj = make_objective("cnn")
    weights = snapshot(obj)
    (d,) = random_directions(obj, 1, seed=0, ignore="none")
    for name, w in weights.items():
        if w.dim() <= 1:
            assert torch.equal(d[name], w)


@pytest.mark.parametrize("norm", ["filter", "layer", "model", "none"], ids=lambda s: f"norm-{s}")
@pytest.mark.parametrize("ignore", ["biasbn", "none"], ids=lambda s: f"ignore-{s}")
@pytest.mark.parametrize("mode", ["weights", "states"], ids=lambda s: f"mode-{s}")
def test_pair_is_orthogonal(make_objective, norm, ignore, mode):
    obj = make_objective("cnn")
    d1, d2 = random_directions(obj, 2, seed=11, norm=norm, ignore=ignore, mode=mode)
    cos = direction_dot(d1, d2) / (direction_norm(d1) * direction_norm(d2))
    assert abs(cos) < 1e-13
    # without orthogonalization the two Gaussian draws are measurably not orthogonal
    e1, e2 = random_directions(obj, 2, seed=11, norm=norm, ignore=ignore, mode=mode, orthogonal=False)
    assert abs(direction_dot(e1, e2)) / (direction_norm(e1) * direction_norm(e2)) > 1e-4


def test_filter_pair_is_orthogonal_per_filter_and_keeps_the_norms(make_objective):
    obj = make_objective("cnn")
    weights = snapshot(obj)
    d1, d2 = random_directions(obj, 2, seed=5, norm="filter")
    for name, w in weights.items():
        if w.dim() > 1:
            a = d1[name].reshape(w.shape[0], -1)
            b = d2[name].reshape(w.shape[0], -1)
            scale = a.norm(dim=1) * b.norm(dim=1)
            assert ((a * b).sum(dim=1).abs() <= 1e-13 * scale).all()
            torch.testing.assert_close(b.norm(dim=1), _group_norms(w, "filter"), rtol=1e-12, atol=0)


def test_seed_reproduces_and_differs(make_objective):
    obj = make_objective("mlp")
    a = random_directions(obj, 2, seed=7)
    b = random_directions(obj, 2, seed=7)
    c = random_directions(obj, 2, seed=8)
    for da, db, dc in zip(a, b, c):
        assert all(torch.equal(da[n], db[n]) for n in da)
        assert any(not torch.equal(da[n], dc[n]) for n in da if da[n].dim() > 1)


def test_states_mode_moves_batch_norm_buffers(make_objective):
    obj = make_objective("cnn")
    (dw,) = random_directions(obj, 1, mode="weights")
    (ds,) = random_directions(obj, 1, mode="states", ignore="none")
    buffers = [n for n in ds if n.endswith(("running_mean", "running_var"))]
    assert buffers and not any(n in dw for n in buffers)
    state = obj.model.state_dict()
    for n in buffers:  # means: a copy of the buffer; variances (log space): a relative change of 1
        expected = torch.ones_like(state[n]) if n.endswith("running_var") else state[n]
        assert torch.equal(ds[n], expected)


def test_interpolation_direction_reaches_the_other_point(make_objective):
    a, b = snapshot(make_objective("mlp", seed=0)), snapshot(make_objective("mlp", seed=1))
    d = interpolation_direction(a, b)
    for n in a:
        torch.testing.assert_close(a[n] + d[n], b[n], rtol=1e-15, atol=1e-15)
    with pytest.raises(ConfigError, match="shape"):
        interpolation_direction(a, {n: t[..., :1] for n, t in b.items()})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"norm": "filters"}, "norm='filters'.*'filter'"),
        ({"ignore": "bias"}, "ignore='bias'"),
        ({"mode": "w"}, "mode='w'"),
    ],
    ids=["norm", "ignore", "mode"],
)
def test_bad_options_are_refused(make_objective, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        random_directions(make_objective("mlp"), 1, **kwargs)


def test_normalize_direction_refuses_shape_mismatch():
    w = {"w": torch.ones(2, 3, dtype=torch.float64)}
    with pytest.raises(ConfigError, match="shape"):
        normalize_direction({"w": torch.ones(3, 2, dtype=torch.float64)}, w)


# -- filters per module type, not per tensor shape -------------------------------------------------
class Conv1D(nn.Module):
    """Hugging Face's ``Conv1D`` layout without importing transformers: ``y = x @ W + b``, W (nx, nf)."""

    def __init__(self, nf: int, nx: int, *, keep_nx: bool = True) -> None:
        super().__init__()
        self.nf = nf
        if keep_nx:
            self.nx = nx
        self.weight = nn.Parameter(torch.randn(nx, nf))
        self.bias = nn.Parameter(torch.randn(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


class ShapeCases(nn.Module):
    """Layers whose output axis is not dim 0, or whose multi-dimensional tensors are no filters."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(4, 6, 3, groups=2)  # weight (in=4, out/groups=3, 3, 3)
        self.norm = nn.LayerNorm((5, 5))  # weight and bias (5, 5)
        self.proj = Conv1D(7, 150)  # weight (150, 7)
        self.old = Conv1D(3, 7, keep_nx=False)  # transformers releases without ``nx``

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.up(x)).flatten(1)
        return self.old(torch.tanh(self.proj(h)))


def _shape_cases_objective() -> Objective:
    torch.manual_seed(0)
    with torch.no_grad():
        model = ShapeCases()
        model.norm.weight.uniform_(0.5, 1.5)
        model.norm.bias.uniform_(-0.5, 0.5)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, 3, 3, generator=g)
    return Objective(model, (x, torch.arange(6) % 3), dtype=torch.float64)


def _transposed_output_channels(t: torch.Tensor, groups: int) -> list[torch.Tensor]:
    """Output channel ``c = g * out_g + j`` of a grouped transposed convolution, written out."""
    in_g, out_g = t.shape[0] // groups, t.shape[1]
    return [t[g * in_g : (g + 1) * in_g, j] for g in range(groups) for j in range(out_g)]


def test_filters_follow_the_module_not_the_tensor_shape():
    specs = filter_specs(_shape_cases_objective().model)
    assert specs["up.weight"] == FilterSpec("filters", axis=1, groups=2, module="ConvTranspose2d")
    assert specs["proj.weight"].axis == 1 and specs["old.weight"].axis == 1
    assert {specs[n].kind for n in ("norm.weight", "norm.bias")} == {"norm"}
    assert {specs[n].kind for n in ("up.bias", "proj.bias")} == {"bias"}


@pytest.mark.parametrize("num", [1, 2], ids=["1d", "2d"])
def test_output_units_of_shape_cases_have_the_weights_norm(num):
    obj = _shape_cases_objective()
    weights = snapshot(obj)
    for d in random_directions(obj, num, seed=2):
        up_d = _transposed_output_channels(d["up.weight"], 2)
        up_w = _transposed_output_channels(weights["up.weight"], 2)
        assert len(up_d) == 6
        for a, b in zip(up_d, up_w):
            assert float(a.norm() / b.norm()) == pytest.approx(1.0, abs=1e-12)
        for name in ("proj.weight", "old.weight"):  # (in, out): one filter per column
            ratios = d[name].norm(dim=0) / weights[name].norm(dim=0)
            torch.testing.assert_close(ratios, torch.ones_like(ratios), rtol=0, atol=1e-12)
        for name in ("norm.weight", "norm.bias", "up.bias", "proj.bias", "old.bias"):
            assert not d[name].any(), f"{name} is not zeroed with ignore='biasbn'"


def test_model_norm_leaves_multi_dimensional_norm_parameters_out():
    obj = _shape_cases_objective()
    weights = snapshot(obj)
    kept = [n for n in weights if n.endswith("weight") and not n.startswith("norm")]
    for d in random_directions(obj, 2, seed=4, norm="model"):
        assert not d["norm.weight"].any()
        assert direction_norm({n: d[n] for n in kept}) == pytest.approx(
            direction_norm({n: weights[n] for n in kept}), rel=1e-12
        )


def test_filter_pair_of_shape_cases_is_orthogonal_per_output_unit():
    obj = _shape_cases_objective()
    d1, d2 = random_directions(obj, 2, seed=6, ignore="none")
    for a, b in zip(
        _transposed_output_channels(d1["up.weight"], 2), _transposed_output_channels(d2["up.weight"], 2)
    ):
        assert abs(float((a * b).sum())) <= 1e-13 * float(a.norm() * b.norm())
    a, b = d1["proj.weight"], d2["proj.weight"]
    assert ((a * b).sum(dim=0).abs() <= 1e-13 * a.norm(dim=0) * b.norm(dim=0)).all()
    assert torch.equal(d1["norm.weight"], snapshot(obj)["norm.weight"])  # ignore='none': copied
    cos = direction_dot(d1, d2) / (direction_norm(d1) * direction_norm(d2))
    assert abs(cos) < 1e-13


@pytest.mark.parametrize(
    ("shape", "spec"),
    [
        ((5, 3, 2), FilterSpec("filters")),
        ((6, 4), FilterSpec("filters", axis=1)),
        ((4, 3, 3, 3), FilterSpec("filters", axis=1, groups=2)),
    ],
    ids=["dim0", "columns", "grouped-transposed"],
)
def test_filter_rows_round_trip(shape, spec):
    t = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rows = filter_rows(t, spec)
    assert rows.numel() == t.numel()
    assert torch.equal(from_filter_rows(rows, spec, t.shape), t)
