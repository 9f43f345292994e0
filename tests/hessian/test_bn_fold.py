"""Eval-mode batch norm folded into the layer before it: same function, same Hessian products."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape.hessian import HessianOperator
from landscape.hessian.bn_fold import FoldedModel, fold_eval_batchnorm
from landscape.hessian.testing import dense_hessian, make_cnn
from landscape.models.builders import BasicBlock
from landscape.objective.core import Objective


def _randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so folding them is really tested."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=gen, dtype=torch.float64) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=gen, dtype=torch.float64) + 0.5)
            if m.weight is not None:
                m.weight.data.copy_(torch.rand(c, generator=gen, dtype=torch.float64) + 0.5)
                m.bias.data.copy_(torch.rand(c, generator=gen, dtype=torch.float64) - 0.5)
    return model.eval()


class ConvBiasReflect(nn.Module):
    """Conv with bias and reflect padding, batch norm without affine parameters, a Conv1d-free head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1, padding_mode="reflect")
        self.bn = nn.BatchNorm2d(3, affine=False)
        self.head = nn.Linear(3 * 4 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.bn(self.conv(x))).flatten(1))


class LinearBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 5)
        self.bn = nn.BatchNorm1d(5)
        self.out = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.bn(self.fc(x))))


class SharedConvOutput(nn.Module):
    """The convolution's output feeds batch norm and a skip connection: folding would change the skip."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 2, 3, padding=1)
        self.bn = nn.BatchNorm1d(2)
        self.head = nn.Linear(2 * 5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.conv(x)
        return self.head((torch.tanh(self.bn(z)) + z).flatten(1))


class DataDependentFlow(LinearBN):
    """Python control flow on a tensor value: torch.fx cannot trace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(self.fc(x))
        if float(h.detach().sum()) > 1e9:
            h = -h
        return self.out(torch.tanh(h))


def _objective(model: nn.Module, x_shape: tuple[int, ...], n: int = 24, bn_mode: str = "eval") -> Objective:
    torch.manual_seed(0)
    model = _randomize_bn(model.double())
    x = torch.randn(n, *x_shape, dtype=torch.float64)
    y = torch.randint(0, 3, (n,))
    return Objective(model, (x, y), batch_size=10, dtype=torch.float64, bn_mode=bn_mode)


class ResidualBlock(nn.Module):
    """The registry ResNet's BasicBlock with a strided 1x1 conv + batch norm shortcut, and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.block = BasicBlock(2, 3, stride=2)
        self.head = nn.Linear(3 * 2 * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(x).flatten(1))


CASES = {
    "resnet-basic-block": (ResidualBlock, (2, 4, 4), 3),
    "conv-bias-reflect-no-affine": (ConvBiasReflect, (1, 4, 4), 1),
    "linear-bn1d": (LinearBN, (6,), 1),
    "shared-conv-output": (SharedConvOutput, (2, 5), 0),
    "untraceable": (DataDependentFlow, (6,), 0),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("mode", ["rev-rev", "fwd-rev"])
def test_folded_products_equal_the_dense_hessian(case: str, mode: str) -> None:
    cls, shape, n_pairs = CASES[case]
    obj = _objective(cls(), shape)
    op = HessianOperator(obj, mode=mode)
    assert len(op.folded.pairs) == n_pairs
    H = dense_hessian(obj)
    V = torch.randn(H.shape[0], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    want = H @ V
    err = (op @ V - want).abs().max() / want.abs().max()
    assert float(err) < 1e-12


def test_reasons_when_nothing_is_folded() -> None:
    assert "cannot trace" in fold_eval_batchnorm(_objective(DataDependentFlow(), (6,)).model).reason
    assert "directly after" in fold_eval_batchnorm(_objective(SharedConvOutput(), (2, 5)).model).reason
    assert fold_eval_batchnorm(nn.Linear(2, 2)).reason == "no batch norm"
    obj = _objective(LinearBN(), (6,), bn_mode="train")
    op = HessianOperator(obj)
    assert op.folded.pairs == [] and "bn_mode='train'" in op.folded.reason
    assert HessianOperator(_objective(LinearBN(), (6,)), fold_batchnorm=False).folded.pairs == []


def test_a_folded_model_that_disagrees_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    import landscape.hessian.operator as operator_module

    obj = _objective(LinearBN(), (6,))
    wrong = FoldedModel(nn.Sequential(obj.model, nn.Tanh()), [("fc", "bn")], "")
    monkeypatch.setattr(operator_module, "fold_eval_batchnorm", lambda model: wrong)
    op = HessianOperator(obj)
    assert op.folded.pairs == [] and "disagreed" in op.folded.reason
    assert op.folded.module is obj.model


def test_fold_follows_in_place_parameter_and_statistics_changes() -> None:
    obj = Objective(make_cnn(), _digits_like(40), batch_size=20, dtype=torch.float64)
    op = HessianOperator(obj, mode="rev-rev")
    assert len(op.folded.pairs) == 2
    v = torch.randn(op.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    before = op @ v
    with torch.no_grad():
        for p in obj.params:
            p.mul_(1.1)
        for m in obj.model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.mul_(1.3)
    after = op @ v
    reference = HessianOperator(obj, mode="rev-rev", fold_batchnorm=False) @ v
    assert float((after - reference).abs().max() / reference.abs().max()) < 1e-12
    assert float((after - before).abs().max()) > 1e-3  # the product did change


def test_folding_leaves_the_model_alone() -> None:
    model = make_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_eval_batchnorm(model)
    x = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(folded.module(x), model.eval()(x), rtol=0, atol=1e-12)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert type(model).__name__ == "SmallCNN" and len(folded.pairs) == 2


def _digits_like(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(4)
    return torch.randn(n, 1, 8, 8, generator=gen, dtype=torch.float64), torch.randint(
        0, 10, (n,), generator=gen
    )
