"""Sharpness during training: the top Hessian eigenvalues every few steps, warm-started.

Progressive sharpening and the edge of stability (Cohen et al. 2021, arXiv 2103.00065): under
full-batch gradient descent with learning rate ``lr`` the sharpness ``lambda_max`` of the training loss
rises until it reaches ``2/lr`` and then hovers there. :class:`SharpnessTracker` measures it every
``every`` steps (and at the last step) on a fixed, seeded sample of the training set, and writes one row
per measurement (``RUN/sharpness.csv``)::

    step, epoch, lambda_max[, lambda_2..lambda_k], hvps, seconds, converged, lr, threshold, degenerate
    [, precond_lambda_max, precond_threshold, precond_hvps][, grad_overlap]

``degenerate`` is empty, or why the curvature there is no flatness (an all-zero spectrum, a saturated
softmax: :func:`~landscape.analysis.pipeline.degenerate_reason`), as a diverged run has it.

``threshold`` is the stability threshold of the optimizer's raw sharpness on a quadratic:
``2/lr`` for gradient descent, ``(2 + 2 mu) / ((1 - dampening) lr)`` with heavy-ball momentum ``mu``,
``(2 + 2 mu) / ((1 + 2 mu) lr)`` with Nesterov momentum (Cohen et al. 2021, appendix), empty for
adaptive methods, whose threshold ``(2 + 2 beta1) / ((1 - beta1) lr)`` applies to the preconditioned
sharpness ``lambda_1(P^-1 H)`` (Cohen et al. 2022; :mod:`landscape.hessian.precond`).

**Warm start.** Between two measurements the parameters move a little, and so do the top
eigenvectors. Lanczos' error after ``m`` steps is about ``tan(angle(v_0, u_1)) * C_m^-1`` (a Chebyshev
factor), so starting from the previous top eigenvectors instead of a random vector (``tan ~ sqrt(n)``)
saves ``log(sqrt(n) / tan(angle))`` of the ``log(sqrt(n) / tol)`` steps. :func:`lanczos` takes one start
vector, so the start is the sum of the previous Ritz vectors (all ``k`` directions are in its first
Krylov block) plus ``explore`` (default 0.1) times a random unit vector. The random part is the safety
net: a direction orthogonal to the previous top ``k`` that overtakes them has no component in the sum,
and Lanczos started in an invariant subspace would certify the old eigenpair (residual 0). With
``explore`` well above ``tol`` the first residual is large and Lanczos keeps going until it finds the new
direction; in the benchmark 0.1 costs no measurable HVPs over 0.001 (the random part lies mostly in the
bulk of the spectrum, which Lanczos removes in a few steps).

A start *block* (:func:`~landscape.hessian.block_krylov.block_lanczos` with ``V0`` = the previous
Ritz vectors) was measured and is not used (benchmarks/RESULTS.md, "Warm vs cold start"): with the
random part as its own column it certifies the old eigenpairs after one block when they are still
eigenpairs, so it misses a new top direction orthogonal to them (the safety net above fails); with
the random part mixed into each column it is safe but needs more HVPs than the summed start for
``k >= 2`` (and the same for ``k = 1``), because a block pays ``b`` products per Krylov step while
the previous eigenvectors are only ~0.05-0.3 (sine) from the new ones.

The measurement runs the model in evaluation mode (batch norm with running statistics, no dropout)
and restores every module's training flag afterwards; it never changes parameters or buffers.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from landscape.analysis.pipeline import degenerate_reason, saturation_pass
from landscape.errors import ConfigError, ResultFileError, check_positive
from landscape.hessian import EigenResult, HessianOperator, lanczos
from landscape.hessian.precond import is_adaptive, preconditioned_sharpness, preconditioner_ready
from landscape.io.atomic import atomic_write_text
from landscape.objective.core import LossFn, Objective

#: Default size of the fixed sample the sharpness is measured on.
DEFAULT_TRACK_SAMPLES = 2048
#: Default Lanczos tolerance on the relative Ritz residual ``||H y - theta y|| / theta``; the eigenvalue
#: error is at most ``residual^2 / gap``. Not looser: at 1e-3 a cold start certified the second
#: eigenvalue as the first in 2 of 30 measurements of the benchmark's 85k-parameter MLP (1.7 % low;
#: benchmarks/RESULTS.md), none at 1e-4.
DEFAULT_TRACK_TOL = 1e-4


def stability_threshold(
    lr: float, *, momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False
) -> float:
    """Largest curvature on which (momentum) gradient descent with ``lr`` is stable.

    On ``f(w) = a w^2 / 2`` the iteration is stable iff ``a < threshold``: ``2/lr`` without momentum,
    ``(2 + 2 mu) / ((1 - dampening) lr)`` with torch's heavy-ball momentum ``v <- mu v + (1 - d) g``,
    ``(2 + 2 mu) / ((1 + 2 mu) lr)`` with Nesterov momentum (no dampening).
    """
    check_positive("lr", lr)
    if not 0 <= momentum < 1:
        raise ConfigError(f"momentum={momentum!r} must be in [0, 1)")
    if not 0 <= dampening < 1:
        raise ConfigError(f"dampening={dampening!r} must be in [0, 1)")
    if nesterov:
        return (2.0 + 2.0 * momentum) / ((1.0 + 2.0 * momentum) * lr)
    return (2.0 + 2.0 * momentum) / ((1.0 - dampening) * lr)


def optimizer_threshold(optimizer: torch.optim.Optimizer | None, lr: float) -> float:
    """:func:`stability_threshold` for ``optimizer``'s first parameter group (NaN for adaptive ones)."""
    if optimizer is not None and is_adaptive(optimizer):
        return float("nan")
    group = optimizer.param_groups[0] if optimizer is not None else {}
    momentum = float(group.get("momentum", 0.0) or 0.0)
    return stability_threshold(
        lr,
        momentum=momentum,
        dampening=float(group.get("dampening", 0.0) or 0.0) if momentum > 0 else 0.0,
        nesterov=bool(group.get("nesterov", False)) and momentum > 0,
    )


