"""Objective: exact sample weighting, evaluation mode, determinism check."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from landscape.errors import ConfigError, NonDeterministicDataError
from landscape.models.builders import build_model
from landscape.objective.core import Objective


def _data(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 10, (n,), generator=g)


def _hand_loss(model, x, y):
    logits = model(x)
    return float(-(logits - torch.logsumexp(logits, dim=1, keepdim=True))[torch.arange(len(y)), y].mean())


def _hand_loss_and_grad(model, x, y):
    """Full-batch mean cross-entropy written out by hand: -(1/N) sum_i log softmax(f(x_i))_{y_i}."""
    logits = model(x)
    logp = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    loss = -logp[torch.arange(len(y)), y].sum() / len(y)
    grads = torch.autograd.grad(loss, [p for p in model.parameters()])
    return float(loss.detach()), grads


@pytest.mark.parametrize(
    "make_data",
    [
        pytest.param(lambda x, y: (x, y), id="full-batch-tensors"),
        pytest.param(lambda x, y: TensorDataset(x, y), id="tensor-dataset"),
        pytest.param(
            lambda x, y: DataLoader(TensorDataset(x, y), batch_size=7), id="loader-short-last-batch"
        ),
        pytest.param(
            lambda x, y: [(x[:20], y[:20]), (x[20:47], y[20:47]), (x[47:], y[47:])], id="uneven-list"
        ),
    ],
)
def test_loss_and_gradient_equal_hand_computed_full_batch(make_data):
    x, y = _data()
    model = build_model("cnn", width=3).double()
    ref_loss, ref_grads = _hand_loss_and_grad(model.eval(), x, y)
    obj = Objective(model, make_data(x, y), batch_size=7, dtype=torch.float64)
    assert obj.num_samples == 50
    loss, grads = obj.gradient()
    assert loss == pytest.approx(ref_loss, rel=1e-13)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-11, atol=1e-14)
    assert obj.evaluate().loss == pytest.approx(ref_loss, rel=1e-13)


def test_accuracy_counts_correct_predictions():
    x, y = _data(30)
    model = build_model("mlp", hidden=[6]).double().eval()
    pred = model(x).argmax(1)
    obj = Objective(model, (x, y), batch_size=8)
    assert obj.evaluate().accuracy == pytest.approx(float((pred == y).double().mean()), abs=1e-15)


def test_eval_mode_uses_running_statistics_and_train_mode_does_not_change_them():
    x, y = _data(40)
    model = build_model("cnn", width=3).double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    eval_loss = Objective(model, (x, y)).loss()
    assert eval_loss == pytest.approx(_hand_loss_and_grad(model.eval(), x, y)[0], rel=1e-13)
    obj_train = Objective(model, (x, y), bn_mode="train")
    train_loss = obj_train.loss()
    assert train_loss != pytest.approx(eval_loss, rel=1e-6)
    assert obj_train.metadata()["bn_mode"] == "train"
    for k, v in model.state_dict().items():
        if "num_batches_tracked" not in k:
            assert torch.equal(v, before[k]), k


def _bn_model_with_statistics():
    """The registry's CNN (batch norm after each convolution) with non-trivial running statistics."""
    model = build_model("cnn", width=3).double()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return model


def _flags(model):
    return {n: m.training for n, m in model.named_modules()}


