"""Every optimizer through the factory: trains an MLP on digits, resumes exactly from a state_dict."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from landscape.errors import ConfigError
from landscape.optim import (
    OPTIMIZER_NAMES,
    evaluation_mode,
    make_optimizer,
    needs_two_batches,
    step_statistics,
    training_step,
)
from landscape.optim.factory import DEFAULT_RHO, resolve_options

# name -> (lr, extra options); momentum 0.9 everywhere it applies
SETTINGS = {
    "sgd": (0.2, {}),
    "adam": (0.01, {}),
    "adamw": (0.01, {}),
    "sam": (0.2, {}),
    "asam": (0.2, {}),
    "sam-direction": (0.2, {"decomposition": "global"}),
    "sam-magnitude": (0.2, {"decomposition": "elementwise"}),
    "sgd-hess": (0.1, {"hessian_period": 2}),
    "minmin": (0.2, {}),
    "msam": (0.2, {}),
    "adamw-msam-sf": (0.02, {"warmup_steps": 3}),
    "newton-summary": (0.1, {"damping_int": 10.0, "period_hg": 4, "mom_lrs": 0.5, "remove_negative": True}),
}
LOSS = nn.CrossEntropyLoss()


def build(name, model, digits):
    lr, extra = SETTINGS[name]
    extra = dict(extra)
    if name == "newton-summary":
        extra.update(loss_fn=LOSS, hg_loader=[(digits.x[:128].double(), digits.y[:128])])
    momentum = 0.0 if name in ("adam", "adamw", "adamw-msam-sf") else 0.9
    kw = {} if name in ("adam", "adamw", "adamw-msam-sf") else {"momentum": momentum}
    return make_optimizer(name, model, lr=lr, **kw, **extra)


def run(opt, model, batches, steps, start=0):
    losses = []
    for t in range(start, start + steps):
        b = batches[(2 * t) % len(batches)]
        nb = batches[(2 * t + 1) % len(batches)]
        losses.append(training_step(opt, model, LOSS, b, nb))
    return losses


def full_loss(model, opt, digits):
    with torch.no_grad(), evaluation_mode(opt):
        return LOSS(model(digits.x.double()), digits.y).item()


def test_every_name_is_tested():
    assert set(SETTINGS) == set(OPTIMIZER_NAMES)


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_optimizer_lowers_digits_loss(name, digits, mlp_factory):
    model = mlp_factory(0, torch.float64)
    opt = build(name, model, digits)
    batches = [(x.double(), y) for x, y in digits.batches(64)]
    before = full_loss(model, opt, digits)
    losses = run(opt, model, batches, 40)
    after = full_loss(model, opt, digits)
    assert all(torch.isfinite(torch.tensor(losses)))
    print(f"digits loss {name}: {before:.3f} -> {after:.3f}")
    assert after < 0.75 * before, f"{name}: {before:.3f} -> {after:.3f}"
    stats = step_statistics(opt)
    if name in ("sam", "asam", "sam-direction", "sam-magnitude"):
        assert set(stats) == {"grad_norm_ratio", "cosine", "frac_larger"}
        assert 0.0 <= stats["frac_larger"] <= 1.0 and -1.0 <= stats["cosine"] <= 1.0
    else:
        assert stats is None


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_state_dict_resume_matches_uninterrupted_run(name, digits, mlp_factory):
    batches = [(x.double(), y) for x, y in digits.batches(64)][:6]
    model = mlp_factory(1, torch.float64)
    opt = build(name, model, digits)
    run(opt, model, batches, 6)
    reference = [p.detach().clone() for p in model.parameters()]

    model = mlp_factory(1, torch.float64)
    opt = build(name, model, digits)
    run(opt, model, batches, 3)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=False)
    model2 = mlp_factory(99, torch.float64)
    opt2 = build(name, model2, digits)
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["opt"])
    run(opt2, model2, batches, 3, start=3)
    for p, r in zip(model2.parameters(), reference):
        assert torch.equal(p.detach(), r), name


def test_factory_errors(mlp_factory):
    model = mlp_factory()
    with pytest.raises(ConfigError, match="optimizer='lbfgs' is not valid.*'sam'"):
        make_optimizer("lbfgs", model, lr=0.1)
    with pytest.raises(ConfigError, match="does not accept"):
        make_optimizer("msam", model, lr=0.1, nesterov=True)
    with pytest.raises(ConfigError, match="hg_loader"):
        make_optimizer("newton-summary", model, lr=0.1)
    with pytest.raises(ConfigError, match="lr=-0.1"):
        make_optimizer("sam", model, lr=-0.1)
    opt = make_optimizer("minmin", model, lr=0.1)
    assert needs_two_batches(opt)
    x, y = torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ConfigError, match="next_batch=None"):
        training_step(opt, model, LOSS, (x, y))


def test_default_rho_and_kinds(mlp_factory):
    model = mlp_factory()
    assert make_optimizer("asam", model, lr=0.1).param_groups[0]["rho"] == 0.5
    assert make_optimizer("asam", model, lr=0.1).param_groups[0]["adaptive"] is True
    assert make_optimizer("minmin", model, lr=0.1, rho=0.3).param_groups[0]["inner_step_size"] == 0.3
    sam_adam = make_optimizer("sam", model, lr=0.01, base_optimizer=torch.optim.Adam)
    assert isinstance(sam_adam.base_optimizer, torch.optim.Adam)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_every_optimizer_steps_on_cuda_like_cpu(name, digits, mlp_factory):
    batches = [(x.double(), y) for x, y in digits.batches(64)][:4]
    out = []
    for device in ("cpu", "cuda"):
        model = mlp_factory(2, torch.float64).to(device)
        opt = build(name, model, digits)
        run(opt, model, batches, 3)
        out.append([p.detach().cpu() for p in model.parameters()])
    for a, b in zip(*out):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


def test_newton_summary_factory_fills_the_seed_example_settings():
    """Unset options take the values of the grnewt minimal example (seed document 002):
    ``dct_nesterov={'use': True, 'damping_int': 10.}``, ``period_hg=10``, ``mom_lrs=.5``,
    ``remove_negative=True``, with the canonical partition (one group per tensor)."""
    seed_example = {"damping_int": 10.0, "period_hg": 10, "mom_lrs": 0.5, "remove_negative": True}
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    loader = [(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.int64))]
    opt = make_optimizer("newton-summary", model, lr=0.1, loss_fn=LOSS, hg_loader=loader)
    assert len(opt.param_groups) == 2  # canonical: the weight and the bias
    for group in opt.param_groups:
        for key, value in seed_example.items():
            assert group.get(key, getattr(opt, key, None)) == value, key
    mine = make_optimizer("newton-summary", model, lr=0.1, loss_fn=LOSS, hg_loader=loader, period_hg=3)
    assert mine.param_groups[0].get("period_hg", getattr(mine, "period_hg", None)) == 3


def _linear_and_extra(name):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    loader = [(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.int64))]
    return model, ({"loss_fn": LOSS, "hg_loader": loader} if name == "newton-summary" else {})


def _settings(opt):
    """Everything an optimizer was built with: its param_groups' hyperparameters and own attributes."""
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.state_dict()["param_groups"]]
    attrs = {k: v for k, v in vars(opt).items() if isinstance(v, (int, float, str, bool, tuple))}
    return groups, attrs


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_resolved_options_are_what_make_optimizer_uses(name):
    """Building with the resolved rho and options passed explicitly gives the same optimizer as
    building with the defaults: the resolution records what is used, nothing more or less."""
    rho, options = resolve_options(name)
    assert rho == DEFAULT_RHO.get(name)
    model, extra = _linear_and_extra(name)
    by_default = make_optimizer(name, model, lr=0.1, momentum=0.5, **extra)
    explicit = make_optimizer(name, model, lr=0.1, momentum=0.5, rho=rho, **options, **extra)
    assert _settings(explicit) == _settings(by_default)
    group = by_default.param_groups[0]
    if rho is not None:
        assert group.get("rho", group.get("inner_step_size")) == rho
    for key, value in options.items():
        used = group.get(key, getattr(by_default, key, value))
        assert (list(used) if isinstance(used, tuple) else used) == value, key


