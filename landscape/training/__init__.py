"""Training runs for loss-landscape studies: the loop behind ``landscape train``.

``train(config, out_dir)`` trains ``config.model`` with any optimizer of :mod:`landscape.optim` and
writes a resumable run folder (:mod:`landscape.training.run_folder`) that the analysis commands read.
The settings and what a run resolves them to are in :mod:`landscape.training.config`.
"""

from landscape.training.config import (
    FULL_BATCH,
    TRAIN_OPTIMIZERS,
    TrainConfig,
    checkpoint_loss,
    resolve_config,
)
from landscape.training.loop import EpochEnd, EpochHook, StepEnd, StepHook, TrainResult, train
from landscape.training.run_folder import EPOCH_COLUMNS, STEP_COLUMNS, RunFolder

__all__ = [
    "EPOCH_COLUMNS",
    "FULL_BATCH",
    "STEP_COLUMNS",
    "EpochEnd",
    "EpochHook",
    "RunFolder",
    "StepEnd",
    "StepHook",
    "TRAIN_OPTIMIZERS",
    "TrainConfig",
    "TrainResult",
    "checkpoint_loss",
    "resolve_config",
    "train",
]
