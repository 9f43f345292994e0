"""The MNIST-1D paper's models (Greydanus 2020, *Scaling down deep learning*, and its repository).

* :class:`MNIST1DMLP`: 40 -> 100 -> 100 -> 10 with ReLU; as in the paper's code the second hidden
  layer is residual, ``h2 = h1 + relu(W2 h1 + b2)`` (``residual=False`` gives the plain MLP).
  15,210 parameters.
* :class:`MNIST1DCNN`: three ``Conv1d`` layers of 25 channels with stride 2 and padding 1 (kernel
  sizes 5, 3, 3), ReLU after each, then a linear classifier on the flattened features. A length-40
  signal becomes 19, 10 and 5 positions (``L_out = floor((L + 2 p - k) / s) + 1``), so the head sees
  ``25 * 5 = 125`` features. 5,210 parameters.

The paper's table (test accuracy, 4000 training examples): logistic regression 32%, MLP 68%, CNN 94%,
GRU 91%, human 96%. Inputs are ``(N, 40)``; the CNN also takes ``(N, 1, 40)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from landscape.errors import ModelError


class MNIST1DMLP(nn.Module):
    """The paper's MLP: two hidden ReLU layers, the second one residual.

    Args:
        in_features: signal length (40).
        hidden: width of both hidden layers (100).
        num_classes: 10.
        residual: add the first hidden layer's output to the second's (the paper's code does).
    """

    def __init__(
        self, in_features: int = 40, hidden: int = 100, num_classes: int = 10, residual: bool = True
    ) -> None:
        super().__init__()
        self.residual = bool(residual)
        self.linear1 = nn.Linear(in_features, hidden)
        self.linear2 = nn.Linear(hidden, hidden)
        self.linear3 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.linear1(torch.flatten(x, 1)))
        h2 = torch.relu(self.linear2(h))
        return self.linear3(h + h2 if self.residual else h2)


def conv_output_length(length: int, kernel: int, stride: int, padding: int) -> int:
    """``floor((length + 2 padding - kernel) / stride) + 1``: positions after a ``Conv1d``."""
    return (length + 2 * padding - kernel) // stride + 1


class MNIST1DCNN(nn.Module):
    """The paper's 1-D CNN: ``conv(k5) -> conv(k3) -> conv(k3)`` (stride 2, padding 1), then linear.

    Args:
        length: signal length (40).
        channels: channels of every conv layer (25).
        num_classes: 10.
        kernels: kernel sizes of the three layers ((5, 3, 3)).
    """

    def __init__(
        self,
        length: int = 40,
        channels: int = 25,
        num_classes: int = 10,
        kernels: Sequence[int] = (5, 3, 3),
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin, positions = 1, int(length)
        for k in kernels:
            layers += [nn.Conv1d(cin, channels, int(k), stride=2, padding=1), nn.ReLU()]
            cin, positions = channels, conv_output_length(positions, int(k), 2, 1)
        if positions < 1:
            raise ModelError(f"length={length} is too short for kernels {tuple(kernels)} with stride 2")
        self.length = int(length)
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels * positions, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # (N, L) signals: add the single input channel
            x = x.unsqueeze(1)
        return self.head(torch.flatten(self.features(x), 1))
