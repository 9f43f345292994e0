"""Seeds derived from the user's one seed, so every random stream is reproducible from it.

One seed (``--seed``, recorded in every result) must drive several independent streams: the data
order of each epoch, dropout, the second direction of a plane. Each stream gets its own seed,
``seed * SEED_STRIDE + key``; the stride is a prime above any epoch count, so the streams of two
nearby user seeds never coincide (seed 0 epoch 5 vs seed 1 epoch 5 differ by the stride). Results
wrap modulo 2**64, the range ``torch.Generator.manual_seed`` takes, so a seed up to 2**63-1 never
overflows; below the wrap the values are the ones the toolkit has always used.
"""

from __future__ import annotations

SEED_STRIDE = 1_000_003  # a prime; larger than any number of epochs or directions
_SEED_RANGE = 2**64


def derived_seed(seed: int, *keys: int) -> int:
    """The seed of the stream ``keys`` under the user's ``seed``: ``seed * SEED_STRIDE + key`` per key.

    ``derived_seed(seed, epoch)`` seeds epoch ``epoch``'s shuffle; more keys nest
    (``derived_seed(seed, epoch, step)``). Without keys it is ``seed`` itself.
    """
    value = int(seed) % _SEED_RANGE
    for key in keys:
        value = (value * SEED_STRIDE + int(key)) % _SEED_RANGE
    return value


def offset_seed(seed: int, offset: int = 1) -> int:
    """``seed + offset * SEED_STRIDE``: a second stream beside ``seed`` itself (e.g. the second
    direction of a plane whose first direction is drawn from ``seed``)."""
    return (int(seed) + int(offset) * SEED_STRIDE) % _SEED_RANGE