@contextmanager
def modes_kept(model: nn.Module) -> Iterator[None]:
    """Restore every module's ``training`` flag on exit."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def tracking_objective(
    model: nn.Module,
    data: Dataset | tuple[torch.Tensor, torch.Tensor],
    *,
    loss_fn: LossFn | None = None,
    num_samples: int = DEFAULT_TRACK_SAMPLES,
    seed: int = 0,
    batch_size: int | None = 512,
) -> Objective:
    """The training loss of ``model`` on a fixed seeded sample of ``num_samples`` examples of ``data``.

    The sample is the sorted first ``num_samples`` of a seeded permutation (all of ``data`` when it is
    smaller). The model keeps its device, dtype and training flags.
    """
    from landscape.data.datasets import fixed_subset

    check_positive("num_samples", num_samples)
    ds = torch.utils.data.TensorDataset(*data) if isinstance(data, tuple) else data
    sample = fixed_subset(ds, int(num_samples), seed=seed)
    device = next(model.parameters()).device
    with modes_kept(model):
        return Objective(model, sample, loss_fn=loss_fn, batch_size=batch_size, device=device)


class SharpnessTracker:
    """Top-``k`` Hessian eigenvalues of a fixed training sample every ``every`` steps, warm-started.

    Args:
        objective: the training loss on a fixed sample (:func:`tracking_objective`), built on the
            model being trained (it reads the parameters in place); ``bn_mode`` must be ``'eval'``.
        every: measure when ``step % every == 0`` and at the last step.
        k: number of top eigenvalues (columns ``lambda_max``, ``lambda_2`` ... ``lambda_k``).
        tol: Lanczos relative residual tolerance.
        max_hvps: Hessian-vector product budget per measurement (default: Lanczos').
        seed: seed of the random start vectors (the one of step ``s`` is ``seed + s``).
        warm_start: start from the previous eigenvectors (``False``: a random start each time).
        explore: weight of the random unit vector added to the warm start (keep it well above ``tol``:
            it is what lets a new top direction, orthogonal to the previous ones, be found).
        preconditioned: also measure ``lambda_1(P^-1 H)`` when the optimizer is Adam-type (empty
            cells before its first step, when it has no preconditioner yet).
        overlap: also record the fraction ``||U^T g||^2 / ||g||^2`` of the sample's gradient ``g``
            in the span of the top-``k`` eigenvectors ``U`` (one extra gradient pass; the Ritz vectors,
            and so the fraction, are accurate to about ``tol * lambda / gap``).
        mode: HVP mode.

    Use ``tracker.due(step, last)`` and ``tracker.measure(step, epoch, optimizer)`` in the training
    loop, ``tracker.write_csv(path)`` with the other logs, ``state_dict``/``load_state_dict`` with the
    resume state.
    """

    def __init__(
        self,
        objective: Objective,
        *,
        every: int,
        k: int = 1,
        tol: float = DEFAULT_TRACK_TOL,
        max_hvps: int | None = None,
        seed: int = 0,
        warm_start: bool = True,
        explore: float = 0.1,
        preconditioned: bool = True,
        overlap: bool = False,
        mode: str = "auto",
    ) -> None:
        if int(every) != every or every < 1:
            raise ConfigError(f"every={every!r} must be an integer >= 1")
        if int(k) != k or not 1 <= k <= objective.num_params:
            raise ConfigError(f"k={k!r} must be an integer between 1 and {objective.num_params}")
        check_positive("tol", tol)
        check_positive("explore", explore, allow_zero=True)
        if objective.bn_mode != "eval":
            raise ConfigError(
                f"objective.bn_mode={objective.bn_mode!r}: tracking measures with running statistics "
                "and must not touch the model's batch-norm momentum; build the objective with bn_mode='eval'"
            )
        self.objective = objective
        self.every = int(every)
        self.k = int(k)
        self.tol = float(tol)
        self.max_hvps = max_hvps
        self.seed = int(seed)
        self.warm_start = warm_start
        self.explore = float(explore)
        self.preconditioned = preconditioned
        self.overlap = overlap
        self.mode = mode
        self.rows: list[dict[str, Any]] = []
        self._vectors: torch.Tensor | None = None
        self._precond_vectors: torch.Tensor | None = None
        self._has_precond = False
        self._checked = False

    # -- schedule -----------------------------------------------------------------------------
    def due(self, step: int, last: bool = False) -> bool:
        """Whether ``step`` is to be measured (a multiple of ``every`` or the last; never twice)."""
        if self.rows and int(self.rows[-1]["step"]) >= step:
            return False
        return step % self.every == 0 or last

    # -- measurement --------------------------------------------------------------------------
    def _start(self, previous: torch.Tensor | None, n: int, seed: int) -> torch.Tensor | None:
        if not self.warm_start or previous is None or previous.shape[0] != n:
            return None
        obj = self.objective
        v = previous.to(device=obj.device, dtype=obj.dtype).sum(dim=1)
        v = v / torch.linalg.vector_norm(v)
        if self.explore > 0:
            gen = torch.Generator().manual_seed(seed)
            r = torch.randn(n, generator=gen, dtype=torch.float64).to(device=obj.device, dtype=obj.dtype)
            v = v + self.explore * r / torch.linalg.vector_norm(r)
        return v

    def _eigen(self, op: HessianOperator, seed: int) -> EigenResult:
        """Top-``k`` eigenpairs by Lanczos from the warm start (or a random vector)."""
        v0 = self._start(self._vectors, op.shape[0], seed)
        return lanczos(op, self.k, tol=self.tol, max_matvecs=self.max_hvps, seed=seed, v0=v0)

    def measure(
        self,
        step: int,
        epoch: int,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        lr: float | None = None,
    ) -> dict[str, Any]:
        """Measure at the model's current parameters and append (and return) the row.

        The parameters are the ones the model holds: for MSAM and AdamW-MSAM-ScheduleFree call it in
        the optimizer mode whose point is meant (``train()``: the gradient point, ``eval()``: the
        evaluated one), and record which.

        Args:
            step: optimizer steps taken so far.
            epoch: the epoch the step belongs to.
            optimizer: gives the learning rate, the threshold and (Adam-type) the preconditioner.
            lr: learning rate when there is no optimizer (or to override its first group's).
        """
        t0 = time.perf_counter()
        obj = self.objective
        if lr is None:
            if optimizer is None:
                raise ConfigError("measure needs the optimizer or lr to record the learning rate")
            lr = float(optimizer.param_groups[0]["lr"])
        seed = self.seed + int(step)
        with modes_kept(obj.model):
            obj.model.eval()
            # data read from a loader is checked for determinism once, not at every measurement
            op = HessianOperator(obj, mode=self.mode, check_determinism=None if not self._checked else False)
            self._checked = True
            n = op.shape[0]
            res = self._eigen(op, seed)
            assert res.vectors is not None
            self._vectors = res.vectors.detach()
            degenerate = self._degenerate(res.eigenvalues)
            row: dict[str, Any] = {"step": int(step), "epoch": int(epoch)}
            for i, lam in enumerate(res.eigenvalues):
                row[eigen_column(i)] = float(lam)
            row["hvps"] = int(res.matvecs)
            row["converged"] = int(all(res.converged))
            row["lr"] = float(lr)
            row["threshold"] = optimizer_threshold(optimizer, float(lr))
            if self.preconditioned and optimizer is not None and is_adaptive(optimizer):
                self._has_precond = True
            if self.preconditioned and preconditioner_ready(optimizer, obj.params):
                assert optimizer is not None
                pres = preconditioned_sharpness(
                    obj,
                    optimizer,
                    tol=self.tol,
                    max_matvecs=self.max_hvps,
                    seed=seed,
                    v0=self._start(self._precond_vectors, n, seed),
                    mode=self.mode,
                )
                self._precond_vectors = None if pres.vectors is None else pres.vectors.detach()
                row["precond_lambda_max"] = pres.lambda_max
                row["precond_threshold"] = pres.threshold
                row["precond_hvps"] = pres.matvecs
            if self.overlap:
                _, grads = obj.gradient()
                g = op.flatten(grads)
                proj = self._vectors.T @ g
                gg = float(g @ g)
                row["grad_overlap"] = float(proj @ proj) / gg if gg > 0 else float("nan")
        row["degenerate"] = degenerate or ""
        row["seconds"] = time.perf_counter() - t0
        self.rows.append(row)
        return row

    def _degenerate(self, eigenvalues: Any) -> str | None:
        """Why ``eigenvalues`` (of the model's current weights) are no flatness, or ``None``."""
        obj = self.objective
        return degenerate_reason(eigenvalues, saturation_pass(obj), eps=torch.finfo(obj.dtype).eps)

    def maybe_measure(
        self,
        step: int,
        epoch: int,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        last: bool = False,
        lr: float | None = None,
    ) -> dict[str, Any] | None:
        """:meth:`measure` when :meth:`due`, else ``None``."""
        if not self.due(step, last):
            return None
        return self.measure(step, epoch, optimizer, lr=lr)

    @staticmethod
    def progress_note(row: dict[str, Any]) -> str:
        """A short note for the progress bar: ``lambda_max=19.8 (2/lr=20)``."""
        note = f"lambda_max={row['lambda_max']:.4g}"
        if math.isfinite(row.get("threshold", float("nan"))):
            note += f" (thr={row['threshold']:.4g})"
        if "precond_lambda_max" in row:
            note += f" P^-1H={row['precond_lambda_max']:.4g} (thr={row['precond_threshold']:.4g})"
        return note

    # -- output -------------------------------------------------------------------------------
    def columns(self) -> list[str]:
        """The CSV columns of this tracker's rows."""
        cols = ["step", "epoch", *(eigen_column(i) for i in range(self.k)), "hvps", "seconds", "converged"]
        cols += ["lr", "threshold", "degenerate"]
        if self._has_precond or any("precond_lambda_max" in r for r in self.rows):
            cols += ["precond_lambda_max", "precond_threshold", "precond_hvps"]
        if self.overlap:
            cols.append("grad_overlap")
        return cols

    def csv_text(self) -> str:
        """All rows as CSV text (NaN as an empty cell)."""
        return rows_to_csv(self.rows, self.columns())

    def write_csv(self, path: str | Path) -> Path:
        """Write all rows to ``path`` atomically (the whole file: it never holds half a row)."""
        return atomic_write_text(path, self.csv_text())

    # -- resume -------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """What must match for a resumed tracker to continue the same series."""
        return {
            "every": self.every,
            "k": self.k,
            "tol": self.tol,
            "seed": self.seed,
            "num_samples": self.objective.num_samples,
            "num_params": self.objective.num_params,
        }

    def state_dict(self) -> dict[str, Any]:
        """Rows and warm-start vectors (CPU tensors; loadable with ``weights_only=True``)."""
        return {
            "config": self.config(),
            "rows": [dict(r) for r in self.rows],
            "vectors": None if self._vectors is None else self._vectors.detach().cpu(),
            "precond_vectors": None
            if self._precond_vectors is None
            else self._precond_vectors.detach().cpu(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`; refuses a state made with other settings."""
        try:
            saved, rows = dict(state["config"]), list(state["rows"])
        except (KeyError, TypeError) as exc:
            raise ResultFileError(f"the sharpness-tracking state is damaged (missing {exc})") from None
        mine = self.config()
        changed = sorted(key for key in mine if saved.get(key) != mine[key])
        if changed:
            detail = ", ".join(f"{key}: {saved.get(key)!r} -> {mine[key]!r}" for key in changed)
            raise ResultFileError(f"the sharpness-tracking state was made with other settings ({detail})")
        self.rows = [dict(r) for r in rows]
        self._vectors = state.get("vectors")
        self._precond_vectors = state.get("precond_vectors")
        self._has_precond = any("precond_lambda_max" in r for r in self.rows)


def eigen_column(i: int) -> str:
    """Column name of the ``i``-th (from 0) eigenvalue: ``lambda_max``, ``lambda_2``, ..."""
    return "lambda_max" if i == 0 else f"lambda_{i + 1}"


def rows_to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """CSV text with ``columns``; missing or non-finite values are empty cells."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        out = []
        for c in columns:
            v = r.get(c, "")
            if isinstance(v, float) and not math.isfinite(v):
                v = ""
            elif isinstance(v, float):
                v = repr(v)
            out.append(v)
        w.writerow(out)
    return buf.getvalue()


@dataclass
class SharpnessHistory:
    """A run's sharpness series (``sharpness.csv``) and training loss (``steps.csv``) as arrays.

    Missing columns are ``None``; empty cells are NaN.
    """

    label: str
    step: np.ndarray
    lambda_max: np.ndarray
    threshold: np.ndarray
    lr: np.ndarray
    eigenvalues: np.ndarray
    precond_lambda_max: np.ndarray | None = None
    precond_threshold: np.ndarray | None = None
    grad_overlap: np.ndarray | None = None
    loss_step: np.ndarray | None = None
    loss: np.ndarray | None = None


# columns that hold text, not numbers
TEXT_COLUMNS = ("degenerate",)


def _read_columns(path: Path) -> dict[str, np.ndarray]:
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            fields = reader.fieldnames or []
    except OSError as exc:
        raise ResultFileError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    out: dict[str, np.ndarray] = {}
    for f in fields:
        if f in TEXT_COLUMNS:
            continue
        vals = []
        for i, r in enumerate(rows):
            cell = r.get(f)
            try:
                vals.append(float(cell) if cell not in ("", None) else float("nan"))
            except ValueError:
                raise ResultFileError(
                    f"{str(path)!r} row {i + 2} column {f!r} is not a number: {cell!r}"
                ) from None
        out[f] = np.asarray(vals, dtype=float)
    return out


def read_history(run_dir: str | Path, *, label: str | None = None) -> SharpnessHistory:
    """Read ``run_dir/sharpness.csv`` (required) and ``run_dir/steps.csv`` (optional: the loss).

    Raises:
        ResultFileError: no such folder, no ``sharpness.csv``, or one without ``step`` and ``lambda_max`` columns.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise ResultFileError(f"{str(run)!r} is not a run folder (no such directory)")
    path = run / "sharpness.csv"
    if not path.is_file():
        raise ResultFileError(
            f"{str(run)!r} has no sharpness.csv; train it with sharpness tracking turned on"
        )
    cols = _read_columns(path)
    missing = [c for c in ("step", "lambda_max") if c not in cols]
    if missing:
        raise ResultFileError(f"{str(path)!r} has no column {missing[0]!r}; is it a sharpness.csv?")
    n = len(cols["step"])
    nan = np.full(n, np.nan)
    k = 1
    while f"lambda_{k + 1}" in cols:
        k += 1
    eig = np.stack([cols[eigen_column(i)] for i in range(k)], axis=1) if n else np.zeros((0, k))
    hist = SharpnessHistory(
        label=label if label is not None else run.name,
        step=cols["step"],
        lambda_max=cols["lambda_max"],
        threshold=cols.get("threshold", nan),
        lr=cols.get("lr", nan),
        eigenvalues=eig,
        precond_lambda_max=cols.get("precond_lambda_max"),
        precond_threshold=cols.get("precond_threshold"),
        grad_overlap=cols.get("grad_overlap"),
    )
    steps = run / "steps.csv"
    if steps.is_file():
        sc = _read_columns(steps)
        if "step" in sc and "loss" in sc:
            hist.loss_step, hist.loss = sc["step"], sc["loss"]
    return hist
