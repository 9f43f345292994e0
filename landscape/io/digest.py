"""Content digests: what a resumable result is fingerprinted with (weights, data, settings)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from landscape.io.jsonio import json_default


def tensors_digest(tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """SHA-256 of names, shapes, dtypes and bytes: changes whenever any value changes."""
    h = hashlib.sha256()
    for name, t in tensors:
        c = t.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(c.shape)}|{c.dtype}|".encode())
        h.update(c.reshape(-1).view(torch.uint8).numpy().tobytes() if c.numel() else b"")
    return h.hexdigest()


def weights_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """:func:`tensors_digest` of a checkpoint's state dict as stored: which weights a result was
    computed from, whatever device or precision it was computed in."""
    return tensors_digest(state_dict.items())


def settings_digest(parts: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a settings dictionary."""
    text = json.dumps(parts, sort_keys=True, default=json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
