"""Build any optimizer of the toolkit by name, and drive all of them with one training step.

Names (``OPTIMIZER_NAMES``, one entry each in :mod:`landscape.optim.registry`): ``sgd``, ``adam``,
``adamw`` (from torch), ``sam``, ``asam``, ``sam-direction``, ``sam-magnitude``, ``sgd-hess``,
``minmin``, ``msam``, ``adamw-msam-sf``, ``newton-summary``.

**Closure contract.** Every optimizer built here supports ``loss = optimizer.step(closure)``; the
closure *zeroes the gradients itself* (``optimizer.zero_grad()``), runs the forward pass, calls
``loss.backward()`` and returns the loss tensor. Optimizers call it as many times as they need (SAM
twice). Two kinds need more:

* ``sgd-hess``: when ``optimizer.needs_create_graph`` is True the closure must call
  ``loss.backward(create_graph=True)`` (Hessian-vector products);
* ``minmin``: the closure takes one argument, ``closure(phase)`` with ``phase`` in ``("small",
  "large")``, and must compute the loss on the small or the large (disjoint) batch.

``training_step(optimizer, model, loss_fn, batch, next_batch=None)`` builds the right closure for every
kind (``next_batch`` is the large batch of ``minmin`` and is ignored otherwise), so a training loop is::

    opt = make_optimizer(name, model, lr=0.1, momentum=0.9)
    for batch, next_batch in pairs:
        loss = training_step(opt, model, loss_fn, batch, next_batch)
        stats = step_statistics(opt)          # SAM family: grad_norm_ratio, cosine, frac_larger
    with evaluation_mode(opt):                # MSAM / schedule-free: evaluate the right parameters
        evaluate(model)

Returned losses: the loss at the parameters before the step for SGD, Adam(W), SAM, SAM-direction,
SAM-magnitude, SGD-Hess, Newton-summary and Min-Min (small batch); the loss at the ascent point for
MSAM and AdamW-MSAM-ScheduleFree (their only forward pass).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import Dataset

from landscape.errors import ConfigError, check_positive
from landscape.objective.inputs import call_model, split_batch
from landscape.optim._common import to_device
from landscape.optim.entry import BuildRequest
from landscape.optim.minmin import MinMinOptimizer
from landscape.optim.newton_training import NEWTON_HG_SAMPLES, NEWTON_SUMMARY_DEFAULTS
from landscape.optim.registry import OPTIMIZERS, optimizer_entry, optimizer_names

__all__ = [
    "DEFAULT_RHO",
    "NEWTON_HG_SAMPLES",
    "NEWTON_SUMMARY_DEFAULTS",
    "OPTIMIZER_NAMES",
    "evaluation_mode",
    "make_optimizer",
    "needs_two_batches",
    "resolve_options",
    "run_arguments",
    "run_option_defaults",
    "step_batch_sizes",
    "step_statistics",
    "training_step",
]

#: The registered names when this module was imported (:func:`~landscape.optim.registry.optimizer_names`
#: reads the registry at call time).
OPTIMIZER_NAMES: tuple[str, ...] = optimizer_names()

#: ``rho`` used when ``make_optimizer`` gets ``rho=None`` (the registry's ``default_rho``).
DEFAULT_RHO: dict[str, float] = {
    name: entry.default_rho for name, entry in OPTIMIZERS.items() if entry.default_rho is not None
}

LossFn = Callable[[Tensor, Tensor], Tensor]

#: Constructor arguments the factory sets itself (from ``lr``, ``momentum``, ``rho``, the model, the
#: name) or that are objects rather than hyperparameters: not method options.
_SET_BY_FACTORY = frozenset(
    {
        "params",
        "model",
        "base_optimizer",
        "full_loss",
        "hg_loader",
        "lr",
        "momentum",
        "weight_decay",
        "rho",
        "inner_step_size",
        "damping",
        "adaptive",
        "track_stats",
    }
)


def resolve_options(
    name: str, *, rho: float | None = None, **kwargs: Any
) -> tuple[float | None, dict[str, Any]]:
    """The radius and method options ``make_optimizer(name, ..., rho=rho, **kwargs)`` actually uses.

    A run records these rather than what was typed, so ``rho=None`` becomes the method's default
    radius (the registry entry's ``default_rho``) and every option of the method's own class that was
    not given takes the class default (after the entry's ``defaults``: for ``newton-summary``
    ``partition='canonical'`` and ``NEWTON_SUMMARY_DEFAULTS``). Options of torch's optimizers
    (``sgd``, ``adam``, ``adamw`` and the SAM family's base optimizer) are kept as given: their
    defaults belong to the installed torch. Options that are not the method's pass through unchanged,
    for the optimizer to refuse.

    Args:
        name: one of ``OPTIMIZER_NAMES`` (a registered name).
        rho: the radius asked for, or ``None`` for the method's default.
        **kwargs: method options as given to ``make_optimizer``.

    Returns:
        ``(rho, options)``: ``rho`` is ``None`` for the methods without a radius (``sgd``, ``adam``,
        ``adamw``, ``newton-summary``); ``options`` is a new dict.

    Raises:
        ConfigError: unknown name.
    """
    entry = optimizer_entry(name)
    resolved_rho = (rho if rho is not None else entry.default_rho) if entry.takes_rho else None
    options = dict(kwargs)
    for key, value in entry.defaults.items():
        options.setdefault(key, value)
    if entry.record_class_defaults:
        for arg in inspect.signature(entry.cls).parameters.values():
            if arg.name in _SET_BY_FACTORY or arg.default in (inspect.Parameter.empty, None):
                continue
            default = list(arg.default) if isinstance(arg.default, tuple) else arg.default
            options.setdefault(arg.name, default)
    return resolved_rho, options


def _option_names(name: str) -> list[str] | None:
    """The method options of ``name`` (``None`` where they are open-ended: torch's or a base optimizer's)."""
    entry = OPTIMIZERS[name]
    if not entry.record_class_defaults:
        return None
    params = inspect.signature(entry.cls).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [*entry.extra_options, *(p.name for p in params if p.name not in _SET_BY_FACTORY)]


def _refusal(name: str, exc: TypeError) -> ConfigError:
    message = f"optimizer {name!r} does not accept these options: {exc}"
    options = _option_names(name)
    if options is not None:
        message += (
            f"; its options are {', '.join(options)}"
            if options
            else "; it takes none besides lr, momentum, weight_decay and rho"
        )
    return ConfigError(message)


def make_optimizer(
    name: str,
    model: nn.Module,
    *,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    rho: float | None = None,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """Build the optimizer ``name`` over ``model``'s parameters (its registry entry says how).

    Args:
        name: one of ``OPTIMIZER_NAMES`` (a registered name).
        model: the model to train.
        lr: learning rate (for ``minmin`` the outer rate ``eta``; for ``newton-summary`` the global
            factor ``damping``; for ``adamw-msam-sf`` the peak rate).
        momentum: SGD momentum of ``sgd``, the SAM family's SGD base, ``sgd-hess``, ``minmin``,
            ``msam`` and of the direction of ``newton-summary`` (default 0 everywhere: pass it).
        weight_decay: L2 (SGD-based) or decoupled (``adamw``, ``adamw-msam-sf``) weight decay.
        rho: radius / strength of the method (``DEFAULT_RHO[name]`` when ``None``; see
            ``resolve_options`` for everything filled in); ``inner_step_size``
            of ``minmin``; ignored by ``sgd``, ``adam``, ``adamw``, ``newton-summary``.
        **kwargs: method options: ``decomposition`` (sam-direction/-magnitude), ``hessian_period``,
            ``seed`` (sgd-hess), ``small_batch_size``, ``large_batch_size`` (minmin), ``betas``,
            ``eps``, ``warmup_steps``, ``r``, ``weight_lr_power``, ``interpolation``
            (adamw-msam-sf), and for ``newton-summary`` the required ``loss_fn`` and ``hg_loader``
            plus ``partition`` (``canonical``/``trivial``/``wb``), ``damping_int``, ``period_hg``,
            ``mom_lrs``, ``remove_negative``, ``dampening`` (unset ones take
            ``NEWTON_SUMMARY_DEFAULTS``, the grnewt example's values). SAM-family names also accept
            ``base_optimizer`` (a class; default ``torch.optim.SGD``) and its options.

    Returns:
        A ``torch.optim.Optimizer`` following the closure contract of this module.

    Raises:
        ConfigError: unknown name, bad hyperparameter, or an option the optimizer does not take.
    """
    resolved_rho, options = resolve_options(name, rho=rho, **kwargs)
    check_positive("lr", lr)
    check_positive("weight_decay", weight_decay, allow_zero=True)
    entry = OPTIMIZERS[name]
    request = BuildRequest(
        model=model,
        params=[p for p in model.parameters() if p.requires_grad],
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        rho=resolved_rho,
        options=options,
    )
    try:
        return entry.build(entry.cls, request)
    except TypeError as exc:
        raise _refusal(name, exc) from exc


def run_option_defaults(name: str, *, seed: int) -> dict[str, Any]:
    """Options of ``name`` that a training run takes from its own settings when they are not given.

    ``sgd-hess`` draws its Rademacher probes from the run's ``seed`` (its entry's
    ``run_seed_option``), so a run is reproduced from its ``config.json`` alone. These are
    hyperparameters: pass them to :func:`resolve_options` (under the user's options) so that the run
    records them.

    Args:
        name: one of ``OPTIMIZER_NAMES``.
        seed: the run's seed.

    Returns:
        A new dict (empty for the methods that need nothing from the run).
    """
    key = optimizer_entry(name).run_seed_option
    return {key: seed} if key is not None else {}


def run_arguments(name: str, *, train_data: Dataset, loss_fn: LossFn) -> dict[str, Any]:
    """Objects (not hyperparameters, never recorded) that ``name`` needs from the training run.

    ``newton-summary`` needs the loss and a fixed loader for ``H-bar``, ``g-bar`` and ``D``: one batch
    of the first ``NEWTON_HG_SAMPLES`` training examples, in order (Wolinski 2023, arXiv 2312.03885,
    computes them on a separate fixed loader ``hg_loader``).

    Args:
        name: one of ``OPTIMIZER_NAMES``.
        train_data: the training set.
        loss_fn: ``loss_fn(logits, y) -> scalar``, the training loss.

    Returns:
        Keyword arguments for :func:`make_optimizer` (empty for the other methods).
    """
    entry = optimizer_entry(name)
    return entry.run_arguments(train_data, loss_fn) if entry.run_arguments is not None else {}


def step_batch_sizes(optimizer: torch.optim.Optimizer, batch_size: int) -> tuple[int, int]:
    """``(small, large)``: the examples one step of ``optimizer`` takes from the training set.

    Min-Min takes two disjoint batches, ``small_batch_size`` then ``large_batch_size`` (default
    ``batch_size`` and ``4 * batch_size`` for an optimizer without those attributes); every other
    optimizer takes one batch of ``batch_size`` (``large = 0``).
    """
    if not needs_two_batches(optimizer):
        return batch_size, 0
    small = int(getattr(optimizer, "small_batch_size", batch_size))
    large = int(getattr(optimizer, "large_batch_size", 4 * batch_size))
    return small, large


def needs_two_batches(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``training_step`` needs ``next_batch`` for this optimizer (Min-Min)."""
    return isinstance(optimizer, MinMinOptimizer)


def training_step(
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    loss_fn: LossFn,
    batch: Sequence[Any] | Mapping[str, Any],
    next_batch: Sequence[Any] | Mapping[str, Any] | None = None,
    *,
    clip_grad_norm: float | None = None,
) -> float:
    """One optimization step of any optimizer from ``make_optimizer`` (or torch's own).

    Args:
        optimizer: the optimizer.
        model: the model; batches are moved to the device of its first parameter.
        loss_fn: ``loss_fn(logits, y) -> scalar``; the model is called as
            :func:`~landscape.objective.inputs.call_model` does (``model(**x)`` for dict inputs, the
            ``logits`` of a ``ModelOutput``).
        batch: ``(x, y)``, ``x`` a tensor or a dict of inputs, or a dict batch holding ``labels``.
        next_batch: a second, disjoint batch; required by ``minmin`` (its large batch), ignored
            by the others.
        clip_grad_norm: clip the gradient of every pass to this global 2-norm
            (``torch.nn.utils.clip_grad_norm_``) before the optimizer uses it; ``None``: no clipping.

    Returns:
        The loss as a float (see the module docstring for where each optimizer evaluates it).
    """
    device = next(model.parameters()).device
    if needs_two_batches(optimizer):
        if next_batch is None:
            raise ConfigError("next_batch=None: the 'minmin' optimizer needs a second, disjoint batch")
        batches = {"small": _on_device(batch, device), "large": _on_device(next_batch, device)}
    else:
        batches = {"small": _on_device(batch, device)}
    create_graph = bool(getattr(optimizer, "needs_create_graph", False))

    def closure(phase: str = "small") -> Tensor:
        x, y = batches[phase]
        optimizer.zero_grad()
        # a product through the gradient (SGD-Hess) needs attention's double backward: the math kernel
        with sdpa_kernel(SDPBackend.MATH) if create_graph else nullcontext():
            loss = loss_fn(call_model(model, x), y)
            with warnings.catch_warnings():
                # SGD-Hess detaches the gradients after its product, which breaks the cycle torch warns of
                warnings.filterwarnings("ignore", message=r"Using backward\(\) with create_graph=True")
                loss.backward(create_graph=create_graph)
        if clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        return loss

    loss = optimizer.step(closure)
    return float(loss.detach()) if isinstance(loss, Tensor) else float("nan")


def _on_device(batch: Sequence[Any] | Mapping[str, Any], device: torch.device) -> tuple[Any, Tensor]:
    """``(inputs, targets)`` of a batch on ``device`` (dtypes as they are); dict inputs tensor by tensor."""
    x, y = split_batch(batch)
    if isinstance(x, Mapping):
        return {k: to_device(v, device) for k, v in x.items()}, to_device(y, device)
    return to_device(x, device), to_device(y, device)


def step_statistics(optimizer: torch.optim.Optimizer) -> dict[str, float] | None:
    """``{"grad_norm_ratio", "cosine", "frac_larger"}`` of the last step (SAM family), else ``None``."""
    stats = getattr(optimizer, "last_stats", None)
    return dict(stats) if stats is not None else None


@contextmanager
def evaluation_mode(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Inside the block the model holds the parameters to evaluate or save.

    MSAM puts back the unperturbed weights, AdamW-MSAM-ScheduleFree the averaged sequence ``x``; both
    return bit-exactly to the training parameters afterwards. A no-op for the other optimizers.
    """
    has_modes = hasattr(optimizer, "eval") and hasattr(optimizer, "train")
    was_training = bool(getattr(optimizer, "train_mode", True))
    if has_modes:
        optimizer.eval()  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if has_modes and was_training:
            optimizer.train()  # type: ignore[attr-defined]
