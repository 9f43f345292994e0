"""Fingerprints of what an objective computes from: its weights and buffers, and every batch it sees."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from landscape.io.digest import tensors_digest
from landscape.objective.core import Objective
from landscape.objective.inputs import input_tensors


def _batch_tensors(objective: Objective) -> Iterator[tuple[str, torch.Tensor]]:
    """``('i:x', x), ('i:y', y)`` per batch; dict inputs as ``('i:x.KEY', tensor)`` in key order."""
    for i, (x, y, _) in enumerate(objective.batches()):
        for key, t in input_tensors(x):
            yield (f"{i}:x.{key}" if key else f"{i}:x"), t
        yield f"{i}:y", y


def data_digest(objective: Objective) -> str:
    """SHA-256 of every batch (inputs and targets) the objective sees."""
    return tensors_digest(_batch_tensors(objective))


def model_digest(objective: Objective) -> str:
    """SHA-256 of the model's whole state (parameters and buffers such as batch-norm statistics)."""
    return tensors_digest(objective.model.state_dict().items())
