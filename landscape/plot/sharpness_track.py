"""Sharpness during training, drawn from :class:`~landscape.training.sharpness_tracking.SharpnessHistory` (never computed here).

Top panel: ``lambda_max`` of the training-loss Hessian against the step, with the optimizer's stability
threshold (``2/lr`` for gradient descent) as a dashed line of the same colour: progressive sharpening
and the edge of stability (Cohen et al. 2021). Middle panel, when a run has it: the preconditioned
sharpness ``lambda_1(P^-1 H)`` of an Adam-type optimizer with its threshold ``(2 + 2 beta1) / ((1 -
beta1) lr)`` (Cohen et al. 2022). Bottom panel: the training loss of every step. Several runs overlay in
colours ``C0, C1, ...``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from landscape.errors import ConfigError
from landscape.training.sharpness_tracking import SharpnessHistory


def _finite(a: np.ndarray | None) -> bool:
    return a is not None and bool(np.isfinite(a).any())


def plot_sharpness_track(
    histories: SharpnessHistory | Sequence[SharpnessHistory],
    *,
    axes: Sequence[Axes] | None = None,
    title: str | None = None,
    log_loss: bool = False,
) -> Figure:
    """``lambda_max`` (and the preconditioned sharpness) with thresholds over the steps, loss below.

    Args:
        histories: one run or several to overlay.
        axes: draw into these axes (2, or 3 when a run has the preconditioned sharpness; top to
            bottom); default a new figure.
        title: title of the top panel.
        log_loss: logarithmic loss axis.

    Returns:
        The figure.

    Raises:
        ConfigError: no history, or ``axes`` of the wrong length.
    """
    runs = [histories] if isinstance(histories, SharpnessHistory) else list(histories)
    if not runs:
        raise ConfigError("histories is empty; give at least one run's sharpness history")
    with_precond = any(_finite(h.precond_lambda_max) for h in runs)
    n_panels = 3 if with_precond else 2
    if axes is None:
        fig = Figure(figsize=(6.5, 2.2 * n_panels + 0.8), layout="constrained")
        ratios = [2, 2, 1.3] if with_precond else [2, 1.3]
        panels = list(fig.subplots(n_panels, 1, sharex=True, gridspec_kw={"height_ratios": ratios}))
    else:
        panels = list(axes)
        if len(panels) != n_panels:
            raise ConfigError(f"axes has {len(panels)} axes; these runs need {n_panels} (top to bottom)")
        parent = panels[0].get_figure()
        assert isinstance(parent, Figure)
        fig = parent
    top, loss_ax = panels[0], panels[-1]
    several = len(runs) > 1
    for i, h in enumerate(runs):
        color = f"C{i}"
        prefix = f"{h.label}: " if several else ""
        top.plot(
            h.step,
            h.lambda_max,
            color=color,
            marker=".",
            ms=3,
            lw=1.2,
            label=f"{prefix}$\\lambda_{{\\max}}(H)$",
        )
        if _finite(h.threshold):
            top.plot(h.step, h.threshold, color=color, ls="--", lw=1, label=f"{prefix}stability threshold")
        if with_precond and _finite(h.precond_lambda_max):
            mid = panels[1]
            mid.plot(
                h.step,
                h.precond_lambda_max,
                color=color,
                marker=".",
                ms=3,
                lw=1.2,
                label=f"{prefix}$\\lambda_1(P^{{-1}}H)$",
            )
            if _finite(h.precond_threshold):
                mid.plot(
                    h.step,
                    h.precond_threshold,
                    color=color,
                    ls="--",
                    lw=1,
                    label=f"{prefix}$(2+2\\beta_1)/((1-\\beta_1)\\eta)$",
                )
        if h.loss is not None and h.loss_step is not None and len(h.loss):
            loss_ax.plot(h.loss_step, h.loss, color=color, lw=0.8, label=h.label if several else None)
    top.set_ylabel("sharpness")
    top.set_title(title if title is not None else "Sharpness during training")
    top.legend(fontsize="small")
    if with_precond:
        panels[1].set_ylabel("preconditioned\nsharpness")
        panels[1].legend(fontsize="small")
    loss_ax.set_ylabel("training loss")
    loss_ax.set_xlabel("step")
    if log_loss:
        loss_ax.set_yscale("log")
    if several and loss_ax.get_legend_handles_labels()[1]:
        loss_ax.legend(fontsize="small")
    return fig
