"""The Hessian tests run tiny problems (fixtures ``mlp_problem``/``cnn_problem`` in tests/conftest.py)."""

from __future__ import annotations

import torch

torch.set_num_threads(1)  # tiny problems: threads only contend with the other test workers
