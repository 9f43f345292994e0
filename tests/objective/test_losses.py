"""Losses by name: the half squared error against hand-written sums, and the resolver's errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from landscape.errors import ConfigError, DataError
from landscape.objective.losses import HalfSquaredError, resolve_loss


def _hand_mse_labels(out: torch.Tensor, y: torch.Tensor) -> float:
    total = 0.0
    for i in range(out.shape[0]):
        for c in range(out.shape[1]):
            target = 1.0 if int(y[i]) == c else 0.0
            total += 0.5 * (float(out[i, c]) - target) ** 2
    return total / out.shape[0]


def test_mse_class_labels_matches_hand_written_sum() -> None:
    g = torch.Generator().manual_seed(1)
    out = torch.randn(7, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 3, 1, 1, 2, 0, 3])
    assert float(resolve_loss("mse")(out, y)) == pytest.approx(_hand_mse_labels(out, y), rel=1e-14)


def test_mse_gradient_in_outputs_is_residual_over_n() -> None:
    # d/df 1/(2N) sum ||f - onehot||^2 = (f - onehot) / N: the output Hessian is I / N (Cohen et al. 2021)
    out = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([2, 0, 1, 1, 0])
    (grad,) = torch.autograd.grad(HalfSquaredError()(out, y), out)
    assert torch.allclose(grad, (out.detach() - F.one_hot(y, 3).double()) / 5, atol=1e-15)


@pytest.mark.parametrize(
    "out_shape,target_shape",
    [((6, 3), (6, 3)), ((6, 1), (6,)), ((6, 2, 2), (6, 2, 2))],
    ids=["matrix", "column-vs-vector", "tensor"],
)
def test_mse_float_targets_matches_hand_written(out_shape, target_shape) -> None:
    g = torch.Generator().manual_seed(2)
    out = torch.randn(*out_shape, generator=g, dtype=torch.float64)
    t = torch.randn(*target_shape, generator=g, dtype=torch.float64)
    diff = out.reshape(6, -1) - t.reshape(6, -1)
    hand = sum(0.5 * float(diff[i] @ diff[i]) for i in range(6)) / 6
    assert float(resolve_loss("mse")(out, t)) == pytest.approx(hand, rel=1e-14)


def test_cross_entropy_by_name() -> None:
    out = torch.randn(4, 3, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 2])
    assert float(resolve_loss("cross-entropy")(out, y)) == pytest.approx(float(F.cross_entropy(out, y)))


def test_import_path_function_and_class() -> None:
    out, t = torch.randn(4, 2), torch.randn(4, 2)
    assert float(resolve_loss("torch.nn.functional:mse_loss")(out, t)) == pytest.approx(
        float(F.mse_loss(out, t))
    )
    smooth = resolve_loss("torch.nn:SmoothL1Loss")
    assert float(smooth(out, t)) == pytest.approx(float(F.smooth_l1_loss(out, t)))


@pytest.mark.parametrize(
    "name,match",
    [
        ("hinge", r"loss='hinge' is not valid; choose one of cross-entropy, mse"),
        ("no_such_module_xyz:fn", r"cannot import module 'no_such_module_xyz'"),
        ("torch.nn.functional:no_such_fn", r"has no attribute 'no_such_fn'"),
        ("torch:float64", r"is not callable"),
    ],
    ids=["unknown-name", "bad-module", "bad-attribute", "not-callable"],
)
def test_resolver_errors_are_one_clear_line(name: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        resolve_loss(name)


def test_mse_rejects_bad_labels_and_shapes() -> None:
    with pytest.raises(DataError, match=r"outside \[0, 3\)"):
        HalfSquaredError()(torch.randn(2, 3), torch.tensor([0, 3]))
    with pytest.raises(DataError, match=r"shaped like the outputs \(4, 2\), got \(4, 3\)"):
        HalfSquaredError()(torch.randn(4, 2), torch.randn(4, 3))


def test_cross_entropy_is_the_usual_one_for_classes_and_a_token_mean_for_tokens() -> None:
    from landscape.objective.losses import CrossEntropy

    g = torch.Generator().manual_seed(3)
    ce = resolve_loss("cross-entropy")
    assert isinstance(ce, CrossEntropy) and ce.causal is None
    out, y = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randint(0, 4, (6,), generator=g)
    assert float(ce(out, y)) == float(torch.nn.CrossEntropyLoss()(out, y))
    assert ce.num_terms(y) == 6
    tokens = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    labels = torch.tensor([[1, 4, -100], [0, -100, -100]])
    logp = tokens.log_softmax(-1)
    plain = -(logp[0, 0, 1] + logp[0, 1, 4] + logp[1, 0, 0]) / 3
    causal = -(logp[0, 0, 4]) / 1  # position t predicts label t + 1
    assert float(CrossEntropy(causal=False)(tokens, labels)) == pytest.approx(float(plain), abs=1e-15)
    assert float(CrossEntropy(causal=True)(tokens, labels)) == pytest.approx(float(causal), abs=1e-15)
    assert (
        CrossEntropy(causal=False).num_terms(labels) == 3 and CrossEntropy(causal=True).num_terms(labels) == 1
    )
    padding = torch.full((1, 3), -100)
    assert float(CrossEntropy(causal=False)(tokens[:1], padding)) == 0.0  # no NaN for a batch of padding