@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_every_reduction_runs_in_the_objective_mode_and_gives_the_model_its_flags_back(bn_mode):
    """A training loop leaves the model in training mode (here with one BN layer frozen by hand):
    every reduction must still use the objective's mode, write no buffer, and restore each flag."""
    x, y = _data(24)
    model = nn.Sequential(_bn_model_with_statistics(), nn.Dropout(0.5))
    obj = Objective(model, (x, y), batch_size=10, bn_mode=bn_mode)
    reference = copy.deepcopy(model).eval()
    if bn_mode == "train":  # batch statistics in the BN layers only, nothing else in training mode
        for m in reference.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.train()
                m.track_running_stats = False
    with torch.no_grad():
        ref_losses = [_hand_loss(reference, x[i : i + 10], y[i : i + 10]) for i in (0, 10, 20)]
    ref_loss = (10 * ref_losses[0] + 10 * ref_losses[1] + 4 * ref_losses[2]) / 24
    model.train()
    frozen = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    frozen.eval()
    flags = _flags(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    momenta = [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)]

    assert obj.evaluate().loss == pytest.approx(ref_loss, rel=1e-12)
    assert obj.gradient()[0] == pytest.approx(ref_loss, rel=1e-12)
    assert float(obj.batch_loss(x[:10], y[:10]).detach()) == pytest.approx(ref_losses[0], rel=1e-12)
    functional = obj.functional_batch_loss(obj.param_dict(), x[:10], y[:10])
    assert float(functional) == pytest.approx(ref_losses[0], rel=1e-12)
    obj.check_deterministic()

    assert _flags(model) == flags
    assert [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)] == momenta
    assert all(m.track_running_stats for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    for k, v in model.state_dict().items():  # num_batches_tracked included
        assert torch.equal(v, before[k]), k


def test_building_an_objective_leaves_the_model_mode_alone():
    model = _bn_model_with_statistics().train()
    Objective(model, _data(8), bn_mode="train")
    assert all(m.training for m in model.modules())
    assert [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm2d)] == [0.1] * 2


class _Augmenting(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i] + 0.1 * torch.randn_like(self.x[i]), self.y[i]


def test_determinism_check_fires_on_augmenting_or_shuffling_loader():
    x, y = _data(32)
    model = build_model("mlp", hidden=[5]).double()
    Objective(model, DataLoader(TensorDataset(x, y), batch_size=8)).check_deterministic()
    with pytest.raises(NonDeterministicDataError, match="shuffles or augments"):
        Objective(model, DataLoader(_Augmenting(x, y), batch_size=8)).check_deterministic()
    with pytest.raises(NonDeterministicDataError, match="allow_nondeterministic=True"):
        Objective(model, DataLoader(TensorDataset(x, y), batch_size=5, shuffle=True)).check_deterministic()


class _SecondPassDiffers(Dataset):
    """Counts reads; from the second pass on, every input is scaled by ``1 + change``."""

    def __init__(self, x, y, change):
        self.x, self.y, self.change, self.reads = x, y, change, 0

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        scale = 1.0 if self.reads < len(self.y) else 1.0 + self.change
        self.reads += 1
        return self.x[i] * scale, self.y[i]


@pytest.mark.parametrize(
    ("change", "refused"),
    [(0.0, False), (1e-12, False), (1e-3, True)],
    ids=["same", "below-rtol", "above-rtol"],
)
def test_the_check_compares_two_full_passes(change, refused):
    """A fixed loader passes; the check reads the data exactly twice and refuses a second pass that
    differs by more than ``rtol`` (moved here from tests/hessian: it tests the Objective)."""
    x, y = _data(40)
    data = _SecondPassDiffers(x, y, change)
    obj = Objective(build_model("mlp", hidden=[6]).double(), DataLoader(data, batch_size=16))
    if refused:
        with pytest.raises(
            NonDeterministicDataError, match="two passes over the data gave different results"
        ):
            obj.check_deterministic(rtol=1e-6)
    else:
        obj.check_deterministic(rtol=1e-6)
    assert data.reads == 2 * len(y)


def test_param_names_and_bad_options():
    model = build_model("mlp", hidden=[5])
    x, y = _data(10)
    obj = Objective(model, (x.float(), y), param_names=["net.3.weight"])
    assert obj.num_params == 50 and len(obj.gradient()[1]) == 1
    with pytest.raises(ConfigError, match="unknown parameters"):
        Objective(model, (x.float(), y), param_names=["nope"])
    with pytest.raises(ConfigError, match="bn_mode='batch' is not valid; choose one of eval, train"):
        Objective(model, (x.float(), y), bn_mode="batch")
