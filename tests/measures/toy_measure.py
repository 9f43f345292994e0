"""A measure added from outside the package, the way a new one is added: this module and one entry.

``gradient-norm`` is ``||g||_p`` of the full-sample gradient, with its own option ``toy_order`` (``p``,
kept in ``MeasureOptions.extra``); on ``1/2 (w - w*)^T A (w - w*)`` it is ``||A (w - w*)||_p``.
"""

from __future__ import annotations

import torch

from landscape.measures import Measure, MeasureOptions, MeasureResult
from landscape.measures.common import MeasureRun
from landscape.objective.core import Objective

TOY_ORDER = 2.0


def gradient_norm(objective: Objective, options: MeasureOptions | None = None) -> MeasureResult:
    """``||g||_p`` with ``p = options.get('toy_order', TOY_ORDER)`` (one forward and backward pass)."""
    run = MeasureRun.start(objective, options)
    order = float(run.options.get("toy_order", TOY_ORDER))
    _, grads = objective.gradient()
    g = torch.cat([t.reshape(-1) for t in grads]).double()
    value = float(torch.linalg.vector_norm(g, ord=order))
    return run.result(
        "gradient-norm", value, None, settings={"order": order}, seed=None, details={}, passes=(1.0, 1.0)
    )


ENTRY = Measure("gradient-norm", gradient_norm, {"toy_order": TOY_ORDER}, "gradient norm")
