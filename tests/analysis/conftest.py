"""The sharpness pipeline's tests run tiny problems (fixtures in tests/conftest.py)."""

from __future__ import annotations

import torch

torch.set_num_threads(1)  # tiny problems: threads only contend with the other test workers
