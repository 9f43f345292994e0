"""Newton-summary in the factory and in a training run: its defaults, its fixed loader, its builder.

The optimizer (:class:`~landscape.optim.newton.NewtonSummary`) takes parameter groups, the full loss
and a fixed loader ``hg_loader`` for ``H-bar``, ``g-bar`` and ``D`` (Wolinski 2023, arXiv 2312.03885);
the factory builds those from the model, ``loss_fn`` and the partition's name.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from landscape.data.datasets import analysis_loader
from landscape.errors import ConfigError
from landscape.optim._common import to_device
from landscape.optim.entry import BuildRequest, LossFn
from landscape.optim.newton import partition

#: Options ``make_optimizer("newton-summary", ...)`` fills in when not given (the grnewt example's).
NEWTON_SUMMARY_DEFAULTS: dict[str, Any] = {
    "damping_int": 10.0,
    "period_hg": 10,
    "mom_lrs": 0.5,
    "remove_negative": True,
}

#: Newton-summary in a training run: H-bar, g-bar and D come from one fixed batch of the first
#: ``NEWTON_HG_SAMPLES`` training examples.
NEWTON_HG_SAMPLES = 512


def newton_run_arguments(train_data: Dataset, loss_fn: LossFn) -> dict[str, Any]:
    """The loss and one fixed batch of the first ``NEWTON_HG_SAMPLES`` training examples, in order."""
    first = list(range(min(len(train_data), NEWTON_HG_SAMPLES)))  # type: ignore[arg-type]
    return {"loss_fn": loss_fn, "hg_loader": analysis_loader(Subset(train_data, first), NEWTON_HG_SAMPLES)}


def build_newton_summary(cls: type, request: BuildRequest) -> torch.optim.Optimizer:
    """Newton-summary over the partition ``options['partition']``; ``lr`` is the global ``damping``.

    Raises:
        ConfigError: ``loss_fn`` or ``hg_loader`` is missing.
    """
    options = dict(request.options)
    loss_fn = options.pop("loss_fn", None)
    hg_loader = options.pop("hg_loader", None)
    if loss_fn is None or hg_loader is None:
        raise ConfigError(
            "optimizer 'newton-summary' needs loss_fn=... and hg_loader=... (a fixed loader for H-bar/g-bar)"
        )
    # resolve_options filled in the seed example's settings (grnewt README): the class's plain
    # defaults (damping_int=1, rates recomputed every step, no smoothing) diverged on digits at lr >= 0.5.
    groups, _ = partition(request.model, options.pop("partition"))
    model = request.model

    def full_loss(x: Any, target: Any) -> Tensor:
        device = next(model.parameters()).device
        return loss_fn(model(to_device(x, device)), to_device(target, device))

    return cls(groups, full_loss, hg_loader, damping=request.lr, momentum=request.momentum, **options)
