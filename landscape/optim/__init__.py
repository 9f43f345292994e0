"""Optimizers for loss-landscape studies: the SAM family, Min-Min, Momentum-SAM, AdamW-MSAM-ScheduleFree and
Newton-summary, all ``torch.optim.Optimizer`` subclasses, plus a name-based factory (``make_optimizer``)
and a uniform ``training_step`` used by ``landscape train``.
"""

from landscape.optim._common import disable_running_stats, enable_running_stats, frozen_bn_stats
from landscape.optim.factory import (
    DEFAULT_RHO,
    OPTIMIZER_NAMES,
    evaluation_mode,
    make_optimizer,
    needs_two_batches,
    step_statistics,
    training_step,
)
from landscape.optim.minmin import (
    SCHEDULE_TYPES,
    MinMinBatchSampler,
    MinMinOptimizer,
    MinMinScheduler,
    minmin_training_step,
)
from landscape.optim.msam import MSAM, AdamWMSAMScheduleFree
from landscape.optim.newton import (
    PARTITIONS,
    HGSummary,
    NewtonSummary,
    compute_hg,
    nesterov_lrs,
    newton_lrs,
    partition,
    partition_canonical,
    partition_trivial,
    partition_wb,
)
from landscape.optim.sam import SAM, SAMDirection, SAMMagnitude
from landscape.optim.sgd_hess import SGDHess

__all__ = [
    "DEFAULT_RHO",
    "OPTIMIZER_NAMES",
    "evaluation_mode",
    "make_optimizer",
    "needs_two_batches",
    "step_statistics",
    "training_step",
    "PARTITIONS",
    "HGSummary",
    "NewtonSummary",
    "compute_hg",
    "nesterov_lrs",
    "newton_lrs",
    "partition",
    "partition_canonical",
    "partition_trivial",
    "partition_wb",
    "MSAM",
    "AdamWMSAMScheduleFree",
    "SCHEDULE_TYPES",
    "MinMinBatchSampler",
    "MinMinOptimizer",
    "MinMinScheduler",
    "SGDHess",
    "minmin_training_step",
    "SAM",
    "SAMDirection",
    "SAMMagnitude",
    "disable_running_stats",
    "enable_running_stats",
    "frozen_bn_stats",
]
