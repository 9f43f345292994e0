"""Transformer tests: a user's factory module (``tf_factories``) importable as the CLI would import it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)  # ``--model tf_factories:gpt2`` resolves as a user's module on sys.path


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only contend with the other test workers
    yield
    torch.set_num_threads(previous)
