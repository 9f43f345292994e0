"""Full-batch gradient descent: batches of any size give the step of one big batch."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from landscape.errors import ConfigError
from landscape.objective.losses import resolve_loss
from landscape.optim import SAM
from landscape.training.full_batch import full_batch_objective, full_batch_step

torch.set_num_threads(1)


def _problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    x = torch.randn(50, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (50,), generator=g)
    return model, x, y


OPTIMIZERS = {
    "gd": lambda ps: torch.optim.SGD(ps, lr=0.3),
    "heavy-ball": lambda ps: torch.optim.SGD(ps, lr=0.2, momentum=0.9),
    "nesterov": lambda ps: torch.optim.SGD(ps, lr=0.2, momentum=0.9, nesterov=True),
    "adam": lambda ps: torch.optim.Adam(ps, lr=0.01),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS), ids=list(OPTIMIZERS))
@pytest.mark.parametrize("loss_name", ["cross-entropy", "mse"])
def test_gd_in_uneven_batches_equals_one_big_batch(name: str, loss_name: str) -> None:
    model, x, y = _problem()
    reference = copy.deepcopy(model)
    loss_fn = resolve_loss(loss_name)
    obj = full_batch_objective(model, (x, y), loss_fn=loss_fn, batch_size=16)  # 16+16+16+2
    assert obj.num_batches == 4
    opt = OPTIMIZERS[name](model.parameters())
    ref_opt = OPTIMIZERS[name](reference.parameters())
    for _ in range(4):
        loss = full_batch_step(opt, obj)
        ref_opt.zero_grad()
        ref_loss = loss_fn(reference(x), y)
        ref_loss.backward()
        ref_opt.step()
        assert loss == pytest.approx(float(ref_loss.detach()), rel=1e-13)
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(p, q, rtol=0, atol=1e-13)


def test_sam_gets_full_batch_gradients_at_both_points() -> None:
    model, x, y = _problem()
    reference = copy.deepcopy(model)
    loss_fn = resolve_loss("mse")
    obj = full_batch_objective(model, (x, y), loss_fn=loss_fn, batch_size=7)
    opt = SAM(model.parameters(), lr=0.2, rho=0.05)
    ref_opt = SAM(reference.parameters(), lr=0.2, rho=0.05)

    def closure() -> torch.Tensor:
        ref_opt.zero_grad()
        loss = loss_fn(reference(x), y)
        loss.backward()
        return loss

    for _ in range(3):
        full_batch_step(opt, obj)
        ref_opt.step(closure)
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(p, q, rtol=0, atol=1e-13)


def test_objective_keeps_training_flags_and_refuses_foreign_optimizer() -> None:
    model, x, y = _problem()
    model.train()
    obj = full_batch_objective(model, (x, y), batch_size=None)
    assert model.training and all(m.training for m in model.modules())
    other = nn.Linear(2, 2).double()
    with pytest.raises(ConfigError, match=r"does not update parameters \['0.weight'"):
        full_batch_step(torch.optim.SGD(other.parameters(), lr=0.1), obj)
