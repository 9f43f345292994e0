"""The optimizer registry: what each entry says holds for the optimizer it builds, and a new optimizer
is one class plus one entry (it then trains through ``landscape sweep`` and is read by every reader)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import Tensor, nn

from landscape.cli.main import cli
from landscape.errors import ConfigError
from landscape.hessian.precond import is_adaptive
from landscape.optim import make_optimizer
from landscape.optim._common import Closure, call_closure
from landscape.optim.entry import OptimizerEntry
from landscape.optim.factory import resolve_options
from landscape.optim.registry import OPTIMIZERS, optimizer_names, register_optimizer
from landscape.training.config import train_optimizer_names
from landscape.training.sweep import plan_sweep, takes_rho

LOSS = nn.CrossEntropyLoss()


def _extra(name: str) -> dict:
    if name != "newton-summary":
        return {}
    return {"loss_fn": LOSS, "hg_loader": [(torch.zeros(4, 64), torch.zeros(4, dtype=torch.int64))]}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_each_entry_describes_the_optimizer_it_builds(name):
    entry = OPTIMIZERS[name]
    model = nn.Linear(64, 10)
    opt = make_optimizer(name, model, lr=0.1, **_extra(name))
    assert isinstance(opt, entry.cls)
    assert is_adaptive(opt) == entry.adaptive
    rho, _ = resolve_options(name)
    assert (rho is not None) == entry.takes_rho == takes_rho(name)


def test_the_adaptive_entries_are_the_adam_type_optimizers():
    assert [n for n, e in OPTIMIZERS.items() if e.adaptive] == ["adam", "adamw", "adamw-msam-sf"]
    assert not is_adaptive(make_optimizer("sam", nn.Linear(2, 2), lr=0.1, base_optimizer=torch.optim.Adam))


class SignSGD(torch.optim.Optimizer):
    """A toy optimizer as a user would add one: ``w <- w - lr * scale * sign(g)``."""

    def __init__(self, params: Iterable[Tensor], lr: float = 0.01, scale: float = 1.0) -> None:
        super().__init__(params, {"lr": lr, "scale": scale})

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor | None:  # type: ignore[override]
        loss = call_closure(closure) if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-group["lr"] * group["scale"])
        return loss


@pytest.fixture
def sign_sgd(monkeypatch: pytest.MonkeyPatch) -> OptimizerEntry:
    """The toy optimizer registered (and removed again after the test)."""
    entry = OptimizerEntry("sign-sgd", SignSGD)
    monkeypatch.setitem(OPTIMIZERS, entry.name, entry)
    return entry


def test_a_registered_optimizer_is_read_by_every_reader(sign_sgd):
    assert "sign-sgd" in optimizer_names() and "sign-sgd" in train_optimizer_names()
    assert resolve_options("sign-sgd") == (None, {"scale": 1.0})  # the class default is recorded
    opt = make_optimizer("sign-sgd", nn.Linear(3, 2), lr=0.5, momentum=0.9, scale=2.0)
    assert isinstance(opt, SignSGD) and opt.param_groups[0]["scale"] == 2.0
    assert not is_adaptive(opt) and not takes_rho("sign-sgd")
    assert [p.name for p in plan_sweep(["sign-sgd"], [0], rhos=[0.1])] == ["sign-sgd_seed0"]
    with pytest.raises(ConfigError, match="optimizer 'sign-sgd' does not accept these options.*scale"):
        make_optimizer("sign-sgd", nn.Linear(3, 2), lr=0.5, nesterov=True)


def test_a_registered_optimizer_trains_through_the_sweep_command(sign_sgd, tmp_path: Path):
    out = tmp_path / "runs"
    args = ["sweep", "-o", str(out), "--optimizer", "sgd,sign-sgd", "--seeds", "0", "--epochs", "1"]
    tiny = ["--model", "mlp", "--model-kwargs", '{"hidden": [8]}', "--samples", "64", "--batch-size", "32"]
    res = CliRunner().invoke(cli, [*args, *tiny, "--lr", "0.01", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert sorted(json.loads(res.stdout)["trained"]) == ["sgd_seed0", "sign-sgd_seed0"]
    saved = json.loads((out / "sign-sgd_seed0" / "config.json").read_text())
    assert saved["optimizer"] == "sign-sgd" and saved["optimizer_kwargs"] == {"scale": 1.0}


def test_a_taken_name_is_refused():
    with pytest.raises(ConfigError, match="optimizer name 'sam' is taken"):
        register_optimizer(OptimizerEntry("sam", SignSGD))
    assert OPTIMIZERS["sam"].cls is not SignSGD


def test_register_optimizer_adds_an_adaptive_entry():
    class MyAdam(torch.optim.Adam):
        pass

    register_optimizer(OptimizerEntry("my-adam", MyAdam, record_class_defaults=False, adaptive=True))
    try:
        opt = make_optimizer("my-adam", nn.Linear(2, 2), lr=0.1)
        assert isinstance(opt, MyAdam) and is_adaptive(opt) and "my-adam" in optimizer_names()
    finally:
        del OPTIMIZERS["my-adam"]
