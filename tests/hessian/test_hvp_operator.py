"""The HVP operator against dense float64 Hessians (torch.func.hessian)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from landscape.errors import ConfigError, NonDeterministicDataError
from landscape.hessian import HessianOperator
from landscape.hessian.testing import dense_hessian, digits, make_mlp
from landscape.objective.core import Objective


@pytest.mark.parametrize("mode", ["rev-rev", "fwd-rev"], ids=["rev-rev", "fwd-rev"])
@pytest.mark.parametrize("problem", ["mlp_problem", "cnn_problem"], ids=["mlp", "cnn-bn"])
def test_matvec_and_block_match_dense(problem: str, mode: str, request: pytest.FixtureRequest) -> None:
    obj, H = request.getfixturevalue(problem)
    op = HessianOperator(obj, mode=mode, block_size=3)
    g = torch.Generator().manual_seed(1)
    V = torch.randn(op.shape[0], 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(op @ V[:, 0], H @ V[:, 0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op @ V, H @ V, rtol=1e-10, atol=1e-12)
    assert op.matvecs == 6
    assert op.passes == 1 + 2  # one vector, then a block of 5 in blocks of 3


def test_short_last_batch_weighting_equals_full_batch() -> None:
    data = digits(70)
    full = Objective(make_mlp(), data, dtype=torch.float64)  # one batch of 70
    split = Objective(make_mlp(), data, batch_size=32, dtype=torch.float64)  # 32 + 32 + 6
    loader = Objective(
        make_mlp(), DataLoader(TensorDataset(*data), batch_size=32, shuffle=False), dtype=torch.float64
    )
    assert full.num_batches == 1 and split.num_batches == 3
    v = torch.randn(full.num_params, 2, dtype=torch.float64)
    ref = HessianOperator(full, mode="rev-rev") @ v  # single batch: the cached graph is reused
    for obj in (split, loader):
        for mode in ("rev-rev", "fwd-rev"):
            torch.testing.assert_close(HessianOperator(obj, mode=mode) @ v, ref, rtol=1e-10, atol=1e-12)


def test_single_batch_graph_reuse_is_exact_for_many_products() -> None:
    obj = Objective(make_mlp(), digits(40), dtype=torch.float64)
    H = dense_hessian(obj)
    op = HessianOperator(obj, mode="rev-rev")
    for seed in range(3):
        v = torch.randn(op.shape[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        torch.testing.assert_close(op @ v, H @ v, rtol=1e-10, atol=1e-12)
    assert op._graphs is not None and len(op._graphs) == 1 and op.matvecs == 3


@pytest.mark.parametrize("problem", ["mlp_problem", "cnn_problem"])
def test_cached_graphs_over_uneven_batches_equal_the_dense_hessian(problem, request) -> None:
    """cache_graphs keeps one graph per batch (weights folded in); blocks and repeats stay exact."""
    obj, H = request.getfixturevalue(problem)
    op = HessianOperator(obj, mode="rev-rev", cache_graphs=True, block_size=3)
    V = torch.randn(op.shape[0], 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for _ in range(2):
        torch.testing.assert_close(op @ V, H @ V, rtol=1e-10, atol=1e-12)
    assert len(op._graphs) == obj.num_batches > 1 and op.matvecs == 10
    saved = obj.params[0].detach().clone()
    with torch.no_grad():
        obj.params[0].mul_(1.5)
    try:
        op.refresh()  # parameters changed: the cached graphs must be rebuilt
        fresh = HessianOperator(obj, mode="rev-rev") @ V[:, 0]
        torch.testing.assert_close(op @ V[:, 0], fresh, rtol=1e-10, atol=1e-12)
        assert not torch.allclose(fresh, H @ V[:, 0])
    finally:
        with torch.no_grad():
            obj.params[0].copy_(saved)  # the fixture is shared by the module


def test_param_subset_is_the_diagonal_block(mlp_problem) -> None:
    obj, H = mlp_problem
    sizes = [p.numel() for p in obj.params]
    offsets = [0, *torch.tensor(sizes).cumsum(0).tolist()]
    op = HessianOperator(obj, param_indices=[2, 3])
    lo, hi = offsets[2], offsets[4]
    v = torch.randn(hi - lo, dtype=torch.float64)
    torch.testing.assert_close(op @ v, H[lo:hi, lo:hi] @ v, rtol=1e-10, atol=1e-12)
    assert op.param_names == obj.param_names[2:4]


def test_hvp_on_parameter_shaped_tensors(mlp_problem) -> None:
    obj, H = mlp_problem
    op = HessianOperator(obj)
    vs = [torch.randn_like(p) for p in obj.params]
    out = op.hvp(vs)
    assert [o.shape for o in out] == [p.shape for p in obj.params]
    torch.testing.assert_close(op.flatten(out), H @ op.flatten(vs), rtol=1e-10, atol=1e-12)


class _Augmenting(Dataset):
    """Adds fresh noise to every example on every access (a stand-in for random augmentation)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i] + 0.1 * torch.randn_like(self.x[i]), self.y[i]


def test_determinism_check_fires_on_augmenting_loader() -> None:
    x, y = digits(40)
    obj = Objective(make_mlp(), DataLoader(_Augmenting(x, y), batch_size=16), dtype=torch.float64)
    with pytest.raises(NonDeterministicDataError, match="different results"):
        HessianOperator(obj)
    HessianOperator(obj, allow_nondeterministic=True)  # the user opted out


def test_determinism_check_refuses_shuffling_loader() -> None:
    x, y = digits(40)
    obj = Objective(
        make_mlp(), DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True), dtype=torch.float64
    )
    with pytest.raises(NonDeterministicDataError, match="shuffles"):
        HessianOperator(obj)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "fast"}, "mode='fast'"),
        ({"param_indices": [99]}, "param_indices"),
        ({"block_size": 0}, "block_size"),
    ],
    ids=["mode", "indices", "block"],
)
def test_bad_arguments(mlp_problem, kwargs: dict, match: str) -> None:
    obj, _ = mlp_problem
    with pytest.raises(ConfigError, match=match):
        HessianOperator(obj, **kwargs)


def test_wrong_vector_size(mlp_problem) -> None:
    obj, _ = mlp_problem
    with pytest.raises(ConfigError, match="does not fit"):
        HessianOperator(obj) @ torch.zeros(3, dtype=torch.float64)
