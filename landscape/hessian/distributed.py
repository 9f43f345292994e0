"""``torch.distributed`` set-up for the Hessian commands: one data shard per rank."""

from __future__ import annotations

import os

import torch


def shard_from_environment(device: torch.device | None = None) -> tuple[int, int] | None:
    """``(rank, world_size)`` when running under ``torchrun`` (initializing the process group from
    the environment if needed: NCCL for CUDA devices, gloo otherwise), else ``None``."""
    import torch.distributed as dist

    if not dist.is_available():
        return None
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return None
        backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
    world = dist.get_world_size()
    return (dist.get_rank(), world) if world > 1 else None
