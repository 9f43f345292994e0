"""The run folder of ``train``: which files it holds, when a run resumes, and its CSV logs.

A run folder holds::

    config.json          the resolved settings (model, data, optimizer, seed, dtype, ...)
    steps.csv            one row per step: epoch, step, loss, lr and, for the SAM family, the
                         direction-vs-magnitude statistics (grad_norm_ratio, cosine, frac_larger)
    metrics.csv          one row per epoch: train/test loss and accuracy over the full splits
    ckpts/epoch_000.pt   checkpoints after each ``save_every`` epochs (epoch 0 = initialization)
    final.pt             the last checkpoint
    summary.json         the final metrics, epochs and steps
    state.pt             model + optimizer (+ learning-rate schedule, sharpness tracker) state for an
                         exact resume after an interruption
    sharpness.csv        with sharpness tracking: one row per measurement (landscape.training.sharpness_tracking)
    sharpness.png        its figure, drawn by ``landscape train`` at the end

Resume policy: a folder whose ``config.json`` resolves to the same settings resumes from its last
``state.pt``; one with other settings is refused unless ``overwrite``. The logs are written before the
resume state, so a crash in between replays one epoch (its rows are dropped and rewritten), never skips
one. With ``eval_every`` N the logs and the resume state are written at the evaluated epochs (every
N-th and the last), so an interruption replays at most N epochs. Every file is written atomically.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landscape.errors import ResultFileError
from landscape.io.atomic import atomic_torch_save, atomic_write_json, atomic_write_text
from landscape.io.result_folder import check_out_folder, check_same_settings, read_settings
from landscape.io.tables import csv_text
from landscape.optim.decompose import STAT_KEYS
from landscape.training.config import resolve_saved_settings

STEP_COLUMNS = ("epoch", "step", "loss", "lr", *STAT_KEYS)
EPOCH_COLUMNS = ("epoch", "step", "train_loss", "train_accuracy", "test_loss", "test_accuracy")

_START_OVER = "pass overwrite=True to start over"


@dataclass
class ResumePoint:
    """Where an interrupted run continues: its last completed epoch, step count and logs so far."""

    epoch: int
    step: int
    step_rows: list[dict[str, Any]]
    epoch_rows: list[dict[str, Any]]
    extra: dict[str, Any]  # further state saved by write_state (schedule, tracker), by key


class RunFolder:
    """The files of one run folder (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.state = self.path / "state.pt"
        self.steps = self.path / "steps.csv"
        self.metrics = self.path / "metrics.csv"
        self.summary = self.path / "summary.json"
        self.final = self.path / "final.pt"
        self.ckpts = self.path / "ckpts"
        self.sharpness = self.path / "sharpness.csv"
        self.sharpness_figure = self.path / "sharpness.png"

    def checkpoint(self, epoch: int) -> Path:
        """The checkpoint file of ``epoch``."""
        return self.ckpts / f"epoch_{epoch:03d}.pt"

    def check_place(self) -> None:
        """Refuse a path that exists and is not a folder, or a folder that holds run folders (a sweep:
        training into it would hide its runs from a comparison), before anything is computed."""
        check_out_folder(self.path, name="out_dir")
        inner = held_runs(self.path)
        if inner:
            shown = ", ".join(inner[:3]) + (", ..." if len(inner) > 3 else "")
            raise ResultFileError(
                f"out_dir={str(self.path)!r} holds {len(inner)} run folder(s) ({shown}), e.g. a sweep; "
                f"give a folder of its own for this run, e.g. out_dir={str(self.path / 'new_run')!r}"
            )

    def open(
        self,
        settings: dict[str, Any],
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        overwrite: bool,
        eval_every: int = 1,
    ) -> ResumePoint | None:
        """Make the folder hold this run: resume it, or start it over.

        A folder holding the same run (``settings`` equal to its resolved ``config.json``) with a resume
        state loads that state into ``model`` and ``optimizer`` and returns where to continue. Otherwise
        the run starts at epoch 0 (``None``); with ``overwrite`` the files of a previous run are removed
        first. ``config.json`` is (re)written last. ``eval_every``: the epochs that have rows in
        ``metrics.csv`` are 0, every ``eval_every``-th and the one the resume state was written at.

        Raises:
            ResultFileError: the folder holds another run (without ``overwrite``), or a run whose
                files cannot be resumed.
        """
        resume = None
        if self.config.exists() and not overwrite:
            self._check_same_run(settings)
            if self.state.exists():
                resume = self._resume(model, optimizer, eval_every)
        elif overwrite:
            for f in [
                self.state,
                self.steps,
                self.metrics,
                self.summary,
                self.final,
                self.sharpness,
                self.sharpness_figure,
                *self.ckpts.glob("epoch_*.pt"),
            ]:
                f.unlink(missing_ok=True)
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.config, settings)
        return resume

    def write_logs(self, step_rows: list[dict[str, Any]], epoch_rows: list[dict[str, Any]]) -> None:
        """Rewrite ``steps.csv`` and ``metrics.csv`` (``steps.csv`` only once there are steps)."""
        if step_rows:
            atomic_write_text(self.steps, csv_text(step_rows, STEP_COLUMNS))
        atomic_write_text(self.metrics, csv_text(epoch_rows, EPOCH_COLUMNS))

    def write_state(
        self,
        epoch: int,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Save what an exact resume after ``epoch`` needs (after the logs of that epoch).

        ``extra``: further state by key (the learning-rate scheduler's and the sharpness tracker's
        ``state_dict``), handed back by :meth:`open` as :attr:`ResumePoint.extra`; it must load with
        ``weights_only=True`` (tensors and plain values).
        """
        state = {
            "epoch": epoch,
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "extra": dict(extra or {}),
        }
        atomic_torch_save(state, self.state)

    def finish(self, final_epoch: int, step: int, final_metrics: dict[str, float]) -> None:
        """Copy the last epoch's checkpoint to ``final.pt`` and write ``summary.json``."""
        last = torch.load(self.checkpoint(final_epoch), map_location="cpu", weights_only=True)
        atomic_torch_save(last, self.final)
        atomic_write_json(self.summary, {"final": final_metrics, "epochs": final_epoch, "steps": step})

    def _check_same_run(self, settings: dict[str, Any]) -> None:
        """Refuse a folder whose ``config.json`` resolves to other settings than ``settings``."""
        previous = resolve_saved_settings(read_settings(self.config, key=None, fix=_START_OVER))
        check_same_settings(
            self.path,
            previous,
            settings,
            template="{path} holds a run with other settings ({differences} differ); "
            "use another out_dir or pass overwrite=True",
        )

    def _resume(self, model: nn.Module, optimizer: torch.optim.Optimizer, eval_every: int) -> ResumePoint:
        try:
            state = torch.load(self.state, map_location="cpu", weights_only=True)
            epoch, step = int(state["epoch"]), int(state["step"])
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            extra = dict(state.get("extra") or {})
        except Exception as exc:  # any damage to the file; the message names it and the way out
            raise ResultFileError(
                f"cannot resume from {str(self.state)!r} ({type(exc).__name__}); {_START_OVER}"
            ) from None
        step_rows = _resume_rows(self.steps, STEP_COLUMNS[:4], epoch)
        epoch_rows = _resume_rows(self.metrics, EPOCH_COLUMNS, epoch)
        expected = [e for e in range(epoch + 1) if e % eval_every == 0 or e == epoch]
        if [int(r["epoch"]) for r in epoch_rows] != expected:
            listed = f"0..{epoch}" if eval_every == 1 else ", ".join(map(str, expected))
            raise ResultFileError(
                f"{str(self.metrics)!r} does not list epochs {listed} as the resume state says, so the "
                f"run cannot be resumed; {_START_OVER}"
            )
        if len(step_rows) != step:
            raise ResultFileError(
                f"{str(self.steps)!r} has {len(step_rows)} steps where the resume state has {step}, so "
                f"the run cannot be resumed; {_START_OVER}"
            )
        return ResumePoint(epoch=epoch, step=step, step_rows=step_rows, epoch_rows=epoch_rows, extra=extra)


def held_runs(path: Path) -> list[str]:
    """The names of the run folders (``config.json`` and ``metrics.csv``) directly inside ``path``."""
    if not path.is_dir():
        return []
    return sorted(
        d.name
        for d in path.iterdir()
        if d.is_dir() and (d / "config.json").is_file() and (d / "metrics.csv").is_file()
    )


def read_log(path: Path) -> list[dict[str, Any]]:
    """Rows of a log written by :meth:`RunFolder.write_logs`; a damaged file is a ``ResultFileError``."""

    def parse(v: str) -> int | float:
        return int(v) if v.lstrip("-").isdigit() else float(v)

    try:
        with open(path, newline="") as fh:
            # Empty cells stay absent so that a rewritten file is byte-identical to the original.
            return [
                {k: parse(v) for k, v in r.items() if v not in ("", None) and k is not None}
                for r in csv.DictReader(fh)
            ]
    except FileNotFoundError:
        raise ResultFileError(
            f"{str(path)!r} is missing, so the run cannot be resumed; {_START_OVER}"
        ) from None
    except (csv.Error, ValueError, UnicodeDecodeError) as exc:
        raise ResultFileError(
            f"{str(path)!r} is damaged ({exc}), so the run cannot be resumed; {_START_OVER}"
        ) from None


def _resume_rows(path: Path, required: tuple[str, ...], last_epoch: int) -> list[dict[str, Any]]:
    """The rows of ``path`` up to ``last_epoch``, checked to hold every ``required`` column.

    Rows past ``last_epoch`` come from an epoch whose resume state was never written (the logs are
    written first); that epoch is replayed, so its rows are dropped rather than duplicated.
    """
    rows = read_log(path)
    for i, r in enumerate(rows):
        missing = [c for c in required if c not in r]
        if missing:
            raise ResultFileError(
                f"{str(path)!r} is damaged (row {i + 1} has no {', '.join(missing)}), so the run cannot be "
                f"resumed; {_START_OVER}"
            )
    return [r for r in rows if r["epoch"] <= last_epoch]
