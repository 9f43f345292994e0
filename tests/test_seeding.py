"""Derived seeds: the historical values below the wrap, every value a valid torch seed, streams apart."""

from __future__ import annotations

import pytest
import torch

from landscape.seeding import SEED_STRIDE, derived_seed, offset_seed


@pytest.mark.parametrize(("seed", "epoch"), [(0, 0), (0, 7), (3, 1), (12345, 99)], ids=str)
def test_the_values_the_toolkit_has_always_used(seed, epoch):
    assert derived_seed(seed, epoch) == seed * 1_000_003 + epoch
    assert offset_seed(seed) == seed + 1_000_003
    assert derived_seed(seed) == seed


def test_keys_nest():
    assert derived_seed(2, 3, 4) == (2 * SEED_STRIDE + 3) * SEED_STRIDE + 4


def test_the_largest_user_seed_gives_a_seed_torch_takes():
    big = 2**63 - 1
    for value in (derived_seed(big, 5), derived_seed(big, 5, 6), offset_seed(big, 3)):
        assert 0 <= value < 2**64
        torch.Generator().manual_seed(value)  # raised "Overflow when unpacking long long" before the wrap
    assert derived_seed(big, 5) == (big * SEED_STRIDE + 5) % 2**64


def test_streams_of_nearby_seeds_and_epochs_differ():
    values = {derived_seed(s, e) for s in range(5) for e in range(50)}
    assert len(values) == 250
    draws = {
        float(torch.rand(1, generator=torch.Generator().manual_seed(derived_seed(0, e)))) for e in range(5)
    }
    assert len(draws) == 5
