"""Per-block spectra of the Hessian and the block-heterogeneity summary of Zhang et al. (2024).

A *block* is a set of parameter tensors; its spectrum is that of the principal sub-block
``H[b][:, b]`` of the Hessian (products differentiate only the block's tensors). For each block this
module finds the top eigenvalues (Lanczos) and the spectral density (SLQ), then compares the
densities: Zhang, Chen, Ding, Li, Sun & Luo (2024), *Why Transformers Need Adam: A Hessian
Perspective*, find that the blocks of a transformer (embeddings, attention, MLP, norms) have very
different spectra, unlike those of a CNN, and measure it by the Jensen-Shannon distance between the
blocks' densities. Here every density is evaluated on one shared grid with one shared smoothing
width (so they are comparable), discretized to probabilities ``p_i = phi(t_i) / sum_j phi(t_j)``, and

    JS(p, q) = sqrt( (KL(p || m) + KL(q || m)) / 2 ),   m = (p + q) / 2    (natural logarithm),

which lies in ``[0, sqrt(ln 2)]``; the summary is the mean over pairs of blocks.

Blocks come from glob patterns of parameter names (one block per pattern) or ``'auto'``: in a
transformer (a model with an attention module), one block per layer's attention, MLP (or other
sub-module) and norms, one for the embeddings and one for the norms outside the layers; in any
other model, one block per top-level module.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, ClassVar

import numpy as np
from torch import nn

from landscape.errors import ConfigError
from landscape.hessian.krylov import lanczos
from landscape.hessian.layer_blocks import block_operator
from landscape.hessian.results import SavedResult
from landscape.hessian.spectral_density import gaussian_density, slq
from landscape.objective.core import Objective
from landscape.progress import track

AUTO = "auto"
GRID_SIZE = 400
# the first numbered segment of a parameter name is the repeated layer (``transformer.h.0``)
_LAYER = re.compile(r"^(.*?\.\d+)\.")


def block_patterns(text: str) -> str | tuple[str, ...]:
    """``'auto'`` as it is; otherwise the comma-separated glob patterns of ``text``."""
    if text.strip() == AUTO:
        return AUTO
    return tuple(p.strip() for p in text.split(","))


def check_block_patterns(blocks: str | Sequence[str]) -> None:
    """Refuse anything but ``'auto'`` or a non-empty list of non-empty patterns.

    Raises:
        ConfigError: naming ``blocks``.
    """
    if blocks == AUTO:
        return
    ok = not isinstance(blocks, str) and len(blocks) > 0
    if not ok or any(not isinstance(p, str) or not p.strip() for p in blocks):
        raise ConfigError(
            f"blocks={blocks!r} is not valid; use 'auto' or glob patterns of parameter names "
            "such as ('transformer.h.0.attn.*', 'transformer.h.0.mlp.*')"
        )


def _is_norm(module: nn.Module | None) -> bool:
    return module is not None and "norm" in type(module).__name__.lower()


def _is_attention(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) or "attention" in type(module).__name__.lower()


def _is_embedding(path: str, module: nn.Module | None) -> bool:
    return isinstance(module, nn.Embedding) or any("embed" in part for part in path.split("."))


def _transformer_block(name: str, modules: dict[str, nn.Module]) -> str:
    """The auto block of parameter ``name`` in a transformer."""
    owner = name.rsplit(".", 1)[0] if "." in name else ""
    module = modules.get(owner)
    layer = _LAYER.match(name)
    if layer is None:
        if _is_norm(module):
            return "norms"
        return "embeddings" if _is_embedding(owner, module) else (owner or name)
    prefix = layer.group(1)
    if _is_norm(module):
        return f"{prefix}.norms"
    rest = name[len(prefix) + 1 :]
    return f"{prefix}.{rest.split('.', 1)[0]}" if "." in rest else prefix


def auto_blocks(model: nn.Module, names: Sequence[str]) -> dict[str, list[int]]:
    """Indices of ``names`` per automatic block (see the module docstring), in parameter order."""
    modules = dict(model.named_modules())
    transformer = any(_is_attention(m) for m in modules.values())
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        key = _transformer_block(name, modules) if transformer else name.split(".", 1)[0]
        groups.setdefault(key, []).append(i)
    return groups


def block_groups(model: nn.Module, names: Sequence[str], blocks: str | Sequence[str]) -> dict[str, list[int]]:
    """Indices of ``names`` per block: :func:`auto_blocks` or one block per glob pattern.

    Raises:
        ConfigError: a bad ``blocks`` or a pattern that matches no parameter.
    """
    check_block_patterns(blocks)
    if blocks == AUTO:
        return auto_blocks(model, names)
    groups: dict[str, list[int]] = {}
    for pattern in blocks:
        idx = [i for i, n in enumerate(names) if fnmatchcase(n, pattern.strip())]
        if not idx:
            raise ConfigError(
                f"blocks={pattern!r} matches no parameter; names look like {list(names[:3])!r} "
                "(use blocks='auto' or a glob such as 'prefix.*')"
            )
        groups[pattern.strip()] = idx
    return groups


@dataclass
class BlockEntry(SavedResult):
    """The spectrum of one block: its top eigenvalues and its SLQ quadrature.

    Attributes:
        name: the block (its pattern, or the automatic name).
        params: its parameter tensors.
        num_params: its dimension.
        eigenvalues: top eigenvalues of the block (most wanted first, as ``which``).
        residuals: their Ritz residuals.
        converged: whether each met the tolerance.
        nodes: ``(runs, m)`` SLQ quadrature nodes.
        weights: ``(runs, m)`` their weights.
        matvecs: products spent on this block.
    """

    name: str
    params: list[str]
    num_params: int
    eigenvalues: np.ndarray
    residuals: np.ndarray
    converged: list[bool]
    nodes: np.ndarray
    weights: np.ndarray
    matvecs: int

    _array_fields: ClassVar[tuple[str, ...]] = ("eigenvalues", "residuals", "nodes", "weights")


@dataclass
class BlockSpectra(SavedResult):
    """Per-block spectra and their Jensen-Shannon distances.

    Attributes:
        selection: ``'auto'`` or the glob patterns.
        which: ``which`` of the eigenvalues.
        blocks: one :class:`BlockEntry` per block.
        grid: the shared grid of the densities.
        densities: ``(B, G)`` each block's smoothed density on ``grid`` (integrates to 1).
        sigma: the shared Gaussian smoothing width.
        js_distance: ``(B, B)`` Jensen-Shannon distances (natural log) of the discretized densities.
        mean_js_distance: the mean over pairs ``i < j`` (``NaN`` for one block).
        matvecs: products over all blocks.
    """

    selection: Any
    which: str
    blocks: list[BlockEntry]
    grid: np.ndarray
    densities: np.ndarray
    sigma: float
    js_distance: np.ndarray
    mean_js_distance: float
    matvecs: int
    seconds: float = 0.0

    _array_fields: ClassVar[tuple[str, ...]] = ("grid", "densities", "js_distance")

    @property
    def names(self) -> list[str]:
        """The blocks' names, in order."""
        return [b.name for b in self.blocks]

    @classmethod
    def from_dict(cls, d: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> BlockSpectra:
        d = dict(d)
        d["blocks"] = [BlockEntry.from_dict(e) for e in d.get("blocks", [])]
        mean = d.get("mean_js_distance")
        d["mean_js_distance"] = float("nan") if mean is None else float(mean)
        return super().from_dict(d, arrays)


def _kl_to_mean(a: np.ndarray, b: np.ndarray) -> float:
    """``KL(a || (a + b) / 2) = sum a log(2a / (a + b))`` with ``0 log 0 = 0`` (written so that no
    halving of a tiny ``a`` rounds the mean to zero)."""
    held = a > 0
    return float(np.sum(a[held] * np.log(2 * a[held] / (a[held] + b[held]))))


def js_distances(densities: np.ndarray) -> np.ndarray:
    """``(B, B)`` Jensen-Shannon distances between the rows of ``densities`` (each discretized to
    probabilities; natural logarithm)."""
    p = np.asarray(densities, dtype=float)
    p = p / p.sum(axis=1, keepdims=True)
    out = np.zeros((p.shape[0], p.shape[0]))
    for i in range(p.shape[0]):
        for j in range(i + 1, p.shape[0]):
            div = 0.5 * (_kl_to_mean(p[i], p[j]) + _kl_to_mean(p[j], p[i]))
            out[i, j] = out[j, i] = math.sqrt(max(div, 0.0))  # rounding may leave -1e-17
    return out


def shared_densities(
    entries: Sequence[BlockEntry], grid_size: int = GRID_SIZE
) -> tuple[np.ndarray, np.ndarray, float]:
    """``(grid, densities, sigma)``: every block's quadrature smoothed by one width (1% of the span of
    all nodes) on one grid (that span plus ``5 sigma`` either side)."""
    lo = min(float(e.nodes.min()) for e in entries)
    hi = max(float(e.nodes.max()) for e in entries)
    sigma = 0.01 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 1e-3
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, grid_size)
    dens = np.vstack([gaussian_density(e.nodes, e.weights, grid, sigma) for e in entries])
    dens[dens < np.finfo(float).tiny] = 0.0  # subnormal tails: zero, so every ratio is finite
    return grid, dens, sigma


