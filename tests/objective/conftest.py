"""The objective tests run tiny problems; the transformer cases live in ``transformer_cases.py``."""

from __future__ import annotations

import torch

torch.set_num_threads(1)  # tiny problems: threads only contend with the other test workers
