"""What a "filter" is, per module type: the groups filter normalization rescales.

Li et al. (2018) normalize a random direction per *filter*: the weights that make one output unit of
a layer. Which axis of a weight tensor indexes the output units depends on the module that owns it,
not on the tensor's shape (GPT-2's ``Conv1D`` stores ``(in, out)``, a transposed convolution
``(in, out / groups, *kernel)``), so every parameter is classified by its owning module, found
through ``model.named_modules()``:

============================================  ==========================  =========================
module                                        parameter (shape)           one filter
============================================  ==========================  =========================
``nn.Linear`` (and subclasses, e.g. the       ``weight`` (out, in)        row ``i``: output unit i
``out_proj`` of ``nn.MultiheadAttention``)
``nn.Embedding``, ``nn.EmbeddingBag``         ``weight`` (num, dim)       row ``i``: the vector of
(token and position embeddings)                                           token / position ``i``
``nn.MultiheadAttention``                     ``in_proj_weight`` (3E, E)  row ``i``: one query, key
                                              ``q/k/v_proj_weight``       or value unit
``nn.Conv1d/2d/3d``                           ``weight`` (out, in/g, *k)  output channel ``i``
``nn.ConvTranspose1d/2d/3d``                  ``weight`` (in, out/g, *k)  output channel (dim 1,
                                                                          within its group)
Hugging Face ``Conv1D`` (GPT-2; detected by   ``weight`` (nx, nf) =       column ``j``: output
class name and its ``nf``/``nx``)             (in, out)                   unit j
embedding blocks holding raw tensors (class   any, ``dim > 1``, e.g.      vector ``i`` along the
name ending in ``Embeddings``: ViT's)         ``position_embeddings``     last axis: one position's
                                              (1, P, D), ``cls_token``    (the class token's) vector
norm layers (``LayerNorm``, ``GroupNorm``,    ``weight``, ``bias``        none: *norm* parameters
batch/instance norm, ``RMSNorm``, any class
whose name ends in ``Norm``)
any module                                    ``bias``, ``*_bias``,       none: *bias* parameters
                                              ``bias_k``, ``bias_v``
any other module                              ``dim > 1``                 slice ``i`` of dim 0
                                              ``dim <= 1``                none: *bias* parameters
============================================  ==========================  =========================

Bias and norm parameters are what ``ignore='biasbn'`` zeroes (whatever their number of dimensions:
a ``LayerNorm((4, 5))`` weight is a norm parameter, not 4 filters). A parameter shared by several
modules (tied weights: GPT-2's token embedding and output head) is one parameter, classified by its
first owner in ``named_modules()`` order (the module its ``named_parameters()`` name comes from).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

FILTERS = "filters"
BIAS = "bias"
NORM = "norm"
KINDS = (FILTERS, BIAS, NORM)

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.batchnorm._NormBase,
)  # RMSNorm and the rest: by class name
_ROW_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Bilinear, nn.Embedding, nn.EmbeddingBag)
_ATTENTION_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")


@dataclass(frozen=True)
class FilterSpec:
    """How one tensor splits into filters.

    Attributes:
        kind: ``filters`` (a weight made of output units), ``bias`` or ``norm`` (no filters: what
            ``ignore='biasbn'`` zeroes).
        axis: the axis of the output units, 0 or 1, or -1 for one filter per vector along the last
            axis (``filters`` only).
        groups: number of blocks dim 0 splits into when ``axis == 1`` (a grouped transposed
            convolution's input channels); 1 otherwise.
        module: the owning module's class name (for messages and records).
    """

    kind: str
    axis: int = 0
    groups: int = 1
    module: str = ""

    @property
    def has_filters(self) -> bool:
        """Whether the tensor is a weight made of output units (not a bias or norm parameter)."""
        return self.kind == FILTERS


def is_norm_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a normalization layer (torch's, or any class whose name ends in ``Norm``)."""
    return isinstance(module, _NORM_TYPES) or type(module).__name__.endswith("Norm")


def is_hf_conv1d(module: nn.Module) -> bool:
    """Whether ``module`` is Hugging Face's ``Conv1D``: a linear layer storing its weight ``(nx, nf)``.

    Detected by class name and its ``nf``/``nx`` attributes, so ``transformers`` is never imported.
    """
    if type(module).__name__ != "Conv1D":
        return False
    weight = getattr(module, "weight", None)
    nf, nx = getattr(module, "nf", None), getattr(module, "nx", None)
    if nx is None and isinstance(weight, torch.Tensor) and weight.dim() == 2:
        nx = weight.shape[0]  # older transformers releases keep only ``nf``
    return isinstance(weight, torch.Tensor) and tuple(weight.shape) == (nx, nf)


def _is_bias_name(local: str) -> bool:
    return local.startswith("bias") or local.endswith("_bias")


def shape_spec(t: torch.Tensor, module: str = "") -> FilterSpec:
    """The rule for a tensor whose module says nothing: dim 0 for ``dim > 1``, else a bias."""
    return FilterSpec(FILTERS, module=module) if t.dim() > 1 else FilterSpec(BIAS, module=module)


def module_spec(module: nn.Module, local: str, t: torch.Tensor) -> FilterSpec:
    """The filters of parameter ``local`` (its name inside ``module``) of ``module``.

    Args:
        module: the module that holds the parameter directly.
        local: the parameter's name in that module (``weight``, ``in_proj_weight``...).
        t: the parameter.

    Returns:
        Its :class:`FilterSpec` (see the module docstring's table).
    """
    name = type(module).__name__
    if is_norm_layer(module):
        return FilterSpec(NORM, module=name)
    if _is_bias_name(local) or t.dim() <= 1:
        return FilterSpec(BIAS, module=name)
    if local == "weight" and is_hf_conv1d(module):
        return FilterSpec(FILTERS, axis=1, module=name)
    if local == "weight" and isinstance(module, nn.modules.conv._ConvTransposeNd):
        return FilterSpec(FILTERS, axis=1, groups=int(module.groups), module=name)
    if local == "weight" and isinstance(module, (*_ROW_TYPES, nn.modules.conv._ConvNd)):
        return FilterSpec(FILTERS, module=name)
    if local in _ATTENTION_WEIGHTS and isinstance(module, nn.MultiheadAttention):
        return FilterSpec(FILTERS, module=name)
    if name.endswith("Embeddings"):  # Hugging Face's convention for a block of raw embedding tensors
        return FilterSpec(FILTERS, axis=-1, module=name)
    return shape_spec(t, name)


def filter_specs(model: nn.Module) -> dict[str, FilterSpec]:
    """Every parameter's :class:`FilterSpec`, by its ``named_parameters()`` name.

    A tied parameter (one tensor, several modules) appears once, under the name
    ``named_parameters()`` gives it, and is classified by that first owner.
    """
    first_owner: dict[int, tuple[nn.Module, str]] = {}
    for _, module in model.named_modules():
        for local, p in module.named_parameters(recurse=False):
            first_owner.setdefault(id(p), (module, local))
    return {n: module_spec(*first_owner[id(p)], p) for n, p in model.named_parameters()}


def specs_for(
    names: Iterable[str], tensors: Mapping[str, torch.Tensor], model: nn.Module | None
) -> dict[str, FilterSpec]:
    """The specs of ``names``: the model's where it has the parameter, else :func:`shape_spec`
    (batch-norm running statistics, or no model given)."""
    known = filter_specs(model) if model is not None else {}
    return {n: known[n] if n in known else shape_spec(tensors[n]) for n in names}


# -- filters as rows ----------------------------------------------------------------------------
def filter_rows(t: torch.Tensor, spec: FilterSpec) -> torch.Tensor:
    """``t`` as a matrix ``(filters, elements)``, one row per filter (a view when ``axis == 0``).

    With ``axis == 1``, dim 0 splits into ``groups`` blocks and filter ``(g, j)`` is
    ``t[g * n_g:(g + 1) * n_g, j]`` (``n_g = t.shape[0] / groups``), ordered by output channel.
    With ``axis == -1`` every vector along the last axis is a filter.
    """
    if spec.axis == 0:
        return t.reshape(t.shape[0], -1)
    if spec.axis == -1:
        return t.reshape(-1, t.shape[-1])
    g = spec.groups
    blocks = t.reshape(g, t.shape[0] // g, t.shape[1], -1).transpose(1, 2)
    return blocks.reshape(g * t.shape[1], -1)


def from_filter_rows(rows: torch.Tensor, spec: FilterSpec, shape: torch.Size) -> torch.Tensor:
    """The inverse of :func:`filter_rows`: a tensor of ``shape`` from its filter rows."""
    if spec.axis in (0, -1):
        return rows.reshape(shape)
    g = spec.groups
    blocks = rows.reshape(g, shape[1], shape[0] // g, -1).transpose(1, 2)
    return blocks.reshape(shape)


def filter_norms(t: torch.Tensor, spec: FilterSpec) -> torch.Tensor:
    """The Euclidean norm of every filter of ``t``."""
    return filter_rows(t, spec).norm(dim=1)
