"""Training recipes against closed forms: schedules, label smoothing, crop-and-flip augmentation."""

from __future__ import annotations

import math

import pytest
import torch

from landscape.errors import ConfigError
from landscape.training.recipes import (
    augment_batch,
    lr_lambda,
    lr_multiplier,
    make_loss,
    make_scheduler,
    random_crop,
    random_flip,
    warmup_steps_for,
)

T, W = 110, 10  # 100 steps after warmup: half-way is step 60


@pytest.mark.parametrize("schedule", ["constant", "cosine", "step"])
def test_warmup_is_a_linear_ramp_to_the_base_rate(schedule):
    got = [lr_multiplier(schedule, t, T, W) for t in range(W + 1)]
    assert got == pytest.approx([(t + 1) / W for t in range(W)] + [1.0], abs=1e-15)


def test_constant_is_one_after_warmup():
    assert all(lr_multiplier("constant", t, T, W) == 1.0 for t in range(W, T + 5))
    assert lr_multiplier("constant", 0, T) == 1.0  # no warmup: full rate at once


def test_cosine_closed_form():
    assert lr_multiplier("cosine", W, T, W) == pytest.approx(1.0, abs=1e-15)
    assert lr_multiplier("cosine", 60, T, W) == pytest.approx(0.5, abs=1e-15)  # half-way: half the rate
    assert lr_multiplier("cosine", W + 25, T, W) == pytest.approx((1 + math.cos(math.pi / 4)) / 2, abs=1e-15)
    assert lr_multiplier("cosine", T, T, W) == pytest.approx(0.0, abs=1e-15)
    assert lr_multiplier("cosine", T + 50, T, W) == pytest.approx(0.0, abs=1e-15)  # clamped after the end
    values = [lr_multiplier("cosine", t, T, W) for t in range(W, T)]
    assert all(a > b for a, b in zip(values, values[1:])), "strictly decreasing after warmup"


def test_step_decay_closed_form():
    # milestones at 50% and 75% of the 100 post-warmup steps: steps 60 and 85
    expected = {W: 1.0, 59: 1.0, 60: 0.1, 84: 0.1, 85: 0.01, T - 1: 0.01}
    for t, m in expected.items():
        assert lr_multiplier("step", t, T, W) == pytest.approx(m, rel=1e-12), t
    assert lr_multiplier("step", 40, 80, milestones=(0.25,), gamma=0.5) == 0.5


