"""Two processes (gloo, CPU), each with a shard of the batches, match one process."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from landscape.analysis import sharpness
from landscape.hessian import HessianOperator, top_eigenpairs
from landscape.hessian.testing import digits, make_mlp
from landscape.objective.core import Objective

WORLD = 2


def _compute(shard: tuple[int, int] | None) -> dict[str, torch.Tensor]:
    obj = Objective(make_mlp(), digits(90), batch_size=25, dtype=torch.float64, shard=shard)  # 25,25,25,15
    V = torch.randn(obj.num_params, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eig = top_eigenpairs(obj, 2, tol=1e-10)
    res = sharpness(obj, top_k=1, tol=1e-10, trace_matvecs=12, with_trace=True, seed=1)
    return {
        "hv": HessianOperator(obj, mode="fwd-rev") @ V,
        "hv_rev": HessianOperator(obj, mode="rev-rev") @ V,
        "eig": torch.from_numpy(eig.eigenvalues),
        "vec": eig.vectors if eig.vectors is not None else torch.zeros(0),
        "trace": torch.tensor([res.trace.estimate if res.trace else 0.0]),
    }


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.save(_compute((rank, WORLD)), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    ref = _compute(None)
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(got["hv"], ref["hv"], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(got["hv_rev"], ref["hv"], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got["eig"].numpy(), ref["eig"].numpy(), rtol=1e-9)
        # same start vector and the same reduced products: the same eigenvectors up to sign
        cos = (got["vec"] * ref["vec"]).sum(0).abs()
        torch.testing.assert_close(cos, torch.ones(2, dtype=torch.float64), atol=1e-8, rtol=0)
        assert got["trace"].item() == pytest.approx(ref["trace"].item(), rel=1e-9)


def _env() -> dict[str, str]:
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    env["PYTHONPATH"] = str(repo) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.slow
def test_torchrun_sharpness_command_matches_one_process(tmp_path: Path) -> None:
    """``landscape sharpness`` under torchrun joins the group through landscape.distributed: same numbers."""
    import json
    import subprocess
    import sys

    from landscape.data.datasets import DataSpec
    from landscape.models.builders import ModelSpec, build_model
    from landscape.models.checkpoints import save_checkpoint

    torch.manual_seed(0)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(
        ckpt,
        build_model("mlp", hidden=[8]),
        model_spec=ModelSpec("mlp", {"hidden": [8]}),
        data_spec=DataSpec("digits"),
    )
    args = ["sharpness", str(ckpt), "--samples", "96", "--batch-size", "32", "--device", "cpu"]
    args += ["--dtype", "float64", "--top-k", "2", "--tol", "1e-10", "--json", "-q"]
    one = subprocess.run(
        [sys.executable, "-m", "landscape", *args], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "landscape",
        ]
        + args,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    ref, got = json.loads(one.stdout), json.loads(two.stdout)  # rank 0 alone prints
    assert ref["world_size"] == 1 and got["world_size"] == 2
    np.testing.assert_allclose(got["eigenvalues"], ref["eigenvalues"], rtol=1e-8)
