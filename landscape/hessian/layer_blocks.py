"""Curvature of each parameter tensor (or module): the diagonal blocks ``H_gg`` of the Hessian.

For a group ``g`` of parameters, the top eigenvalue of ``H_gg`` comes from Lanczos on the restricted
operator (HVPs differentiate only the group's tensors). All traces come from *one* Hutchinson run on
the full Hessian: for a Rademacher ``z``, ``E[z_g^T (H z)_g] = tr(H_gg)`` because the off-diagonal
blocks meet independent signs, so every group's trace shares the same products.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch

from landscape.errors import check_choice
from landscape.hessian.krylov import lanczos
from landscape.hessian.operator import HessianOperator, rademacher
from landscape.hessian.results import LayerEntry, PerLayerResult
from landscape.objective.core import Objective
from landscape.progress import track

GROUP_BY = ("param", "module")


def parameter_groups(names: Sequence[str], group_by: str = "param") -> dict[str, list[int]]:
    """Indices of ``names`` per group: each tensor (``param``) or its owning module (``module``)."""
    check_choice("group_by", group_by, GROUP_BY)
    groups: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        key = n if group_by == "param" else (n.rsplit(".", 1)[0] if "." in n else n)
        groups.setdefault(key, []).append(i)
    return groups


def tied_names(model: torch.nn.Module) -> dict[str, list[str]]:
    """``name -> [other names of the same tensor]`` for every tensor the model uses under several
    names (``named_parameters()`` lists a tied tensor once, under its first name)."""
    by_tensor: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        by_tensor.setdefault(id(p), []).append(name)
    return {names[0]: names[1:] for names in by_tensor.values() if len(names) > 1}


def block_operator(
    objective: Objective, indices: Sequence[int], *, mode: str = "auto", hvp: str = "exact"
) -> HessianOperator:
    """The operator of the diagonal block ``H_gg`` of the tensors ``indices`` (products differentiate
    only those tensors); the data was checked by the caller's full operator."""
    return HessianOperator(objective, mode=mode, param_indices=indices, allow_nondeterministic=True, hvp=hvp)


def per_layer(
    objective: Objective,
    *,
    group_by: str = "param",
    tol: float = 1e-4,
    max_matvecs: int | None = None,
    trace_matvecs: int = 64,
    seed: int = 0,
    mode: str = "auto",
    hvp: str = "exact",
    allow_nondeterministic: bool = False,
    quiet: bool = True,
) -> PerLayerResult:
    """Top eigenvalue and trace of the Hessian block of each parameter tensor or module.

    Args:
        objective: loss over fixed data.
        group_by: ``'param'`` (one block per tensor) or ``'module'`` (tensors of one module together).
        tol: Lanczos relative residual tolerance of each block's top eigenvalue.
        max_matvecs: Lanczos budget per block.
        trace_matvecs: Rademacher probes of the shared Hutchinson run.
        seed: seed of the start vectors and probes.
        mode: HVP mode.
        hvp: ``'exact'`` or ``'finite-difference'`` (:class:`~landscape.hessian.operator.HessianOperator`).
        allow_nondeterministic: skip the determinism check.
        quiet: no progress bar.

    Returns:
        :class:`PerLayerResult` with one :class:`LayerEntry` per group (in parameter order).
    """
    t0 = time.perf_counter()
    groups = parameter_groups(objective.param_names, group_by)
    full = HessianOperator(objective, mode=mode, allow_nondeterministic=allow_nondeterministic, hvp=hvp)
    n = full.shape[0]
    gen = torch.Generator().manual_seed(int(seed))
    offsets = [0]
    for s in full.sizes:
        offsets.append(offsets[-1] + s)
    samples: dict[str, list[torch.Tensor]] = {g: [] for g in groups}
    done = 0
    while done < trace_matvecs:
        b = min(full.block_size, trace_matvecs - done)
        Z = rademacher(n, b, generator=gen, dtype=full.dtype, device=full.device)
        prod = Z * (full @ Z)
        for g, idx in groups.items():
            rows = torch.cat([torch.arange(offsets[i], offsets[i + 1]) for i in idx]).to(prod.device)
            samples[g].append(prod[rows].sum(dim=0).double().cpu())
        done += b
    entries: list[LayerEntry] = []
    matvecs = full.matvecs
    tied = tied_names(objective.model)
    for g, idx in track(list(groups.items()), "per-layer top eigenvalues", quiet=quiet):
        op = block_operator(objective, idx, mode=mode, hvp=hvp)
        res = lanczos(op, 1, which="LA", tol=tol, max_matvecs=max_matvecs, seed=seed, return_vectors=False)
        s = torch.cat(samples[g])
        matvecs += op.matvecs
        entries.append(
            LayerEntry(
                name=g,
                params=[objective.param_names[i] for i in idx],
                num_params=op.shape[0],
                top_eigenvalue=float(res.eigenvalues[0]),
                residual=float(res.residuals[0]),
                converged=bool(res.converged[0]),
                trace=float(s.mean()),
                trace_stderr=float(s.std()) / math.sqrt(s.numel()) if s.numel() > 1 else float("inf"),
                matvecs=op.matvecs,
                tied_to=[t for i in idx for t in tied.get(objective.param_names[i], [])],
            )
        )
    return PerLayerResult(
        group_by=group_by,
        layers=entries,
        matvecs=matvecs,
        trace_samples=trace_matvecs,
        seconds=time.perf_counter() - t0,
    )
