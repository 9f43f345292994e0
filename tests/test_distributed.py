"""``landscape.distributed``: one process is a world of 1; two torchrun-like processes join, split, leave."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from landscape.distributed import (
    DistributedContext,
    all_gather_objects,
    my_share,
    process_group,
    rank_and_world_size,
)
from landscape.errors import ConfigError

WORLD = 2


def test_outside_torchrun_everything_is_rank_zero_of_one(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    with process_group("cpu") as ctx:
        assert ctx == DistributedContext(rank=0, world_size=1, device="cpu", created=False)
        assert ctx.shard is None and ctx.is_main
        assert not dist.is_initialized()
        assert rank_and_world_size() == (0, 1)
        assert all_gather_objects({"a": 1}, ctx.world_size) == [{"a": 1}]


@pytest.mark.parametrize("world", [1, 2, 3, 7], ids=lambda w: f"world{w}")
def test_shares_are_disjoint_cover_everything_and_differ_by_at_most_one(world):
    items = list(range(10))
    shares = [list(my_share(items, r, world)) for r in range(world)]
    assert sorted(sum(shares, [])) == items
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert shares[0][:2] == [0, world][: len(shares[0][:2])]


@pytest.mark.parametrize(
    ("rank", "world"), [(2, 2), (-1, 2), (0, 0)], ids=["rank-too-big", "negative", "empty"]
)
def test_bad_rank_is_refused_by_name(rank, world):
    with pytest.raises(ConfigError, match=r"rank=.* must be in 0\.\.world_size-1"):
        my_share([1, 2, 3], rank, world)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, port: int, out_dir: str) -> None:
    # what torchrun puts in each process's environment
    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(WORLD),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    with process_group("cpu") as ctx:
        inside = dist.is_initialized()
        share = list(my_share(list(range(5)), ctx.rank, ctx.world_size))
        gathered = all_gather_objects(share, ctx.world_size)
    record = {
        "rank": ctx.rank,
        "world": ctx.world_size,
        "shard": list(ctx.shard) if ctx.shard else None,
        "device": ctx.device,
        "created": ctx.created,
        "inside": inside,
        "after": dist.is_initialized(),
        "gathered": gathered,
    }
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(record))


@pytest.mark.slow
def test_two_processes_join_split_the_work_and_leave(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["rank"] == rank and got["world"] == WORLD and got["shard"] == [rank, WORLD]
        assert got["created"] and got["inside"] and not got["after"]
        assert got["device"] == "cpu"
        assert got["gathered"] == [[0, 2, 4], [1, 3]]
