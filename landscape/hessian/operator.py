"""The Hessian of an :class:`~landscape.objective.core.Objective` as a linear operator on flat vectors.

For ``L(w) = sum_b (n_b / N) L_b(w)`` (``L_b`` the batch-mean loss) the Hessian-vector product is
``H v = sum_b (n_b / N) H_b v``, so an uneven last batch gives exactly the full-batch product. Two ways
to form ``H_b v`` without forming ``H_b`` (Pearlmutter 1994):

* ``rev-rev`` (reverse-over-reverse): ``g = dL_b/dw`` with ``create_graph=True``, then
  ``H_b v = d(g . v)/dw`` by a second backward pass. With a single batch the first-order graph is
  built once and reused for every product.
* ``fwd-rev`` (forward-over-reverse): ``H_b v = jvp(grad L_b, (w,), (v,))``, with ``torch.func``;
  a block of vectors is pushed through ``torch.func.vmap`` in one call.

``mode='auto'`` picks per device the one that the benchmark (``benchmarks/bench_hessian.py``) found
faster: ``rev-rev`` on CPU and MPS, ``fwd-rev`` on CUDA (and always ``rev-rev`` with batch norm in
training mode, whose in-place statistics update does not vmap).

Products through attention run ``scaled_dot_product_attention`` on its math kernel, which has a double
backward (:mod:`~landscape.hessian.attention`; ``attention_backend`` records it). ``hvp='finite-difference'``
forms ``H v`` by central differences of gradients instead (:mod:`~landscape.hessian.finite_difference`):
for models with an op that has no double backward, and for memory. With ``hvp='exact'`` (default) an
exact product that raises "derivative ... not implemented" falls back to finite differences with one
:class:`~landscape.hessian.finite_difference.FiniteDifferenceWarning`, recorded in :attr:`HessianOperator.info`.

Every model call goes through :meth:`~landscape.objective.core.Objective.outputs` (or its functional
twin), so dict inputs and ``ModelOutput`` results work in every product.

Every product of one vector counts as one *matvec*; a block of ``k`` columns counts ``k`` matvecs but
costs one pass over the data. When the objective is sharded (``torch.distributed``), each rank sums
its batches and the result is all-reduced, so all ranks see the same product.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, RandomSampler

from landscape.errors import ConfigError, NonDeterministicDataError, check_choice
from landscape.hessian.attention import (
    DEFAULT_ATTENTION,
    SECOND_ORDER_ATTENTION,
    missing_derivative_op,
    second_order_attention,
)
from landscape.hessian.bn_fold import FoldedModel, fold_eval_batchnorm
from landscape.hessian.finite_difference import (
    STEP_RULE,
    FiniteDifferenceWarning,
    SecondOrderError,
    finite_difference_products,
)
from landscape.objective.core import Objective
from landscape.objective.inputs import Inputs

HVP_MODES = ("auto", "rev-rev", "fwd-rev")
HVP_METHODS = ("exact", "finite-difference")
_AUTO_MODE = {"cpu": "rev-rev", "mps": "rev-rev", "cuda": "fwd-rev"}

WeightedBatch = tuple[Inputs, torch.Tensor, float]


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one flat vector."""
    return torch.cat([t.reshape(-1) for t in tensors])