def test_resolve_options_keeps_what_is_given_and_leaves_torch_defaults_alone():
    assert resolve_options("sam") == (0.05, {})
    assert resolve_options("asam", rho=0.2) == (0.2, {})
    assert resolve_options("sgd", rho=0.2, nesterov=True) == (None, {"nesterov": True})
    assert resolve_options("adamw", betas=(0.8, 0.9)) == (None, {"betas": (0.8, 0.9)})
    assert resolve_options("sam-magnitude", decomposition="elementwise") == (
        0.05,
        {"decomposition": "elementwise"},
    )
    assert resolve_options("minmin", small_batch_size=8) == (
        0.1,
        {"small_batch_size": 8, "large_batch_size": 256},
    )
    rho, options = resolve_options("newton-summary", period_hg=3)
    assert rho is None and options["period_hg"] == 3 and options["partition"] == "canonical"
    assert options["damping_int"] == 10.0
    with pytest.raises(ConfigError, match="optimizer='lbfgs' is not valid"):
        resolve_options("lbfgs")


def test_run_helpers_give_what_a_training_run_passes():
    from torch.utils.data import TensorDataset

    from landscape.optim.factory import (
        NEWTON_HG_SAMPLES,
        run_arguments,
        run_option_defaults,
        step_batch_sizes,
    )

    assert run_option_defaults("sgd-hess", seed=7) == {"seed": 7}
    assert all(run_option_defaults(n, seed=7) == {} for n in OPTIMIZER_NAMES if n != "sgd-hess")
    x = torch.arange(600.0).view(600, 1)
    data = TensorDataset(x, torch.zeros(600, dtype=torch.int64))
    assert run_arguments("sam", train_data=data, loss_fn=LOSS) == {}
    extra = run_arguments("newton-summary", train_data=data, loss_fn=LOSS)
    assert extra["loss_fn"] is LOSS
    batches = list(extra["hg_loader"])
    assert NEWTON_HG_SAMPLES == 512 and len(batches) == 1  # one fixed batch, the same every pass
    assert torch.equal(batches[0][0], x[:512])
    assert torch.equal(list(extra["hg_loader"])[0][0], x[:512])
    with pytest.raises(ConfigError, match="optimizer='lbfgs'"):
        run_option_defaults("lbfgs", seed=0)

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert step_batch_sizes(make_optimizer("sam", model, lr=0.1), 16) == (16, 0)
    minmin = make_optimizer("minmin", model, lr=0.1, small_batch_size=8, large_batch_size=24)
    assert step_batch_sizes(minmin, 16) == (8, 24)
