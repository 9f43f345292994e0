"""Fingerprints of what an objective computes from: its weights and buffers, and every batch it sees."""

from __future__ import annotations

from landscape.io.digest import tensors_digest
from landscape.objective.core import Objective


def data_digest(objective: Objective) -> str:
    """SHA-256 of every batch (inputs and targets) the objective sees."""
    return tensors_digest(
        (f"{i}:{k}", t) for i, (x, y, _) in enumerate(objective.batches()) for k, t in (("x", x), ("y", y))
    )


def model_digest(objective: Objective) -> str:
    """SHA-256 of the model's whole state (parameters and buffers such as batch-norm statistics)."""
    return tensors_digest(objective.model.state_dict().items())
