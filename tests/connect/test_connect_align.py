"""Weight matching: a permuted copy is recovered exactly, the aligned model computes B's function,
and architectures it cannot follow are refused naming the layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from connect_helpers import make_model
from torch import nn

from landscape.connect import (
    AlignmentError,
    align_models,
    apply_permutations,
    linear_path,
    permutation_spec,
)
from landscape.objective.core import Objective

KINDS = ["mlp", "cnn", "resnet"]


def _random_perms(spec, seed):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randperm(n, generator=g) for k, n in spec.sizes.items()}


def _inputs(kind: str, digits_small):
    x, _ = digits_small
    return x if kind != "mlp" else x.reshape(len(x), -1)


@pytest.mark.parametrize("kind", KINDS)
def test_spec_finds_the_hidden_groups(kind):
    spec = permutation_spec(make_model(kind, 0))
    # mlp: two hidden layers; cnn: two conv blocks; resnet: stem+identity block merge into one
    # stream, c1 has its own group, c3 and the projection shortcut merge into one.
    expected = {"mlp": [10, 12], "cnn": [4, 8], "resnet": [4, 4, 8]}[kind]
    assert sorted(spec.sizes.values()) == expected
    assert all(g in spec.sizes for entries in spec.axes.values() for _, g, _ in entries)


@pytest.mark.parametrize("kind", KINDS)
def test_permuted_copy_is_recovered_exactly_and_barrier_is_zero(kind, digits_small):
    a = make_model(kind, 0)
    spec = permutation_spec(a)
    perms = _random_perms(spec, 1)
    assert any((p != torch.arange(len(p))).any() for p in perms.values())
    b = make_model(kind, 0)
    b.load_state_dict(apply_permutations(spec, a.state_dict(), perms))
    x = _inputs(kind, digits_small)
    with torch.no_grad():
        torch.testing.assert_close(b(x), a(x), rtol=0, atol=1e-12)  # the permutation keeps the function
    alignment = align_models(a, b, x[:32], seed=3)
    for name, t in a.state_dict().items():
        assert torch.equal(alignment.state_dict[name], t), name
    # the recovered copy is A itself: every point of the path is A, the barrier is exactly 0
    b.load_state_dict(alignment.state_dict)
    objective = Objective(a, digits_small, device="cpu")
    w_a = {n: p.detach().clone() for n, p in zip(objective.param_names, objective.params)}
    w_b = dict(b.named_parameters())
    path = linear_path(objective, w_a, w_b, np.linspace(0, 1, 5))
    bars = path.barriers()
    assert bars["barrier_loss"] == 0.0 and bars["barrier_error"] == 0.0
    assert np.ptp(path.loss) == 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_aligned_b_computes_the_same_function_as_b(kind, digits_small):
    a, b = make_model(kind, 0), make_model(kind, 1)
    x = _inputs(kind, digits_small)
    alignment = align_models(a, b, x[:16], seed=0)
    aligned = make_model(kind, 5)
    aligned.load_state_dict(alignment.state_dict)
    with torch.no_grad():
        torch.testing.assert_close(aligned(x), b(x), rtol=1e-12, atol=1e-12)
    assert alignment.matching.units_moved > 0  # two independent models: the matching did move units
    # weight matching can only increase sum_t <A_t, P(B)_t> from the identity
    assert alignment.matching.objective >= alignment.matching.objective_before


class _WithLayerNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.norm = nn.LayerNorm(6)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        return self.out(self.norm(self.fc(x)))


class _Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(torch.relu(self.fc(torch.relu(self.fc(x)))))


class _Grouped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, groups=2)
        self.out = nn.Conv2d(4, 1, 1)

    def forward(self, x):
        return self.out(self.conv(x))


class _Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow cannot be traced
            return self.fc(x)
        return x


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (_WithLayerNorm(), r"layer 'norm' \(LayerNorm\)"),
        (_Shared(), r"layer 'fc' \(Linear\).*more than once"),
        (_Grouped(), r"layer 'conv' \(Conv2d\).*groups=2"),
        (_Branchy(), r"torch.fx can trace"),
    ],
    ids=["layernorm", "shared-weights", "grouped-conv", "control-flow"],
)
def test_unsupported_architectures_are_refused_naming_the_layer(model, match):
    with pytest.raises(AlignmentError, match=match):
        permutation_spec(model)
