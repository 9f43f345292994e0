"""Weight matching (Ainsworth et al. 2023, "Git Re-Basin", Sec. 3.2): permute B's hidden units onto A's.

A network's function does not change when the hidden units of a layer are permuted together with
the rows of the layer that makes them and the columns of the layers that read them. Which tensor
axes move together (a *permutation group*) is found by tracing the model with ``torch.fx``: every
``Linear``/``Conv2d`` output opens a group; batch norm, elementwise activations, pooling, flatten and
dropout carry their input's group; a residual addition ``a + b`` merges the groups of ``a`` and ``b``;
the input and the output are fixed. Anything else is refused with one line naming the layer.

Attention models (``nn.MultiheadAttention``, ``nn.TransformerEncoder``, Hugging Face GPT-2, BERT,
ViT...) are refused up front, naming the attention module found, before any tracing: aligning them
needs the heads permuted as groups (units move only within a head, heads move as wholes, queries
and keys together), the residual stream as one permutation shared by every block with its
LayerNorms, and embeddings; none of that is implemented, and tracing them fails inside ``torch.fx``
anyway. So are models with tied parameters (one tensor under two names, e.g. GPT-2's embedding and
output head): each name would get its own permutation of the one tensor.

Weight matching maximizes ``sum_l <W_l^A, P_l W_l^B P_{l-1}^T>`` over permutations by coordinate
ascent: for one group ``P`` at a time, with the others fixed, the objective is linear in ``P``,

    ``S[i, j] = sum_{tensors t touching P} <A_t[i, ...], B'_t[j, ...]>``

(``B'`` has every other group's current permutation applied), and ``P`` is the linear assignment
maximizing ``sum_i S[i, perm[i]]`` (``scipy.optimize.linear_sum_assignment``). Groups are visited in
a seeded random order, sweeps repeat until none improves.

Convention: ``perm[i] = j`` means unit ``i`` of the aligned B is unit ``j`` of B, i.e.
``aligned[..., i, ...] = B[..., perm[i], ...]`` along every axis of the group.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from landscape.errors import ModelError

FIXED = 0  # the group of the input and the output: never permuted


class AlignmentError(ModelError):
    """The architecture has an operation weight matching cannot permute through."""


@dataclass
class PermutationSpec:
    """Which axes of which tensors move with which permutation group.

    Attributes:
        sizes: group id -> number of units.
        axes: tensor name -> list of ``(axis, group, factor)``; ``factor > 1`` when a flattened
            feature map feeds a ``Linear`` (each channel owns ``factor`` consecutive inputs).
        layers: group id -> the layer that opened it (for messages).
    """

    sizes: dict[int, int]
    axes: dict[str, list[tuple[int, int, int]]]
    layers: dict[int, str] = field(default_factory=dict)


@dataclass
class _Value:
    """What the tracer knows of a tensor: the group of its channel axis and its layout."""

    group: int
    layout: str  # "input" | "conv" (N, C, H, W) | "flat" (N, C) | "flat-spatial" (flattened map)


_PASS_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Mish,
    nn.Hardtanh,
    nn.Identity,
    nn.Dropout,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
_PASS_FUNCTIONS: tuple[Any, ...] = (
    torch.relu,
    torch.tanh,
    torch.sigmoid,
    F.relu,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.gelu,
    F.silu,
    F.softplus,
    F.mish,
    F.hardtanh,
    F.dropout,
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
)
_PASS_METHODS = ("relu", "tanh", "sigmoid", "contiguous")
_SUPPORTED = (
    "Linear, Conv2d (groups=1), BatchNorm1d/2d, elementwise activations, pooling, flatten, dropout "
    "and residual additions"
)


class _Tracer:
    """Walks an fx graph and records the permutation groups (union-find over group ids)."""

    def __init__(self, model: nn.Module) -> None:
        try:
            self.graph_module = torch.fx.symbolic_trace(model)
        except Exception as exc:  # user forward code can fail to trace in any way (control flow, ...)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AlignmentError(
                f"weight matching needs a model torch.fx can trace; tracing {type(model).__name__} failed: {first}"
            ) from None
        self.modules = dict(self.graph_module.named_modules())
        self.parent: dict[int, int] = {FIXED: FIXED}
        self.sizes: dict[int, int] = {}
        self.layers: dict[int, str] = {}
        self.entries: list[tuple[str, int, int, str]] = []  # (tensor, axis, group, layer)
        self.values: dict[torch.fx.Node, _Value | None] = {}
        self.used: set[str] = set()

    # -- union-find ---------------------------------------------------------------------------
    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int, where: str) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if FIXED in (ra, rb):
            self.parent[rb if ra == FIXED else ra] = FIXED
            return FIXED
        if self.sizes[ra] != self.sizes[rb]:
            raise AlignmentError(
                f"cannot align {where}: it adds {self.sizes[ra]} and {self.sizes[rb]} channels"
            )
        self.parent[rb] = ra
        return ra

    def new_group(self, size: int, layer: str) -> int:
        g = len(self.parent)
        self.parent[g] = g
        self.sizes[g] = size
        self.layers[g] = layer
        return g

    # -- walking ------------------------------------------------------------------------------
    def value(self, arg: Any, where: str) -> _Value:
        if not isinstance(arg, torch.fx.Node):
            raise AlignmentError(f"cannot align {where}: its input is not a traced tensor")
        v = self.values.get(arg)
        if v is None:
            raise AlignmentError(f"cannot align {where}: its input {arg.name!r} is not a feature tensor")
        return v

    def param(self, layer: str, pname: str, axis: int, group: int) -> None:
        self.entries.append((f"{layer}.{pname}" if layer else pname, axis, group, layer))

    def weight_layer(self, layer: str, outputs: int, inp: _Value, has_bias: bool, layout: str) -> _Value:
        """A linear or convolution layer: a new group of ``outputs`` units permutes the weight's rows
        (and the bias); the input's group permutes its columns (input channels)."""
        g = self.new_group(outputs, layer)
        self.param(layer, "weight", 0, g)
        self.param(layer, "weight", 1, inp.group)
        if has_bias:
            self.param(layer, "bias", 0, g)
        return _Value(g, layout)

    def run(self) -> PermutationSpec:
        for node in self.graph_module.graph.nodes:
            self.values[node] = self.visit(node)
        return self.spec()

    def visit(self, node: torch.fx.Node) -> _Value | None:
        if node.op == "placeholder":
            return _Value(FIXED, "input")
        if node.op == "output":
            for leaf in _leaves(node.args):
                v = self.values.get(leaf)
                if v is not None:
                    self.union(v.group, FIXED, "the output")
            return None
        if node.op == "call_module":
            return self.visit_module(node)
        if node.op == "call_function":
            return self.visit_function(node, node.target, _name(node.target))
        if node.op == "call_method":
            return self.visit_method(node)
        # get_attr: a parameter read directly in forward, outside any layer we can follow
        raise AlignmentError(
            f"cannot align tensor {node.target!r}: it is used directly in forward, not through a layer "
            f"(supported: {_SUPPORTED})"
        )

    def visit_module(self, node: torch.fx.Node) -> _Value | None:
        name = str(node.target)
        mod = self.modules[name]
        where = f"layer {name!r} ({type(mod).__name__})"
        if any(True for _ in mod.parameters(recurse=False)) or isinstance(
            mod, nn.modules.batchnorm._BatchNorm
        ):
            if name in self.used:
                raise AlignmentError(f"cannot align {where}: it is called more than once (shared weights)")
            self.used.add(name)
        if isinstance(mod, nn.Linear):
            inp = self.value(node.args[0], where)
            if inp.layout == "conv":
                raise AlignmentError(
                    f"cannot align {where}: it reads a convolutional feature map without flatten"
                )
            return self.weight_layer(name, mod.out_features, inp, mod.bias is not None, "flat")
        if isinstance(mod, nn.Conv2d):
            inp = self.value(node.args[0], where)
            if inp.layout.startswith("flat"):
                raise AlignmentError(f"cannot align {where}: it reads a flattened tensor")
            if mod.groups != 1:
                raise AlignmentError(
                    f"cannot align {where}: grouped convolutions (groups={mod.groups}) are not supported"
                )
            return self.weight_layer(name, mod.out_channels, inp, mod.bias is not None, "conv")
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            inp = self.value(node.args[0], where)
            for pname in ("weight", "bias", "running_mean", "running_var"):
                if getattr(mod, pname, None) is not None:
                    self.param(name, pname, 0, inp.group)
            return inp
        if isinstance(mod, nn.Flatten):
            return self.flatten(self.value(node.args[0], where), mod.start_dim, mod.end_dim, where)
        if isinstance(mod, _PASS_MODULES):
            return self.value(node.args[0], where)
        raise AlignmentError(f"cannot align {where}: weight matching supports {_SUPPORTED}")

    def flatten(self, inp: _Value, start: Any, end: Any, where: str) -> _Value:
        if start != 1 or end not in (-1, None):
            raise AlignmentError(f"cannot align {where}: only flatten from dimension 1 is supported")
        return _Value(inp.group, "flat-spatial" if inp.layout in ("conv", "input") else inp.layout)

    def visit_function(self, node: torch.fx.Node, fn: Any, label: str) -> _Value | None:
        where = f"operation {node.name!r} ({label})"
        tensors = [a for a in node.args if isinstance(a, torch.fx.Node) and self.values.get(a) is not None]
        if fn is getattr:
            return None  # x.shape and the like: not a feature tensor
        if fn in (operator.add, torch.add, operator.sub, torch.sub):
            if not tensors:
                return None
            vals = [self.value(a, where) for a in tensors]
            g = vals[0].group
            for v in vals[1:]:
                if v.layout != vals[0].layout and "input" not in (v.layout, vals[0].layout):
                    raise AlignmentError(f"cannot align {where}: it adds tensors of different layouts")
                g = self.union(g, v.group, where)
            return _Value(g, vals[0].layout)
        if fn in (operator.mul, operator.truediv, torch.mul) and len(tensors) == 1:
            return self.value(tensors[0], where)  # scaling by a constant
        if fn is torch.flatten:
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            return self.flatten(self.value(node.args[0], where), start, end, where)
        if fn in _PASS_FUNCTIONS:
            return self.value(node.args[0], where)
        raise AlignmentError(f"cannot align {where}: weight matching supports {_SUPPORTED}")

    def visit_method(self, node: torch.fx.Node) -> _Value | None:
        method = str(node.target)
        where = f"operation {node.name!r} (Tensor.{method})"
        if method in ("size", "dim"):
            return None
        if method in _PASS_METHODS:
            return self.value(node.args[0], where)
        if method == "flatten":
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            return self.flatten(self.value(node.args[0], where), start, end, where)
        if method in ("view", "reshape") and len(node.args) == 3 and node.args[2] == -1:
            return self.flatten(self.value(node.args[0], where), 1, -1, where)  # x.view(x.size(0), -1)
        raise AlignmentError(f"cannot align {where}: weight matching supports {_SUPPORTED}")

    def spec(self) -> PermutationSpec:
        sd = self.graph_module.state_dict()
        axes: dict[str, list[tuple[int, int, int]]] = {}
        sizes: dict[int, int] = {}
        layers: dict[int, str] = {}
        for tname, axis, group, layer in self.entries:
            root = self.find(group)
            if root == FIXED:
                continue
            size = self.sizes[root]
            dim = sd[tname].shape[axis]
            if dim % size != 0:
                raise AlignmentError(
                    f"cannot align layer {layer!r}: its axis {axis} has {dim} entries for {size} channels"
                )
            axes.setdefault(tname, []).append((axis, root, dim // size))
            sizes[root] = size
            layers[root] = self.layers[root]
        return PermutationSpec(sizes=sizes, axes=axes, layers=layers)


def _leaves(obj: Any) -> list[torch.fx.Node]:
    if isinstance(obj, torch.fx.Node):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [n for o in obj for n in _leaves(o)]
    if isinstance(obj, dict):
        return [n for o in obj.values() for n in _leaves(o)]
    return []


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", repr(fn))


def attention_module(model: nn.Module) -> tuple[str, str] | None:
    """The first attention module of ``model`` as ``(name, class name)``, or ``None``.

    An attention module is an ``nn.MultiheadAttention`` or any module whose class name contains
    ``Attention`` (``GPT2Attention``, ``BertSelfAttention``, ``ViTAttention``...), so Hugging Face
    models are recognized without importing ``transformers``.
    """
    for name, m in model.named_modules():
        if isinstance(m, nn.MultiheadAttention) or "Attention" in type(m).__name__:
            return name, type(m).__name__
    return None


def tied_parameters(model: nn.Module) -> list[list[str]]:
    """Names that share one parameter tensor (tied weights), one list per shared tensor."""
    names: dict[int, list[str]] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(n)
    return [group for group in names.values() if len(group) > 1]


def check_alignable(model: nn.Module) -> None:
    """Refuse, before tracing, the models weight matching does not support by construction.

    Raises:
        AlignmentError: ``model`` has an attention module or tied parameters (named).
    """
    found = attention_module(model)
    if found is not None:
        name, kind = found
        where = repr(name) if name else "the model"
        raise AlignmentError(
            f"weight matching of attention models is not supported: {where} is a {kind} "
            "(its heads would have to permute as groups); connect the models without alignment (align=None)"
        )
    tied = tied_parameters(model)
    if tied:
        shared = " and ".join(map(repr, tied[0]))
        raise AlignmentError(
            f"weight matching of models with tied parameters is not supported: {shared} are one tensor; "
            "connect the models without alignment (align=None)"
        )


def permutation_spec(model: nn.Module) -> PermutationSpec:
    """Trace ``model`` with ``torch.fx`` and find its permutation groups.

    Raises:
        AlignmentError: an attention model or tied parameters (:func:`check_alignable`), the model
            cannot be traced, or it uses an operation (named in the message) through which hidden
            units cannot be permuted.
    """
    check_alignable(model)
    return _Tracer(model).run()


# -- permuting tensors --------------------------------------------------------------------------
def _grouped(t: torch.Tensor, axis: int, factor: int) -> torch.Tensor:
    """View ``t`` with ``axis`` split into ``(channels, factor)``."""
    shape = t.shape
    return t.reshape(*shape[:axis], shape[axis] // factor, factor, *shape[axis + 1 :])


def permute_axis(t: torch.Tensor, axis: int, factor: int, perm: torch.Tensor) -> torch.Tensor:
    """``t`` with the channels of ``axis`` reordered: ``out[.., i, ..] = t[.., perm[i], ..]``."""
    return _grouped(t, axis, factor).index_select(axis, perm.to(t.device)).reshape(t.shape)


def apply_permutations(
    spec: PermutationSpec, state: Mapping[str, torch.Tensor], perms: Mapping[int, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """A copy of ``state`` with every group's permutation applied on every axis it touches.

    Tensors of ``spec`` that ``state`` lacks are skipped (e.g. running statistics in a parameter dict).
    """
    out = {k: v.clone() for k, v in state.items()}
    for name, entries in spec.axes.items():
        if name not in out:
            continue
        t = out[name]
        for axis, group, factor in entries:
            t = permute_axis(t, axis, factor, perms[group])
        out[name] = t
    return out


def _as_rows(t: torch.Tensor, axis: int, factor: int) -> torch.Tensor:
    """``(channels, everything else)``: row ``i`` holds every entry of channel ``i`` along ``axis``."""
    g = _grouped(t, axis, factor)
    return g.movedim(axis, 0).reshape(g.shape[axis], -1)


@dataclass
class Matching:
    """The permutations weight matching found and how it got there."""

    perms: dict[int, torch.Tensor]
    sweeps: int
    objective: float  # sum_t <A_t, aligned B_t> over the parameters the groups touch
    objective_before: float
    units_moved: int  # units whose index changed
    units_total: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "weight-matching",
            "groups": len(self.perms),
            "sweeps": self.sweeps,
            "inner_product_before": self.objective_before,
            "inner_product_after": self.objective,
            "units_moved": self.units_moved,
            "units_total": self.units_total,
        }


def _inner(spec: PermutationSpec, a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    return float(sum((a[n].double() * b[n].double()).sum() for n in spec.axes if n in a))


def weight_matching(
    spec: PermutationSpec,
    params_a: Mapping[str, torch.Tensor],
    params_b: Mapping[str, torch.Tensor],
    *,
    seed: int = 0,
    max_sweeps: int = 100,
) -> Matching:
    """Permutations of B's groups that maximize ``sum_t <A_t, P(B)_t>`` (coordinate ascent, LAP per group).

    Args:
        spec: the groups (:func:`permutation_spec`).
        params_a: A's tensors by name; only the names here enter the objective (pass parameters,
            not running statistics, as Ainsworth et al. do).
        params_b: B's tensors, same names and shapes.
        seed: seed of the order in which groups are visited.
        max_sweeps: stop after this many sweeps even if a group still improves.

    Returns:
        The permutations (group id -> index tensor) and a summary.
    """
    from scipy.optimize import linear_sum_assignment

    names = [n for n in spec.axes if n in params_a]
    a = {n: params_a[n].detach().double().cpu() for n in names}
    b = {n: params_b[n].detach().double().cpu() for n in names}
    perms = {g: torch.arange(size) for g, size in spec.sizes.items()}
    touching: dict[int, list[tuple[str, int, int]]] = {g: [] for g in spec.sizes}
    for n in names:
        for axis, g, factor in spec.axes[n]:
            touching[g].append((n, axis, factor))
    rng = np.random.default_rng(seed)
    groups = list(spec.sizes)
    before = _inner(spec, a, b)
    sweeps = 0
    for sweeps in range(1, max_sweeps + 1):  # noqa: B007 - the count is reported
        improved = False
        for g in rng.permutation(groups).tolist():
            size = spec.sizes[g]
            score = torch.zeros(size, size, dtype=torch.float64)
            for n, axis, factor in touching[g]:
                other = b[n]
                for ax2, g2, f2 in spec.axes[n]:
                    if (ax2, g2) != (axis, g):
                        other = permute_axis(other, ax2, f2, perms[g2])
                score += _as_rows(a[n], axis, factor) @ _as_rows(other, axis, factor).T
            s = score.numpy()
            _, cols = linear_sum_assignment(s, maximize=True)
            rows = np.arange(size)
            gain = s[rows, cols].sum() - s[rows, perms[g].numpy()].sum()
            if gain > 1e-12 * max(1.0, abs(s[rows, cols].sum())):
                perms[g] = torch.as_tensor(cols, dtype=torch.long)
                improved = True
        if not improved:
            break
    aligned = apply_permutations(spec, b, perms)
    moved = sum(int((p != torch.arange(len(p))).sum()) for p in perms.values())
    return Matching(
        perms=perms,
        sweeps=sweeps,
        objective=_inner(spec, a, aligned),
        objective_before=before,
        units_moved=moved,
        units_total=sum(spec.sizes.values()),
    )


@dataclass
class Alignment:
    """B's aligned state dict and the matching that produced it."""

    state_dict: dict[str, torch.Tensor]
    matching: Matching
    max_output_difference: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.matching.to_dict(), "max_output_difference": self.max_output_difference}


def align_models(
    model_a: nn.Module,
    model_b: nn.Module,
    example_input: torch.Tensor,
    *,
    seed: int = 0,
    max_sweeps: int = 100,
) -> Alignment:
    """Permute ``model_b``'s hidden units to match ``model_a`` (weight matching) and check the function.

    The aligned state dict is loaded into a copy of ``model_b`` and both are run in evaluation mode on
    ``example_input``: the outputs must agree to rounding (relative ``1e-4`` in float32, ``1e-9`` in
    float64), else the permutation missed an operation and :class:`AlignmentError` is raised rather
    than a wrong checkpoint returned. ``model_b`` itself is not changed.

    Raises:
        AlignmentError: an attention model or tied parameters (named), untraceable model,
            unsupported layer (named), or a function check failure.
    """
    import copy

    spec = permutation_spec(model_a)
    params_a = dict(model_a.named_parameters())
    params_b = dict(model_b.named_parameters())
    matching = weight_matching(spec, params_a, params_b, seed=seed, max_sweeps=max_sweeps)
    state_b = {k: v.detach() for k, v in model_b.state_dict().items()}
    aligned = apply_permutations(spec, state_b, matching.perms)
    check = copy.deepcopy(model_b)
    check.load_state_dict(aligned)
    was_training = model_b.training
    model_b.eval()
    check.eval()
    with torch.no_grad():
        ref = model_b(example_input)
        got = check(example_input)
    model_b.train(was_training)
    diff = float((ref - got).abs().max())
    scale = float(ref.abs().max())
    tol = 1e-9 if ref.dtype == torch.float64 else 1e-4
    if not diff <= tol * max(scale, 1.0):
        raise AlignmentError(
            f"weight matching changed the function of the second model (max output difference {diff:.3g}); "
            "the model has an operation the permutation tracer does not follow"
        )
    return Alignment(state_dict=aligned, matching=matching, max_output_difference=diff)
