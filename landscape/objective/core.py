"""The training objective as a function of the parameters: model + loss + fixed data + policy.

``L(w) = (1/N) sum_i l(f(x_i; w), y_i)`` over a fixed set of ``N`` examples. Batches are weighted by
their sample count (``n_b / N`` times the batch-mean loss), so an uneven last batch gives exactly the
full-batch value. For token-level objectives (integer labels ``(N, T)``,
:mod:`~landscape.objective.tokens`) the terms are the counted tokens: ``L`` is the mean over all counted
tokens of the set and each batch weighs by its counted tokens, so neither padding nor the batch size
changes the function. Inputs may be tensors or Hugging Face style dicts
(:mod:`~landscape.objective.inputs`). Batch norm uses running statistics (``bn_mode='eval'``) unless
asked otherwise; the mode is recorded in every result through :meth:`Objective.metadata`.

Evaluation never changes the model: every method that runs the model does so inside
:meth:`Objective.model_mode`, which puts the model in the objective's mode for the call and then
gives every module back its own ``training`` flag. A training loop can therefore evaluate between
steps without switching modes itself, and no evaluation writes batch-norm running statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler, TensorDataset

from landscape.device import dtype_name, resolve_device
from landscape.errors import ConfigError, DataError, NonDeterministicDataError
from landscape.objective.inputs import (
    LABELS,
    Inputs,
    call_functional,
    call_model,
    move_inputs,
    slice_inputs,
    split_batch,
)
from landscape.objective.losses import CrossEntropy
from landscape.objective.tokens import is_causal_lm, is_token_batch, is_token_labels, num_terms, token_hits

BN_MODES = ("eval", "train")
Batch = tuple[Inputs, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm,)


@dataclass
class Evaluation:
    """Mean loss and accuracy over the objective's data."""

    loss: float
    accuracy: float
    num_samples: int

    def to_dict(self) -> dict[str, float | int]:
        return {"loss": self.loss, "accuracy": self.accuracy, "num_samples": self.num_samples}


def _in_memory_pair(data: Any) -> tuple[Inputs, torch.Tensor] | None:
    """``(x, y)`` of an in-memory dataset: a pair of tensors or a dict of tensors holding ``labels``."""
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        return data[0], data[1]
    if (
        isinstance(data, Mapping)
        and LABELS in data
        and all(isinstance(t, torch.Tensor) for t in data.values())
    ):
        return split_batch(data)
    return None


def _as_batches(data: Any, batch_size: int | None) -> tuple[list[Batch] | None, Iterable[Batch] | None]:
    """Normalize the data argument: returns (cached list of batches, or a re-iterable loader)."""
    pair = _in_memory_pair(data)
    if pair is not None:
        x, y = pair
        rows = {len(t) for t in ([x] if isinstance(x, torch.Tensor) else x.values())}
        if rows != {len(y)}:
            raise DataError(f"the inputs have {sorted(rows)} rows but the labels have {len(y)}")
        if batch_size is None:
            return [(x, y)], None
        steps = range(0, len(y), batch_size)
        return [(slice_inputs(x, i, i + batch_size), y[i : i + batch_size]) for i in steps], None
    if isinstance(data, TensorDataset):
        return _as_batches(tuple(data.tensors[:2]), batch_size)
    if isinstance(data, DataLoader):
        return None, data
    if isinstance(data, Dataset):
        return None, DataLoader(data, batch_size=batch_size or 256, shuffle=False)
    if isinstance(data, Sequence):
        return [split_batch(b) for b in data], None
    raise DataError(
        f"data of type {type(data).__name__} is not a DataLoader, Dataset, (x, y) or list of batches"
    )