@pytest.mark.filterwarnings(
    "ignore:Detected call of `lr_scheduler.step\\(\\)` before"
)  # SAM's own step() is bypassed
def test_lambda_lr_follows_the_multiplier_also_for_sam():
    from landscape.optim.sam import SAM

    w = torch.nn.Parameter(torch.zeros(3))
    sgd = torch.optim.SGD([w], lr=0.2)
    sched = make_scheduler(sgd, "cosine", T, W)
    sam = SAM([torch.nn.Parameter(torch.zeros(2))], torch.optim.SGD, rho=0.05, lr=0.2)
    sched_sam = make_scheduler(sam, "step", T, W)
    for t in range(T):
        assert sgd.param_groups[0]["lr"] == pytest.approx(0.2 * lr_multiplier("cosine", t, T, W), abs=1e-15)
        assert sam.base_optimizer.param_groups[0]["lr"] == pytest.approx(
            0.2 * lr_multiplier("step", t, T, W), abs=1e-15
        )
        sgd.step()
        sched.step()
        sam.base_optimizer.step()
        sched_sam.step()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"schedule": "linear", "step": 0, "total_steps": 10}, "schedule='linear'"),
        ({"schedule": "cosine", "step": 0, "total_steps": 10, "warmup_steps": 10}, "warmup_steps=10"),
        ({"schedule": "cosine", "step": -1, "total_steps": 10}, "step=-1"),
        ({"schedule": "cosine", "step": 0, "total_steps": 0}, "total_steps=0"),
        ({"schedule": "step", "step": 0, "total_steps": 10, "milestones": (0.8, 0.5)}, "milestones"),
        ({"schedule": "step", "step": 0, "total_steps": 10, "gamma": 0.0}, "gamma=0.0"),
    ],
    ids=["unknown", "warmup-too-long", "negative-step", "no-steps", "milestones-order", "gamma"],
)
def test_bad_schedule_settings_name_the_parameter(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        lr_multiplier(**kwargs)


def test_lr_lambda_checks_at_construction_and_warmup_steps_for():
    with pytest.raises(ConfigError, match="warmup_steps=5"):
        lr_lambda("cosine", 5, 5)
    assert warmup_steps_for(2, 22) == 44
    assert warmup_steps_for(0.5, 22) == 11
    with pytest.raises(ConfigError, match="warmup_epochs=-1"):
        warmup_steps_for(-1, 22)


def test_label_smoothing_closed_form():
    torch.manual_seed(0)
    logits = torch.randn(6, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    eps = 0.1
    logp = torch.log_softmax(logits, dim=1)
    expected = ((1 - eps) * -logp[torch.arange(6), y] + eps * (-logp).mean(dim=1)).mean()
    torch.testing.assert_close(make_loss(eps)(logits, y), expected, rtol=0, atol=1e-14)
    torch.testing.assert_close(
        make_loss(0.0)(logits, y), torch.nn.functional.cross_entropy(logits, y), rtol=0, atol=0
    )
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match=f"label_smoothing={bad}"):
            make_loss(bad)


# -- augmentation ----------------------------------------------------------------------------------
def _images(n=5, c=3, h=6, w=7):
    return torch.arange(n * c * h * w, dtype=torch.float64).reshape(n, c, h, w) + 1.0


def test_crop_equals_a_slice_of_the_padded_image():
    x = _images()
    pad = 4
    out = random_crop(x, torch.Generator().manual_seed(3), padding=pad)
    assert out.shape == x.shape and out.dtype == x.dtype
    g = torch.Generator().manual_seed(3)  # the documented draw order: all dy, then all dx
    dy = torch.randint(0, 2 * pad + 1, (5,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (5,), generator=g)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    for n in range(5):
        expected = padded[n, :, dy[n] : dy[n] + 6, dx[n] : dx[n] + 7]
        assert torch.equal(out[n], expected)
    assert len({(int(a), int(b)) for a, b in zip(dy, dx)}) > 1, "offsets differ between images"


def test_crop_with_zero_offset_shift_keeps_the_image_and_pads_with_zeros():
    x = _images(n=1)
    out = random_crop(x, torch.Generator().manual_seed(0), padding=0)
    assert torch.equal(out, x)
    # padding as large as the image: some crops must contain the zero border
    out = random_crop(_images(n=64, h=4, w=4), torch.Generator().manual_seed(0), padding=4)
    assert (out == 0).any()


def test_flip_is_exact():
    x = _images()
    assert torch.equal(random_flip(x, torch.Generator().manual_seed(0), p=1.0), x.flip(-1))
    assert torch.equal(random_flip(x, torch.Generator().manual_seed(0), p=0.0), x)
    out = random_flip(x, torch.Generator().manual_seed(1))
    flipped = torch.rand(5, generator=torch.Generator().manual_seed(1)) < 0.5
    for n in range(5):
        assert torch.equal(out[n], x[n].flip(-1) if flipped[n] else x[n])
    assert torch.equal(out[:, :, :, 0], torch.where(flipped[:, None, None], x[:, :, :, -1], x[:, :, :, 0]))


def test_augment_is_seeded_and_keeps_shape():
    x = torch.rand(16, 1, 8, 8)
    a = augment_batch(x, torch.Generator().manual_seed(5))
    b = augment_batch(x, torch.Generator().manual_seed(5))
    c = augment_batch(x, torch.Generator().manual_seed(6))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(augment_batch(x, torch.Generator(), padding=0, flip=False), x)


def test_augment_refuses_non_images():
    with pytest.raises(ConfigError, match=r"\(N, C, H, W\).*\(4, 40\)"):
        augment_batch(torch.zeros(4, 40), torch.Generator())
