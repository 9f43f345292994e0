"""scikit-learn's bundled 8x8 handwritten digits (real data, no download): registry name ``digits``."""

from __future__ import annotations

import torch

from landscape.data.common import check_split

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


def digits_tensors(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as ``x`` (N, 1, 8, 8) float32 in [0, 1] and ``y`` (N,) int64.

    A fixed seeded 80/20 split: 1438 training and 359 test images.
    """
    check_split(split)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    g = torch.Generator().manual_seed(DIGITS_SPLIT_SEED)
    perm = torch.randperm(len(y), generator=g)
    n_test = int(round(DIGITS_TEST_FRACTION * len(y)))
    idx = perm[n_test:] if split == "train" else perm[:n_test]
    idx, _ = torch.sort(idx)
    return x[idx].contiguous(), y[idx].contiguous()