class Objective:
    """Mean loss of ``model`` over a fixed dataset, with gradients and evaluation.

    Args:
        model: the network; moved to ``device``/``dtype`` in place.
        data: a ``DataLoader`` (must not shuffle or augment), a ``Dataset``, an ``(x, y)`` pair of
            tensors, a dict of tensors with ``labels``, or a list of ``(x, y)`` or dict batches. Items
            and batches may be dicts in the Hugging Face convention: everything but ``labels`` goes to
            the model as ``model(**inputs)``. In-memory data is moved to the device once.
        loss_fn: batch-mean loss ``loss_fn(logits, targets)``; cross-entropy for class and token
            outputs by default (:class:`~landscape.objective.losses.CrossEntropy`). A loss with a ``num_terms(targets)`` method says how
            many terms its batch mean averages (the batch's weight); others weigh by rows.
        batch_size: batch size for in-memory data (``None``: one full batch).
        device: ``auto|cpu|cuda[:N]|mps`` or a ``torch.device``.
        dtype: ``torch.float32``/``torch.float64`` or ``None`` to keep the model's dtype.
        bn_mode: ``'eval'`` (running statistics, default) or ``'train'`` (batch statistics; the
            running statistics are neither read nor written). Applied for each call only (see
            :meth:`model_mode`): the model keeps the mode its owner gave it.
        param_names: restrict the differentiated parameters to these names (default: all trainable).
        shard: ``(rank, world_size)`` to take every ``world_size``-th batch starting at ``rank``;
            reductions are then summed over ranks with ``torch.distributed``.
        causal: score token outputs as a causal language model (labels shifted by one); ``None``
            (default): as a ``CrossEntropy(causal=...)`` loss says, else from the model
            (:func:`~landscape.objective.tokens.is_causal_lm`).
            Recorded in :meth:`metadata` for token-level data.
    """

    def __init__(
        self,
        model: nn.Module,
        data: Any,
        *,
        loss_fn: LossFn | None = None,
        batch_size: int | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        bn_mode: str = "eval",
        param_names: Sequence[str] | None = None,
        shard: tuple[int, int] | None = None,
        causal: bool | None = None,
    ) -> None:
        if bn_mode not in BN_MODES:
            raise ConfigError(f"bn_mode={bn_mode!r} is not valid; choose one of {', '.join(BN_MODES)}")
        self.device = resolve_device(device)
        self.model = model.to(device=self.device, dtype=dtype) if dtype is not None else model.to(self.device)
        self.dtype = dtype if dtype is not None else _model_dtype(self.model)
        if causal is None and isinstance(loss_fn, CrossEntropy) and loss_fn.causal is not None:
            causal = loss_fn.causal  # the loss the caller configured decides
        self.causal = bool(is_causal_lm(self.model) if causal is None else causal)
        self.loss_fn: LossFn = _with_causal(loss_fn, self.causal)
        self.bn_mode = bn_mode
        self.shard = shard
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        if param_names is not None:
            wanted = list(param_names)
            known = dict(named)
            missing = [n for n in wanted if n not in known]
            if missing:
                raise ConfigError(
                    f"param_names has unknown parameters {missing}; the model has {list(known)}"
                )
            named = [(n, known[n]) for n in wanted]
        if not named:
            raise ConfigError("the model has no trainable parameters")
        self.param_names: list[str] = [n for n, _ in named]
        self.params: list[torch.Tensor] = [p for _, p in named]
        cached, loader = _as_batches(data, batch_size)
        self._loader = loader
        self._cached: list[Batch] | None = None
        if cached is not None:
            self._cached = [(self._x(x), y.to(self.device)) for x, y in cached]
        # Token-level (token labels and a loss that averages counted tokens) and the count of terms
        # are found from the data; a loader over a sized dataset is not read for them until a pass
        # shows token labels (a classification loader is read exactly once per pass).
        self._token_level: bool | None = None
        self._num_terms: int | None = None
        self.num_samples = self._count()
        if self.num_samples == 0:
            raise DataError("the dataset is empty")

    # -- data ---------------------------------------------------------------------------------
    def _x(self, x: Inputs) -> Inputs:
        return move_inputs(x, self.device, self.dtype)

    def _all_batches(self) -> Iterator[Batch]:
        if self._cached is not None:
            yield from self._cached
        else:
            assert self._loader is not None
            for b in self._loader:
                x, y = split_batch(b)
                yield self._x(x), y.to(self.device)

    def _terms(self, y: torch.Tensor) -> int:
        """How many terms the batch-mean loss of labels ``y`` averages (its weight, times the total)."""
        count = getattr(self.loss_fn, "num_terms", None)
        return int(count(y)) if callable(count) else len(y)

    def _see_labels(self, labels: Sequence[torch.Tensor]) -> int:
        """Set token-level and the term count from all labels of a pass; returns the example count."""
        self._token_level = bool(labels) and is_token_labels(labels[0]) and hasattr(self.loss_fn, "num_terms")
        self._num_terms = sum(self._terms(y) for y in labels)
        return sum(len(y) for y in labels)

    def _count(self) -> int:
        """The number of examples (and, where that costs no extra read, the number of terms)."""
        if self._cached is not None:
            return self._see_labels([y for _, y in self._cached])
        assert self._loader is not None
        ds = getattr(self._loader, "dataset", None)
        if ds is not None and hasattr(ds, "__len__") and not getattr(self._loader, "drop_last", False):
            return len(ds)
        return self._see_labels([split_batch(b)[1] for b in self._loader])

    @property
    def token_level(self) -> bool:
        """Whether the loss is a mean over counted tokens (token labels ``(N, T)``, token loss)."""
        if self._token_level is None:
            assert self._loader is not None
            first = next(iter(self._loader), None)
            y = split_batch(first)[1] if first is not None else torch.zeros(0)
            self._token_level = is_token_labels(y) and hasattr(self.loss_fn, "num_terms")
        return self._token_level

    @property
    def num_terms(self) -> int:
        """The number of terms the full-data loss averages: examples, or counted tokens.

        Raises:
            DataError: every token label is -100 (nothing is counted).
        """
        if self._num_terms is None:
            if self.token_level:
                assert self._loader is not None
                self._see_labels([split_batch(b)[1] for b in self._loader])
            else:
                self._num_terms = self.num_samples
        assert self._num_terms is not None
        if self._num_terms == 0:
            raise DataError("no label of the dataset is counted: every token label is -100 (padding)")
        return self._num_terms

    @property
    def loader(self) -> Iterable[Batch] | None:
        """The user's loader when the data is read from one each pass; ``None`` for in-memory data."""
        return self._loader

    def batches(self) -> Iterator[tuple[Inputs, torch.Tensor, float]]:
        """Yield ``(x, y, weight)`` with ``weight = n_b / N`` (counted tokens over all counted tokens
        for token labels); only this rank's shard when sharded. ``x`` is a tensor or a dict of inputs."""
        for i, (x, y) in enumerate(self._all_batches()):
            if self._token_level is None:  # the first batch of a loader says (no extra read)
                self._token_level = is_token_labels(y) and hasattr(self.loss_fn, "num_terms")
            if self.shard is not None and i % self.shard[1] != self.shard[0]:
                continue
            yield x, y, self._terms(y) / self.num_terms

    @property
    def num_batches(self) -> int:
        """Number of batches this rank visits per pass."""
        n = len(self._cached) if self._cached is not None else len(self._loader)  # type: ignore[arg-type]
        if self.shard is None:
            return n
        return len(range(self.shard[0], n, self.shard[1]))

    def reduce_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Sum ``tensors`` in place over ranks when sharded (no-op otherwise)."""
        if self.shard is None or self.shard[1] == 1:
            return
        import torch.distributed as dist

        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)

    # -- model --------------------------------------------------------------------------------
    @contextmanager
    def model_mode(self) -> Iterator[None]:
        """Run the model in the objective's batch-norm mode inside the block, then restore it.

        ``bn_mode='eval'`` puts every module in evaluation mode (running statistics, no dropout).
        ``bn_mode='train'`` puts every module in evaluation mode except the batch-norm layers, which
        normalize with the batch's statistics; their ``track_running_stats`` is switched off for
        the block, so the running statistics and ``num_batches_tracked`` are neither read nor
        written. On exit every module gets back its own ``training`` flag (and every batch-norm
        layer its ``track_running_stats``), so a caller that trains between evaluations keeps its
        mode and no evaluation changes a buffer. Nested use is fine.
        """
        modules = list(self.model.modules())
        flags = [m.training for m in modules]
        norms = [m for m in modules if isinstance(m, _NORM_TYPES)]
        tracking = [m.track_running_stats for m in norms]
        try:
            self.model.eval()
            if self.bn_mode == "train":
                for m in norms:
                    m.train()
                    m.track_running_stats = False
            yield
        finally:
            for m, flag in zip(modules, flags):
                m.training = flag
            for m, track in zip(norms, tracking):
                m.track_running_stats = track

    @property
    def num_params(self) -> int:
        """Number of differentiated scalars."""
        return sum(p.numel() for p in self.params)

    def outputs(self, x: Inputs, *, module: nn.Module | None = None) -> Any:
        """The logits of the model (or of ``module``, a model sharing its parameters, such as the
        batch-norm-folded one) on ``x``: ``model(**x)`` for dict inputs, and ``.logits`` of a
        ``ModelOutput`` or dict output. Every model call of the objective and its products goes here.
        Runs in the caller's mode (wrap in :meth:`model_mode`)."""
        return call_model(self.model if module is None else module, x)

    def functional_outputs(
        self, params: dict[str, torch.Tensor], x: Inputs, *, module: nn.Module | None = None
    ) -> Any:
        """:meth:`outputs` with ``params`` substituted (``torch.func.functional_call``)."""
        return call_functional(self.model if module is None else module, params, x)

    def batch_loss(self, x: Inputs, y: torch.Tensor) -> torch.Tensor:
        """Batch-mean loss at the model's current parameters (connected to the autograd graph)."""
        with self.model_mode():
            return self.loss_fn(self.outputs(x), y)

    def functional_batch_loss(
        self, params: dict[str, torch.Tensor], x: Inputs, y: torch.Tensor
    ) -> torch.Tensor:
        """Batch-mean loss with ``params`` substituted (for ``torch.func`` transforms)."""
        with self.model_mode():
            out = self.functional_outputs(params, x)
        return self.loss_fn(out, y)

    def param_dict(self) -> dict[str, torch.Tensor]:
        """The differentiated parameters by name (detached views)."""
        return {n: p.detach() for n, p in zip(self.param_names, self.params)}

    # -- reductions ---------------------------------------------------------------------------
    def evaluate(self) -> Evaluation:
        """Mean loss and accuracy over the whole dataset.

        Accuracy is the fraction of examples whose arg-max logit is the label for class outputs, the
        fraction of counted tokens for token outputs (after the causal shift), NaN for other outputs.
        """
        # On the CPU Python floats are the cheapest accumulators; on an accelerator the sums stay on
        # the device so that no batch waits for a synchronization.
        on_cpu = self.device.type == "cpu"
        loss_sum: float | torch.Tensor = (
            0.0 if on_cpu else torch.zeros((), dtype=torch.float64, device=self.device)
        )
        correct: float | torch.Tensor = (
            0.0 if on_cpu else torch.zeros((), dtype=torch.float64, device=self.device)
        )
        scored = 0  # examples, or counted tokens, that the accuracy is over
        classified = True
        with torch.no_grad(), self.model_mode():
            for x, y, w in self.batches():
                out = self.outputs(x)
                batch_loss = self.loss_fn(out, y)
                loss_sum += w * (float(batch_loss) if on_cpu else batch_loss.double())
                hits = _hits(out, y, self.causal)
                if hits is None:
                    classified = False
                else:
                    correct += int(hits[0]) if on_cpu else hits[0].double()
                    scored += hits[1]
        acc = torch.tensor(
            [float(loss_sum), float(correct), float(scored)], dtype=torch.float64, device=self.device
        )
        self.reduce_([acc])
        accuracy = float(acc[1]) / float(acc[2]) if classified and float(acc[2]) > 0 else float("nan")
        return Evaluation(loss=float(acc[0]), accuracy=accuracy, num_samples=self.num_samples)

    def loss(self) -> float:
        """Mean loss over the whole dataset."""
        return self.evaluate().loss

    def gradient(self) -> tuple[float, list[torch.Tensor]]:
        """Mean loss and its gradient with respect to ``params`` (one pass over the data)."""
        grads = [torch.zeros_like(p) for p in self.params]
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        with self.model_mode():
            for x, y, w in self.batches():
                loss = self.batch_loss(x, y)
                gs = torch.autograd.grad(loss, self.params, allow_unused=True)
                for acc, g in zip(grads, gs):
                    if g is not None:
                        acc.add_(g, alpha=w)
                total += w * loss.detach().double()
        self.reduce_([total, *grads])
        return float(total), grads

    def check_deterministic(self, *, rtol: float = 1e-6) -> None:
        """Two passes must give the same loss and gradient, or Lanczos silently breaks.

        Raises:
            NonDeterministicDataError: the loader or the model changes between passes
                (augmentation, shuffling, dropout in training mode).
        """
        sampler = getattr(self._loader, "sampler", None)
        if isinstance(sampler, RandomSampler):
            raise NonDeterministicDataError(
                "the DataLoader shuffles (shuffle=True): batches change between passes; use shuffle=False "
                "or pass allow_nondeterministic=True"
            )
        l1, g1 = self.gradient()
        l2, g2 = self.gradient()
        num = sum(float((a - b).pow(2).sum()) for a, b in zip(g1, g2)) ** 0.5
        den = sum(float(a.pow(2).sum()) for a in g1) ** 0.5
        if abs(l1 - l2) > rtol * max(abs(l1), 1e-12) or num > rtol * max(den, 1e-12):
            raise NonDeterministicDataError(
                f"two passes over the data gave different results (loss {l1:.8g} vs {l2:.8g}, "
                f"gradient relative change {num / max(den, 1e-30):.2e}): the loader shuffles or augments, "
                "or the model is stochastic; use a fixed loader or pass allow_nondeterministic=True"
            )

    def metadata(self) -> dict[str, Any]:
        """What every result records about the objective."""
        meta: dict[str, Any] = {
            "num_samples": self.num_samples,
            "num_params": self.num_params,
            "device": str(self.device),
            "dtype": dtype_name(self.dtype),
            "bn_mode": self.bn_mode,
        }
        if self.token_level:
            meta.update({"mean_over": "tokens", "num_tokens": self.num_terms, "causal": self.causal})
        return meta


def _with_causal(loss_fn: LossFn | None, causal: bool) -> LossFn:
    """The objective's loss: cross-entropy by default; a :class:`CrossEntropy` that has not decided
    whether it is causal gets the objective's decision (on a copy: the caller's loss is unchanged)."""
    if loss_fn is None:
        return CrossEntropy(causal=causal)
    if isinstance(loss_fn, CrossEntropy) and loss_fn.causal is None:
        return CrossEntropy(causal=causal)
    return loss_fn


def _hits(out: Any, y: torch.Tensor, causal: bool) -> tuple[torch.Tensor, int] | None:
    """(correct predictions, predictions scored) of a batch: examples for class outputs, counted
    tokens for token outputs; ``None`` when the outputs are not classifications."""
    if not isinstance(out, torch.Tensor) or y.is_floating_point():
        return None
    if out.dim() == 2 and y.dim() == 1:
        return (out.argmax(dim=1) == y).sum(), len(y)
    if is_token_batch(out, y):
        return token_hits(out, y, causal), num_terms(y, causal)
    return None


def _model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()
