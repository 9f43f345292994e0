"""Eval-mode batch norm folded into the convolution or linear layer before it, for curvature products.

In evaluation mode batch norm is a per-channel affine map with fixed statistics,
``bn(z) = gamma (z - mu) / sqrt(var + eps) + beta``. Applied to ``z = conv(x, W) + c`` it equals
``conv(x, s W) + (beta + s (c - mu))`` with ``s = gamma / sqrt(var + eps)`` scaling output channels: the
same function of ``(W, c, gamma, beta)``, so the same gradient and Hessian, but the normalization is
computed on the parameters (a few thousand numbers) instead of on the activations. A
reverse-over-reverse Hessian-vector product differentiates every operation twice, and batch norm's
double backward on activations is several full-size elementwise passes; folding removes them
(``benchmarks/bench_hvp.py``: on a 59k-parameter batch-norm CNN one product fell from 3.4-4.4x to
2.3x a gradient pass).

The model is traced with ``torch.fx``; a batch-norm call whose only input is the output of a
``Conv1d/2d/3d`` or ``Linear`` used by nothing else is replaced by one fused call. The parameters are
read from the original modules at every call (the traced module shares them), so in-place updates and
``torch.func.functional_call`` substitutions (same parameter names) keep working. Models that cannot be
traced, or have nothing to fold, are used as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx
from torch import nn

_FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass
class FoldedModel:
    """The model to differentiate: ``module`` (the fx-folded model, or the original) and what happened."""

    module: nn.Module
    pairs: list[tuple[str, str]]  # (layer, batch norm) names folded
    reason: str  # why nothing was folded ('' when pairs is non-empty)


def layer_batchnorm_eval(
    x: torch.Tensor, layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm
) -> torch.Tensor:
    """``bn(layer(x))`` for an eval-mode batch norm, with the normalization applied to the layer's
    weight and bias (output channels are the weight's first axis for both convolutions and linear)."""
    assert bn.running_var is not None and bn.running_mean is not None
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = bn.weight * scale
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    if layer.bias is not None:
        shift = shift + layer.bias * scale
    weight = layer.weight * scale.reshape(-1, *([1] * (layer.weight.dim() - 1)))
    if isinstance(layer, nn.Linear):
        return nn.functional.linear(x, weight, shift)
    return layer._conv_forward(x, weight, shift)  # type: ignore[operator]


def _foldable_pair(node: torch.fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """The layer name when ``node`` is an eval-mode batch norm fed only by a foldable layer's output."""
    bn = modules.get(str(node.target)) if node.op == "call_module" else None
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.running_mean is None:
        return None
    if len(node.args) != 1 or node.kwargs or not isinstance(node.args[0], torch.fx.Node):
        return None
    src = node.args[0]
    layer = modules.get(str(src.target)) if src.op == "call_module" else None
    if not isinstance(layer, _FOLDABLE) or len(src.users) != 1 or len(src.args) != 1 or src.kwargs:
        return None
    if bn.num_features != layer.weight.shape[0]:
        return None
    return str(src.target)


def fold_eval_batchnorm(model: nn.Module) -> FoldedModel:
    """Trace ``model`` and fold every eval-mode batch norm into the layer before it (see the module
    docstring). Only valid while batch norm normalizes with its running statistics."""
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return FoldedModel(model, [], "no batch norm")
    try:
        traced = torch.fx.symbolic_trace(model)
    except Exception as err:  # any user code may fail to trace; the model is then used as it is
        return FoldedModel(model, [], f"torch.fx cannot trace the model ({type(err).__name__})")
    modules = dict(traced.named_modules())
    graph = traced.graph
    pairs: list[tuple[str, str]] = []
    for node in list(graph.nodes):
        layer_name = _foldable_pair(node, modules)
        if layer_name is None:
            continue
        src = node.args[0]
        assert isinstance(src, torch.fx.Node)
        with graph.inserting_before(node):
            layer = graph.get_attr(layer_name)
            bn = graph.get_attr(str(node.target))
            fused = graph.call_function(layer_batchnorm_eval, (src.args[0], layer, bn))
        node.replace_all_uses_with(fused)
        graph.erase_node(node)
        graph.erase_node(src)
        pairs.append((layer_name, str(node.target)))
    if not pairs:
        return FoldedModel(model, [], "no batch norm directly after a convolution or linear layer")
    graph.lint()
    traced.recompile()
    return FoldedModel(traced, pairs, "")
