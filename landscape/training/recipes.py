"""Training recipes: learning-rate schedules with warmup, label smoothing, and image augmentation.

**Schedules** are per-step multipliers of the base learning rate, for
``torch.optim.lr_scheduler.LambdaLR`` (stepped once per optimizer step; step ``t`` counts from 0).
With ``W`` warmup steps and ``T`` steps in all, ``p = (t - W) / (T - W)`` is the progress after warmup
(clamped to ``[0, 1]``) and the multiplier is

* warmup (``t < W``): ``(t + 1) / W``, a linear ramp that reaches the base rate at step ``W - 1``
  (Goyal et al. 2017, *Accurate, large minibatch SGD*);
* ``constant``: ``1``;
* ``cosine``: ``(1 + cos(pi p)) / 2`` (Loshchilov & Hutter 2017, SGDR, without restarts): ``1`` at the
  end of warmup, ``1/2`` half-way, ``0`` at the end;
* ``step``: ``gamma ** #{m in milestones : p >= m}`` (default ``gamma = 0.1`` at 50% and 75% of the
  steps after warmup, the usual CIFAR recipe).

**Label smoothing** (Szegedy et al. 2016) is the loss's job: :func:`make_loss` returns
``nn.CrossEntropyLoss(label_smoothing=eps)``, i.e. ``(1 - eps) CE(y) + eps * mean_k(-log p_k)``.

**Augmentation** for image batches ``(N, C, H, W)``: :func:`augment_batch` pads every image with
``padding`` zeros on each side, takes an ``H x W`` crop at an offset drawn per image, and mirrors each
image left-right with probability 1/2 (the standard CIFAR augmentation, He et al. 2016), all in torch
with the caller's ``torch.Generator`` (no torchvision), so a seeded run draws the same crops again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from landscape.errors import ConfigError, check_choice, check_positive

SCHEDULES = ("constant", "cosine", "step")
DEFAULT_MILESTONES = (0.5, 0.75)
DEFAULT_GAMMA = 0.1


def warmup_steps_for(warmup_epochs: float, steps_per_epoch: int) -> int:
    """Warmup epochs (may be fractional) as a whole number of optimizer steps."""
    check_positive("warmup_epochs", warmup_epochs, allow_zero=True)
    check_positive("steps_per_epoch", steps_per_epoch)
    return int(round(warmup_epochs * steps_per_epoch))


def _check_schedule(
    schedule: str, total_steps: int, warmup_steps: int, milestones: Sequence[float], gamma: float
) -> None:
    check_choice("schedule", schedule, SCHEDULES)
    check_positive("total_steps", total_steps)
    check_positive("warmup_steps", warmup_steps, allow_zero=True)
    if warmup_steps >= total_steps:
        raise ConfigError(
            f"warmup_steps={warmup_steps} must be smaller than total_steps={total_steps} "
            "(shorten the warmup or train longer)"
        )
    if schedule == "step":
        ms = list(milestones)
        if not ms or any(not 0 < m <= 1 for m in ms) or ms != sorted(ms):
            raise ConfigError(f"milestones={tuple(ms)} must be increasing fractions in (0, 1]")
        if not 0 < gamma <= 1:
            raise ConfigError(f"gamma={gamma!r} must be in (0, 1]")


def lr_multiplier(
    schedule: str,
    step: int,
    total_steps: int,
    warmup_steps: int = 0,
    *,
    milestones: Sequence[float] = DEFAULT_MILESTONES,
    gamma: float = DEFAULT_GAMMA,
) -> float:
    """The factor on the base learning rate at optimizer step ``step`` (0-based).

    Args:
        schedule: ``constant``, ``cosine`` or ``step``.
        step: steps taken so far (``>= 0``); past ``total_steps`` the last value holds.
        total_steps: steps of the whole run, warmup included.
        warmup_steps: linear warmup steps (``0``: none).
        milestones: ``step`` schedule: fractions of the post-warmup steps where the rate drops.
        gamma: ``step`` schedule: factor of each drop.

    Returns:
        The multiplier (see the module docstring for the formulas).

    Raises:
        ConfigError: an unknown schedule, a negative step, or a warmup as long as the run.
    """
    _check_schedule(schedule, total_steps, warmup_steps, milestones, gamma)
    if step < 0:
        raise ConfigError(f"step={step} must be >= 0")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    drops = sum(progress >= m for m in milestones)
    return float(gamma**drops)


def lr_lambda(
    schedule: str,
    total_steps: int,
    warmup_steps: int = 0,
    *,
    milestones: Sequence[float] = DEFAULT_MILESTONES,
    gamma: float = DEFAULT_GAMMA,
) -> Callable[[int], float]:
    """:func:`lr_multiplier` with the settings bound (checked now, not at the first step)."""
    _check_schedule(schedule, total_steps, warmup_steps, milestones, gamma)
    ms = tuple(float(m) for m in milestones)

    def multiplier(step: int) -> float:
        return lr_multiplier(schedule, step, total_steps, warmup_steps, milestones=ms, gamma=gamma)

    return multiplier


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str,
    total_steps: int,
    warmup_steps: int = 0,
    *,
    milestones: Sequence[float] = DEFAULT_MILESTONES,
    gamma: float = DEFAULT_GAMMA,
) -> LambdaLR:
    """A ``LambdaLR`` over ``optimizer``; call ``.step()`` after every optimizer step.

    SAM-family optimizers share their base optimizer's ``param_groups``, so the base steps with the
    scheduled rate too. Its ``state_dict`` resumes the schedule after an interruption.
    """
    return LambdaLR(
        optimizer, lr_lambda(schedule, total_steps, warmup_steps, milestones=milestones, gamma=gamma)
    )


def make_loss(label_smoothing: float = 0.0) -> nn.CrossEntropyLoss:
    """Cross-entropy with label smoothing ``eps`` in ``[0, 1)``: ``(1 - eps) CE + eps * mean_k(-log p_k)``."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing={label_smoothing!r} must be in [0, 1)")
    return nn.CrossEntropyLoss(label_smoothing=float(label_smoothing))