def block_spectra(
    objective: Objective,
    blocks: str | Sequence[str] = AUTO,
    *,
    top_k: int = 5,
    which: str = "LA",
    tol: float = 1e-6,
    max_matvecs: int | None = None,
    runs: int = 4,
    steps: int = 40,
    seed: int = 0,
    mode: str = "auto",
    hvp: str = "exact",
    quiet: bool = True,
) -> BlockSpectra:
    """Top eigenvalues and density of each block's Hessian, and the blocks' Jensen-Shannon distances.

    Args:
        objective: loss over fixed data.
        blocks: ``'auto'`` or glob patterns of parameter names (one block each; see
            :func:`block_groups`).
        top_k: eigenvalues per block (at most the block's size).
        which: ``'LA'``, ``'SA'`` or ``'LM'``.
        tol: Lanczos relative residual tolerance.
        max_matvecs: Lanczos budget per block.
        runs: SLQ runs per block.
        steps: Lanczos steps per SLQ run.
        seed: seed of the start vectors.
        mode: HVP mode.
        hvp: ``'exact'`` or ``'finite-difference'``.
        quiet: no progress bar.

    Returns:
        :class:`BlockSpectra`.
    """
    t0 = time.perf_counter()
    groups = block_groups(objective.model, objective.param_names, blocks)
    entries: list[BlockEntry] = []
    for name, idx in track(list(groups.items()), "per-block spectra", quiet=quiet):
        op = block_operator(objective, idx, mode=mode, hvp=hvp)
        k = min(top_k, op.shape[0])
        eig = lanczos(op, k, which=which, tol=tol, max_matvecs=max_matvecs, seed=seed, return_vectors=False)
        dens = slq(op, runs=runs, steps=steps, seed=seed)
        entries.append(
            BlockEntry(
                name=name,
                params=[objective.param_names[i] for i in idx],
                num_params=op.shape[0],
                eigenvalues=np.asarray(eig.eigenvalues, dtype=float),
                residuals=np.asarray(eig.residuals, dtype=float),
                converged=[bool(c) for c in eig.converged],
                nodes=dens.nodes,
                weights=dens.weights,
                matvecs=op.matvecs,
            )
        )
    grid, dens, sigma = shared_densities(entries)
    js = js_distances(dens)
    pairs = js[np.triu_indices(len(entries), 1)]
    return BlockSpectra(
        selection=blocks if isinstance(blocks, str) else list(blocks),
        which=which,
        blocks=entries,
        grid=grid,
        densities=dens,
        sigma=float(sigma),
        js_distance=js,
        mean_js_distance=float(pairs.mean()) if pairs.size else float("nan"),
        matvecs=sum(e.matvecs for e in entries),
        seconds=time.perf_counter() - t0,
    )
