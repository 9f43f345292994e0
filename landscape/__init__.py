"""landscape: loss-landscape geometry for PyTorch."""

from landscape.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    LandscapeError,
    ModelError,
    NonDeterministicDataError,
    ResultFileError,
)
from landscape.io.data import DataSpec, digits_tensors, load_dataset
from landscape.io.models import ModelSpec, build_model, count_parameters
from landscape.objective import Evaluation, Objective

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DataSpec",
    "Evaluation",
    "LandscapeError",
    "ModelError",
    "ModelSpec",
    "NonDeterministicDataError",
    "Objective",
    "ResultFileError",
    "__version__",
    "build_model",
    "count_parameters",
    "digits_tensors",
    "load_dataset",
]