def _check_images(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ConfigError(
            f"augmentation needs image batches of shape (N, C, H, W), got shape {tuple(x.shape)}; "
            "turn augment off for this data"
        )


def random_crop(x: torch.Tensor, generator: torch.Generator, *, padding: int = 4) -> torch.Tensor:
    """Zero-pad each image by ``padding`` on every side and crop back to ``H x W`` at a random offset.

    The offsets ``(dy, dx)`` are drawn uniformly from ``{0, ..., 2 padding}`` per image (``dy`` for all
    images first, then ``dx``); output ``[n, :, i, j] = padded[n, :, dy_n + i, dx_n + j]``.
    """
    _check_images(x)
    check_positive("padding", padding, allow_zero=True)
    if padding == 0:
        return x.clone()
    n, _, h, w = x.shape
    padded = nn.functional.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = dx[:, None] + torch.arange(w, device=x.device)  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # advanced indices on dims 0, 2, 3 with a slice on dim 1: the result is (N, H, W, C)
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, generator: torch.Generator, *, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right (last axis) with probability ``p``, drawn per image."""
    _check_images(x)
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"p={p!r} must be in [0, 1]")
    flip = torch.rand(x.shape[0], generator=generator) < p
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)


def augment_batch(
    x: torch.Tensor, generator: torch.Generator, *, padding: int = 4, flip: bool = True
) -> torch.Tensor:
    """Random crop with ``padding``-pixel zero padding, then a random horizontal flip.

    Args:
        x: images ``(N, C, H, W)`` (any device and float dtype).
        generator: a CPU ``torch.Generator``; the same seed gives the same crops and flips.
        padding: pixels of zero padding on each side before the crop (``0``: no crop).
        flip: mirror half of the images (drawn per image).

    Returns:
        A new tensor of the same shape, dtype and device.
    """
    out = random_crop(x, generator, padding=padding)
    return random_flip(out, generator) if flip else out
