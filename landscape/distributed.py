"""``torchrun`` in one place: detect it, join and leave the process group, and split work by rank.

``torchrun`` starts one process per rank with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the
rendezvous address in the environment. :func:`process_group` joins the group from there (NCCL on
CUDA, gloo otherwise; each rank takes ``cuda:LOCAL_RANK``), yields a :class:`DistributedContext`,
and leaves the group again if it was the one that joined it. Surfaces split the grid points
(:func:`my_share`), the Hessian commands split the data (``Objective(shard=context.shard)``).
Outside ``torchrun`` everything is a no-op with rank 0 of a world of 1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch

from landscape.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly one-process) job.

    Attributes:
        rank: this process's rank, ``0 .. world_size - 1``.
        world_size: number of processes (1 outside ``torchrun``).
        device: the device spec this rank computes on (``cuda:LOCAL_RANK`` under ``torchrun`` on CUDA,
            else the one asked for).
        created: this context joined the process group (and leaves it at the end).
    """

    rank: int = 0
    world_size: int = 1
    device: str = "auto"
    created: bool = False

    @property
    def shard(self) -> tuple[int, int] | None:
        """``(rank, world_size)`` for ``Objective(shard=...)`` when there are several ranks, else ``None``."""
        return (self.rank, self.world_size) if self.world_size > 1 else None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether the environment describes a job of more than one process (``WORLD_SIZE > 1``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def environment_rank() -> int:
    """``RANK`` from the environment (0 outside ``torchrun``); readable before the group is joined."""
    return int(os.environ.get("RANK", "0"))


def rank_and_world_size() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialized process group, ``(0, 1)`` when there is none."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _rank_device(device: str, use_cuda: bool) -> str:
    """The device of this rank: one GPU per local rank on CUDA, the CPU for ``auto`` without CUDA."""
    if use_cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(torch.device(device))
    elif device == "auto":
        device = "cpu"
    return device


def join_process_group(device: str = "auto") -> DistributedContext:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1`` (a no-op otherwise).

    An already initialized group (a caller's own ``init_process_group``) is used as it is.

    Args:
        device: ``auto|cpu|cuda[:N]|mps``; under ``torchrun`` a CUDA request becomes
            ``cuda:LOCAL_RANK``, ``auto`` without CUDA becomes ``cpu``.

    Returns:
        The context; ``created`` says this call initialized the group (the caller destroys it).
    """
    import torch.distributed as dist

    if not dist.is_available() or not (dist.is_initialized() or launched_by_torchrun()):
        return DistributedContext(device=device)
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if launched_by_torchrun():
        device = _rank_device(device, use_cuda)
    if dist.is_initialized():
        return DistributedContext(dist.get_rank(), dist.get_world_size(), device, False)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), device, True)


def leave_process_group(context: DistributedContext) -> None:
    """Destroy the group ``context`` created, after every rank has reached this point."""
    if not context.created:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        # a rank that left early would abort the other ranks' gloo connections mid-collective
        dist.barrier()
        dist.destroy_process_group()


@contextmanager
def process_group(device: str = "auto") -> Iterator[DistributedContext]:
    """:func:`join_process_group` for the duration of a block; every rank leaves the group together.

    Example:
        >>> with process_group("auto") as ctx:   # doctest: +SKIP
        ...     objective = Objective(model, data, shard=ctx.shard, device=ctx.device)
    """
    context = join_process_group(device)
    try:
        yield context
    finally:
        leave_process_group(context)


def my_share(items: Sequence[T], rank: int, world_size: int) -> Sequence[T]:
    """Every ``world_size``-th item starting at ``rank`` (round robin, so shares differ by at most one)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank={rank} must be in 0..world_size-1 (world_size={world_size})")
    return items[rank::world_size]


def all_gather_objects(value: T, world_size: int) -> list[T]:
    """Every rank's ``value``, in rank order (just ``[value]`` for one process)."""
    if world_size == 1:
        return [value]
    import torch.distributed as dist

    gathered: list[T] = [None] * world_size  # type: ignore[list-item]
    dist.all_gather_object(gathered, value)
    return gathered
