"""The measure tests run on tiny float64 problems; threads would only contend with other workers."""

import torch

torch.set_num_threads(1)
