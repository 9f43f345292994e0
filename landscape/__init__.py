"""landscape: loss-landscape geometry for PyTorch.

Hessian spectra (Lanczos top-k, Hutchinson/Hutch++/XTrace trace, SLQ density), filter-normalized loss
surfaces (Li et al. 2018), the SAM family of optimizers and training with sharpness tracking.

The top level holds the names a notebook needs; everything else lives in its subpackage
(``landscape.hessian``, ``landscape.surface``, ``landscape.optim``, ``landscape.measures``, ...).
Names are looked up lazily (PEP 562): ``import landscape`` does not import torch, so the command
line answers ``--help`` at once; the first use of a name imports its module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> "module:attribute". One line per name, so a module that moves is a one-line change.
_PUBLIC: dict[str, str] = {
    # The objective: model + loss + data, with loss, gradient and Hessian-vector products.
    "Objective": "landscape.objective.core:Objective",
    # Hessian spectra and sharpness.
    "HessianOperator": "landscape.hessian.operator:HessianOperator",
    "lanczos": "landscape.hessian.krylov:lanczos",
    "block_lanczos": "landscape.hessian.block_krylov:block_lanczos",
    "top_eigenpairs": "landscape.hessian.eigen:top_eigenpairs",
    "trace": "landscape.hessian.trace_estimation:trace",
    "hutchinson": "landscape.hessian.trace_hutchinson:hutchinson",
    "hutchpp": "landscape.hessian.trace_hutchpp:hutchpp",
    "xtrace": "landscape.hessian.trace_xtrace:xtrace",
    "slq": "landscape.hessian.spectral_density:slq",
    "sharpness": "landscape.analysis.pipeline:sharpness",
    # Checkpoints, models and data.
    "load_checkpoint": "landscape.models.checkpoints:load_checkpoint",
    "save_checkpoint": "landscape.models.checkpoints:save_checkpoint",
    "load_model": "landscape.models.checkpoints:load_model",
    "ModelSpec": "landscape.models.builders:ModelSpec",
    "build_model": "landscape.models.builders:build_model",
    "DataSpec": "landscape.data.datasets:DataSpec",
    "load_dataset": "landscape.data.datasets:load_dataset",
    "digits_tensors": "landscape.data.datasets:digits_tensors",
    "objective_from_checkpoint": "landscape.objective.loading:objective_from_checkpoint",
    # Loss surfaces.
    "random_directions": "landscape.surface.directions:random_directions",
    "compute_surface": "landscape.surface.grid:compute_surface",
    "surface_from_checkpoint": "landscape.surface.from_checkpoint:surface_from_checkpoint",
    # Optimizers and training.
    "SAM": "landscape.optim.sam:SAM",
    "make_optimizer": "landscape.optim.factory:make_optimizer",
    "TrainConfig": "landscape.training:TrainConfig",
    "train": "landscape.training:train",
    # Sharpness measures beyond the Hessian, and mode connectivity.
    "compute_measures": "landscape.measures.dispatch:compute_measures",
    "connect_checkpoints": "landscape.connect.api:connect_checkpoints",
    # Errors: every failure the toolkit raises on purpose is a LandscapeError.
    "LandscapeError": "landscape.errors:LandscapeError",
    "ConfigError": "landscape.errors:ConfigError",
    "CheckpointError": "landscape.errors:CheckpointError",
    "ModelError": "landscape.errors:ModelError",
    "DataError": "landscape.errors:DataError",
}

__all__ = [
    "__version__",
    # objective
    "Objective",
    # Hessian spectra and sharpness
    "HessianOperator",
    "lanczos",
    "block_lanczos",
    "top_eigenpairs",
    "trace",
    "hutchinson",
    "hutchpp",
    "xtrace",
    "slq",
    "sharpness",
    # checkpoints, models and data
    "load_checkpoint",
    "save_checkpoint",
    "load_model",
    "ModelSpec",
    "build_model",
    "DataSpec",
    "load_dataset",
    "digits_tensors",
    "objective_from_checkpoint",
    # loss surfaces
    "random_directions",
    "compute_surface",
    "surface_from_checkpoint",
    # optimizers and training
    "SAM",
    "make_optimizer",
    "TrainConfig",
    "train",
    # measures and connectivity
    "compute_measures",
    "connect_checkpoints",
    # errors
    "LandscapeError",
    "ConfigError",
    "CheckpointError",
    "ModelError",
    "DataError",
]  # grouped by topic like _PUBLIC; tests/test_public_api.py checks the two agree


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use and cache the name here."""
    target = _PUBLIC.get(name)
    if target is None:
        raise AttributeError(f"module 'landscape' has no attribute {name!r}")
    module_name, _, attribute = target.partition(":")
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})


if TYPE_CHECKING:  # what IDEs and type checkers see; keep in step with _PUBLIC (a test checks it)
    from landscape.analysis.pipeline import sharpness
    from landscape.connect.api import connect_checkpoints
    from landscape.data.datasets import DataSpec, digits_tensors, load_dataset
    from landscape.errors import CheckpointError, ConfigError, DataError, LandscapeError, ModelError
    from landscape.hessian.block_krylov import block_lanczos
    from landscape.hessian.eigen import top_eigenpairs
    from landscape.hessian.krylov import lanczos
    from landscape.hessian.operator import HessianOperator
    from landscape.hessian.spectral_density import slq
    from landscape.hessian.trace_estimation import trace
    from landscape.hessian.trace_hutchinson import hutchinson
    from landscape.hessian.trace_hutchpp import hutchpp
    from landscape.hessian.trace_xtrace import xtrace
    from landscape.measures.dispatch import compute_measures
    from landscape.models.builders import ModelSpec, build_model
    from landscape.models.checkpoints import load_checkpoint, load_model, save_checkpoint
    from landscape.objective.core import Objective
    from landscape.objective.loading import objective_from_checkpoint
    from landscape.optim.factory import make_optimizer
    from landscape.optim.sam import SAM
    from landscape.surface.directions import random_directions
    from landscape.surface.from_checkpoint import surface_from_checkpoint
    from landscape.surface.grid import compute_surface
    from landscape.training import TrainConfig, train
