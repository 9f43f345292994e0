"""How many CPU threads torch should use (no torch import: the command line decides before loading it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from landscape.errors import ConfigError


def choose_threads(
    requested: str | int, *, cores: int | None = None, load: float | None = None, env_set: bool | None = None
) -> int | None:
    """The number of torch CPU threads for ``requested`` (``'auto'`` or a count); ``None``: leave
    torch's own choice.

    ``'auto'`` keeps torch's choice when ``OMP_NUM_THREADS`` is set (the user has chosen) and
    otherwise takes the cores that other processes leave idle: ``cores - round(load)``, at least 1,
    where ``load`` is the one-minute load average. With more runnable threads than cores torch's
    threads wait for each other at every parallel region: on a loaded 2-core machine two threads
    ran ``sharpness`` 2.6-4.8x slower than one (``benchmarks/RESULTS.md``).

    Raises:
        ConfigError: a count below 1 or a word other than ``auto``.
    """
    if requested != "auto":
        try:
            count = int(requested)
        except (TypeError, ValueError):
            count = 0
        if count < 1 or str(count) != str(requested).strip():
            raise ConfigError(f"threads={requested!r} is not valid; use auto or a whole number >= 1")
        return count
    if env_set if env_set is not None else "OMP_NUM_THREADS" in os.environ:
        return None
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if load is None:
        if not hasattr(os, "getloadavg"):
            return None
        load = os.getloadavg()[0]
    return max(1, min(cores, cores - round(load)))


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch CPU threads (``None``: unchanged), restored afterwards.

    torch is imported here, not at module level, so that the command line can choose threads first.
    """
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads={threads!r} must be >= 1")
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