class HessianOperator:
    """``H v`` for the (sub-)Hessian of an objective, as an ``(n, n)`` linear operator.

    Use ``op @ v`` with ``v`` of shape ``(n,)`` or a block ``(n, k)``; :meth:`unflatten` and
    :meth:`flatten` convert between flat vectors and lists of parameter-shaped tensors.

    Args:
        objective: the loss over a fixed dataset.
        mode: ``'auto'``, ``'rev-rev'`` or ``'fwd-rev'`` (see the module docstring).
        param_indices: restrict to these entries of ``objective.params`` (a diagonal block of the
            Hessian); default all.
        batches: use these ``(x, y, weight)`` batches instead of the objective's data (for example
            one batch with weight 1 for the per-batch protocol). They are neither sharded nor reduced.
        check_determinism: run two passes and refuse data whose loss or gradient changes between them
            (augmentation, shuffling, dropout). ``None`` (default): only for data from a DataLoader.
        allow_nondeterministic: skip the check and the shuffling test (opt-out).
        block_size: the most vectors pushed through one data pass at once.
        cache_graphs: keep every batch's gradient graph (``create_graph``) between products, so a
            reverse-over-reverse product is one double-backward pass per batch instead of a forward,
            a backward and a double backward. Costs the memory of the activations and gradient
            graph of the whole sample; a single batch is always cached.
        fold_batchnorm: with batch norm in eval mode, differentiate the model with every batch norm
            folded into the convolution or linear layer before it (:mod:`~landscape.hessian.bn_fold`):
            the same function, so the same product up to rounding, at a lower cost. ``folded`` records
            the pairs folded, or why none were.
        hvp: ``'exact'`` (default; ``mode`` says how) or ``'finite-difference'`` (central differences of
            gradients, :mod:`~landscape.hessian.finite_difference`). An exact product that meets an op
            without a double backward switches to finite differences once, with a warning
            (``fallback=False``: raises instead).
        fallback: allow that switch.

    Raises:
        NonDeterministicDataError: the loader shuffles or two passes disagree.
        ConfigError: a bad mode or index.
    """

    def __init__(
        self,
        objective: Objective,
        *,
        mode: str = "auto",
        param_indices: Sequence[int] | None = None,
        batches: Iterable[WeightedBatch] | None = None,
        check_determinism: bool | None = None,
        allow_nondeterministic: bool = False,
        block_size: int = 16,
        cache_graphs: bool = False,
        fold_batchnorm: bool = True,
        hvp: str = "exact",
        fallback: bool = True,
    ) -> None:
        check_choice("mode", mode, HVP_MODES)
        check_choice("hvp", hvp, HVP_METHODS)
        if block_size < 1:
            raise ConfigError(f"block_size={block_size!r} must be >= 1")
        self.objective = objective
        n_all = len(objective.params)
        idx = list(range(n_all)) if param_indices is None else [int(i) for i in param_indices]
        bad = [i for i in idx if not 0 <= i < n_all]
        if bad or not idx:
            raise ConfigError(f"param_indices={list(idx)!r} must be non-empty indices in [0, {n_all})")
        self.param_indices = idx
        self.params: list[torch.Tensor] = [objective.params[i] for i in idx]
        self.param_names: list[str] = [objective.param_names[i] for i in idx]
        self.shapes = [p.shape for p in self.params]
        self.sizes = [p.numel() for p in self.params]
        n = sum(self.sizes)
        self.shape = (n, n)
        self.dtype = objective.dtype
        self.device = objective.device
        self.block_size = block_size
        self._batches = list(batches) if batches is not None else None
        if mode == "auto":
            mode = _AUTO_MODE.get(self.device.type, "rev-rev")
            if objective.bn_mode == "train":
                mode = "rev-rev"
        self.mode = mode
        self.hvp_method = hvp
        self.fallback = fallback
        self.fallback_op: str | None = None  # the op that sent an exact product to finite differences
        self.matvecs = 0
        self.passes = 0
        # Gradient graphs kept between products (rev-rev): always for a single batch, for every
        # batch with cache_graphs (memory: activations and gradient graph of the whole sample).
        self.cache_graphs = cache_graphs
        self._graphs: list[tuple[list[torch.Tensor | None], list[int]]] | None = None
        loader = objective.loader
        if check_determinism is None:
            check_determinism = loader is not None and self._batches is None
        if not allow_nondeterministic and self._batches is None:
            if isinstance(loader, DataLoader) and isinstance(
                getattr(loader.batch_sampler, "sampler", loader.sampler), RandomSampler
            ):
                raise NonDeterministicDataError(
                    "the DataLoader shuffles (RandomSampler): batches change between passes, which "
                    "silently breaks Lanczos; use shuffle=False or pass allow_nondeterministic=True"
                )
            if check_determinism:
                objective.check_deterministic()
        self.folded = self._fold(fold_batchnorm)

    @property
    def attention_backend(self) -> str:
        """The attention kernel the products run on: ``'math'`` for exact products (double backward),
        ``'default'`` (PyTorch's choice) for finite differences, which need first derivatives only."""
        return SECOND_ORDER_ATTENTION if self.hvp_method == "exact" else DEFAULT_ATTENTION

    @property
    def info(self) -> dict[str, Any]:
        """How the products are formed, for results to record."""
        exact = self.hvp_method == "exact"
        return {
            "hvp": self.hvp_method,
            "hvp_mode": self.mode if exact else None,
            "attention_backend": self.attention_backend,
            "hvp_fallback_op": self.fallback_op,
            "finite_difference_step": None if exact else STEP_RULE,
            "batchnorm_folded": [list(p) for p in self.folded.pairs],
        }

    # -- conversions --------------------------------------------------------------------------
    def flatten(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """Parameter-shaped tensors to one flat vector of length ``n``."""
        if len(tensors) != len(self.params):
            raise ConfigError(f"expected {len(self.params)} tensors, got {len(tensors)}")
        return flatten(tensors).to(device=self.device, dtype=self.dtype)

    def unflatten(self, vec: torch.Tensor) -> list[torch.Tensor]:
        """A flat vector of length ``n`` to a list of tensors shaped like the parameters."""
        return [c.view(s) for c, s in zip(torch.split(vec, self.sizes), self.shapes)]

    # -- data ---------------------------------------------------------------------------------
    def _iter_batches(self) -> Iterator[WeightedBatch]:
        if self._batches is not None:
            yield from self._batches
        else:
            yield from self.objective.batches()

    def _single_batch(self) -> bool:
        if self._batches is not None:
            return len(self._batches) == 1
        return self.objective.num_batches == 1

    def _fold(self, enabled: bool) -> FoldedModel:
        model = self.objective.model
        if not enabled:
            return FoldedModel(model, [], "folding switched off")
        if self.objective.bn_mode != "eval":
            return FoldedModel(model, [], "batch norm normalizes with batch statistics (bn_mode='train')")
        folded = fold_eval_batchnorm(model)
        if folded.pairs:
            # the same function by construction; one forward on the first batch guards against a
            # model whose traced graph does not match what it runs
            x, _, _ = next(iter(self._iter_batches()))
            with torch.no_grad(), self.objective.model_mode():
                want, got = self.objective.outputs(x), self.objective.outputs(x, module=folded.module)
            scale = float(want.abs().max()) if want.numel() else 0.0
            if got.shape != want.shape or float((got - want).abs().max()) > (
                torch.finfo(self.dtype).eps ** 0.5 * max(scale, 1.0)
            ):
                return FoldedModel(model, [], "the folded model disagreed with the model")
        return folded

    # The two batch losses run inside ``objective.model_mode()``, which ``_block`` enters once per pass.
    def _batch_loss(self, x: Inputs, y: torch.Tensor) -> torch.Tensor:
        return self.objective.loss_fn(self.objective.outputs(x, module=self.folded.module), y)

    def _functional_batch_loss(
        self, params: dict[str, torch.Tensor], x: Inputs, y: torch.Tensor
    ) -> torch.Tensor:
        out = self.objective.functional_outputs(params, x, module=self.folded.module)
        return self.objective.loss_fn(out, y)

    def _reduce(self, out: torch.Tensor) -> None:
        if self._batches is None:
            self.objective.reduce_([out])

    # -- products -----------------------------------------------------------------------------
    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for ``v`` of shape ``(n,)`` or ``H V`` for a block ``(n, k)``."""
        if v.dim() not in (1, 2) or v.shape[0] != self.shape[0]:
            raise ConfigError(
                f"vector of shape {tuple(v.shape)} does not fit an operator of size {self.shape}"
            )
        vec = v.dim() == 1
        V = v.reshape(self.shape[0], -1).to(device=self.device, dtype=self.dtype)
        if V.shape[1] <= self.block_size:
            out = self._block(V)
        else:
            steps = range(0, V.shape[1], self.block_size)
            out = torch.cat([self._block(V[:, j : j + self.block_size]) for j in steps], dim=1)
        return out[:, 0] if vec else out

    def hvp(self, vectors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``H v`` with ``v`` given and returned as parameter-shaped tensors."""
        return self.unflatten(self @ self.flatten(vectors))

    def _block(self, V: torch.Tensor) -> torch.Tensor:
        k = V.shape[1]
        # one mode switch per pass, not per batch: on small models it is a visible share of a product
        with self.objective.model_mode():
            out = self._products(V)
        self._reduce(out)
        self.matvecs += k
        return out

    def _products(self, V: torch.Tensor) -> torch.Tensor:
        """This rank's ``H V``: exact (falling back once to finite differences) or by differences."""
        if self.hvp_method == "finite-difference":
            return self._finite_difference(V)
        try:
            with second_order_attention():
                out = self._exact(V)
        except RuntimeError as err:
            op = missing_derivative_op(err)
            if op is None:
                raise
            if not self.fallback:
                raise SecondOrderError(
                    f"the exact Hessian-vector product needs the second derivative of {op}, which PyTorch "
                    "does not implement; pass hvp='finite-difference'"
                ) from None
            warnings.warn(
                f"{op} has no double backward: Hessian-vector products use finite differences "
                "(hvp='finite-difference') from here on",
                FiniteDifferenceWarning,
                stacklevel=4,
            )
            self.hvp_method, self.fallback_op, self._graphs = "finite-difference", op, None
            return self._finite_difference(V)
        self.passes += 1
        return out

    def _exact(self, V: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(V)
        if self.mode == "rev-rev" and (self.cache_graphs or self._single_batch()):
            for grads, used in self._cached_graphs():
                self._add_rev_rev(out, grads, used, V, weight=1.0, retain=True)
        else:
            for x, y, w in self._iter_batches():
                if self.mode == "rev-rev":
                    grads, used = self._first_order(x, y)
                    self._add_rev_rev(out, grads, used, V, weight=w, retain=False)
                else:
                    out.add_(self._fwd_rev(x, y, V), alpha=w)
        return out

    def _finite_difference(self, V: torch.Tensor) -> torch.Tensor:
        try:
            out = finite_difference_products(self.params, self._gradient, V, self.unflatten)
        except RuntimeError as err:
            op = missing_derivative_op(err)
            if op is None:
                raise
            raise SecondOrderError(
                f"{op} has no derivative at all, so neither hvp='exact' nor hvp='finite-difference' can "
                "form a Hessian-vector product; use a model without it"
            ) from None
        self.passes += 2 * V.shape[1]
        return out

    def _gradient(self) -> torch.Tensor:
        """This rank's flat gradient of the loss over the operator's batches (first order only)."""
        out = torch.zeros(self.shape[0], dtype=self.dtype, device=self.device)
        with torch.enable_grad():
            for x, y, w in self._iter_batches():
                gs = torch.autograd.grad(self._batch_loss(x, y), self.params, allow_unused=True)
                offset = 0
                for g, size in zip(gs, self.sizes):
                    if g is not None:
                        out[offset : offset + size].add_(g.reshape(-1), alpha=w)
                    offset += size
        return out

    def _first_order(self, x: Inputs, y: torch.Tensor) -> tuple[list[torch.Tensor | None], list[int]]:
        with torch.enable_grad():
            loss = self._batch_loss(x, y)
            grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        used = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        return list(grads), used

    def _cached_graphs(self) -> list[tuple[list[torch.Tensor | None], list[int]]]:
        if self._graphs is None:
            self._graphs = []
            for x, y, w in self._iter_batches():
                grads, used = self._first_order(x, y)
                # fold the batch weight into the graph once: H v = sum_b w_b H_b v
                self._graphs.append(([None if g is None else g * w for g in grads], used))
        return self._graphs

    def refresh(self) -> None:
        """Forget the cached gradient graphs (call after changing the parameters in place)."""
        self._graphs = None

    def _add_rev_rev(
        self,
        out: torch.Tensor,
        grads: list[torch.Tensor | None],
        used: list[int],
        V: torch.Tensor,
        *,
        weight: float,
        retain: bool,
    ) -> None:
        """``out += weight * H_b V`` by one double-backward pass per column through ``grads``' graph."""
        if not used:
            return
        gs = [grads[i] for i in used]
        k = V.shape[1]
        for j in range(k):
            vs = self.unflatten(V[:, j])
            hv = torch.autograd.grad(
                gs,
                self.params,
                grad_outputs=[vs[i] for i in used],
                retain_graph=retain or j < k - 1,
                allow_unused=True,
            )
            col = out[:, j]
            offset = 0
            for h, size in zip(hv, self.sizes):
                if h is not None:  # unused parameters contribute zero rows
                    col[offset : offset + size].add_(h.reshape(-1), alpha=weight)
                offset += size

    def _fwd_rev(self, x: Inputs, y: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        full = self.objective.param_dict()
        names = self.param_names
        primals = tuple(p.detach() for p in self.params)

        def loss(*sub: torch.Tensor) -> torch.Tensor:
            d = dict(full)
            d.update(zip(names, sub))
            return self._functional_batch_loss(d, x, y)

        grad_fn = torch.func.grad(loss, argnums=tuple(range(len(primals))))

        def hvp(*tangents: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return torch.func.jvp(grad_fn, primals, tangents)[1]

        tangents = tuple(
            c.reshape(V.shape[1], *s)
            for c, s in zip(torch.split(V.T.contiguous(), self.sizes, dim=1), self.shapes)
        )
        if V.shape[1] == 1:
            res: Any = hvp(*(t[0] for t in tangents))
            return torch.cat([r.reshape(-1) for r in res]).unsqueeze(1)
        res = torch.func.vmap(hvp)(*tangents)
        return torch.cat([r.reshape(V.shape[1], -1) for r in res], dim=1).T


def rademacher(
    n: int, k: int, *, generator: torch.Generator, dtype: torch.dtype, device: Any
) -> torch.Tensor:
    """An ``(n, k)`` block of independent +-1 entries (drawn on the CPU, so seeds give the same draw
    on every device)."""
    z = torch.randint(0, 2, (n, k), generator=generator, dtype=torch.int8)
    return (2 * z - 1).to(device=device, dtype=dtype)


def operator_info(op: Any) -> tuple[int, torch.dtype, torch.device]:
    """Size, dtype and device of any ``(n, n)`` operator (dense tensors included)."""
    shape = tuple(op.shape)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ConfigError(f"the operator must be square, got shape {shape}")
    dtype = getattr(op, "dtype", torch.float64)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        dtype = torch.float64
    device = getattr(op, "device", torch.device("cpu"))
    return int(shape[0]), dtype, torch.device(device)
