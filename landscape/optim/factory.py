"""Build any optimizer of the toolkit by name, and drive all of them with one training step.

Names (``OPTIMIZER_NAMES``): ``sgd``, ``adam``, ``adamw`` (from torch), ``sam``, ``asam``,
``sam-direction``, ``sam-magnitude``, ``sgd-hess``, ``minmin``, ``msam``, ``adamw-msam-sf``,
``newton-summary``.

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from landscape.data.datasets import analysis_loader
from landscape.errors import ConfigError, check_choice, check_positive
from landscape.optim.minmin import MinMinOptimizer
from landscape.optim.msam import MSAM, AdamWMSAMScheduleFree
from landscape.optim.newton import NewtonSummary, partition
from landscape.optim.sam import SAM, SAMDirection, SAMMagnitude
from landscape.optim.sgd_hess import SGDHess

OPTIMIZER_NAMES: tuple[str, ...] = (
    "sgd",
    "adam",
    "adamw",
    "sam",
    "asam",
    "sam-direction",
    "sam-magnitude",
    "sgd-hess",
    "minmin",
    "msam",
    "adamw-msam-sf",
    "newton-summary",
)

#: ``rho`` used when ``make_optimizer`` gets ``rho=None``.
DEFAULT_RHO: dict[str, float] = {
    "sam": 0.05,
    "asam": 0.5,
    "sam-direction": 0.05,
    "sam-magnitude": 0.05,
    "sgd-hess": 0.05,
    "minmin": 0.1,
    "msam": 0.3,
    "adamw-msam-sf": 0.05,
}

#: Options ``make_optimizer("newton-summary", ...)`` fills in when not given (the grnewt example's).
NEWTON_SUMMARY_DEFAULTS: dict[str, Any] = {
    "damping_int": 10.0,
    "period_hg": 10,
    "mom_lrs": 0.5,
    "remove_negative": True,
}

#: Newton-summary in a training run: H-bar, g-bar and D come from one fixed batch of the first
#: ``NEWTON_HG_SAMPLES`` training examples.
NEWTON_HG_SAMPLES = 512

LossFn = Callable[[Tensor, Tensor], Tensor]

#: The class behind each name whose own keyword defaults ``resolve_options`` records.
_METHOD_CLASSES: dict[str, type] = {
    "sam": SAM,
    "asam": SAM,
    "sam-direction": SAMDirection,
    "sam-magnitude": SAMMagnitude,
    "sgd-hess": SGDHess,
    "minmin": MinMinOptimizer,
    "msam": MSAM,
    "adamw-msam-sf": AdamWMSAMScheduleFree,
    "newton-summary": NewtonSummary,
}
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
    radius (``DEFAULT_RHO``) and every option of the method's own class that was not given takes
    the class default (``newton-summary``: ``partition='canonical'`` and
    ``NEWTON_SUMMARY_DEFAULTS`` first). Options of torch's optimizers (``sgd``, ``adam``, ``adamw``
    and the SAM family's base optimizer) are kept as given: their defaults belong to the installed
    torch. Options that are not the method's pass through unchanged, for the optimizer to refuse.

    Args:
        name: one of ``OPTIMIZER_NAMES``.
        rho: the radius asked for, or ``None`` for the method's default.
        **kwargs: method options as given to ``make_optimizer``.

    Returns:
        ``(rho, options)``: ``rho`` is ``None`` for the methods that ignore it (``sgd``, ``adam``,
        ``adamw``, ``newton-summary``); ``options`` is a new dict.

    Raises:
        ConfigError: unknown name.
    """
    check_choice("optimizer", name, OPTIMIZER_NAMES)
    resolved_rho = (rho if rho is not None else DEFAULT_RHO[name]) if name in DEFAULT_RHO else None
    options = dict(kwargs)
    if name == "newton-summary":
        options.setdefault("partition", "canonical")
        for key, value in NEWTON_SUMMARY_DEFAULTS.items():
            options.setdefault(key, value)
    cls = _METHOD_CLASSES.get(name)
    if cls is not None:
        for arg in inspect.signature(cls).parameters.values():
            if arg.name in _SET_BY_FACTORY or arg.default in (inspect.Parameter.empty, None):
                continue
            default = list(arg.default) if isinstance(arg.default, tuple) else arg.default
            options.setdefault(arg.name, default)
    return resolved_rho, options


def _build(cls: Callable[..., torch.optim.Optimizer], name: str, *args: Any, **kwargs: Any) -> Any:
    try:
        return cls(*args, **kwargs)
    except TypeError as exc:
        message = f"optimizer {name!r} does not accept these options: {exc}"
        options = _option_names(name)
        if options is not None:
            message += (
                f"; its options are {', '.join(options)}"
                if options
                else "; it takes none besides lr, momentum, weight_decay and rho"
            )
        raise ConfigError(message) from exc


def _option_names(name: str) -> list[str] | None:
    """The method options of ``name`` (``None`` where they are open-ended: torch's or a base optimizer's)."""
    cls = _METHOD_CLASSES.get(name)
    if cls is None:
        return None
    params = inspect.signature(cls).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    extra = ["partition"] if name == "newton-summary" else []
    return extra + [p.name for p in params if p.name not in _SET_BY_FACTORY]


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
    """Build the optimizer ``name`` over ``model``'s parameters.

    Args:
        name: one of ``OPTIMIZER_NAMES``.
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
    resolved_rho, kwargs = resolve_options(name, rho=rho, **kwargs)
    check_positive("lr", lr)
    check_positive("weight_decay", weight_decay, allow_zero=True)
    rho = resolved_rho if resolved_rho is not None else 0.0
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return _build(
            torch.optim.SGD, name, params, lr=lr, momentum=momentum, weight_decay=weight_decay, **kwargs
        )
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return _build(cls, name, params, lr=lr, weight_decay=weight_decay, **kwargs)
    if name in ("sam", "asam", "sam-direction", "sam-magnitude"):
        base = kwargs.pop("base_optimizer", torch.optim.SGD)
        base_kw: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay}
        if base is torch.optim.SGD:
            base_kw["momentum"] = momentum
        if name in ("sam", "asam"):
            return _build(
                SAM, name, params, base, rho=rho, adaptive=name == "asam", model=model, **base_kw, **kwargs
            )
        cls2 = SAMDirection if name == "sam-direction" else SAMMagnitude
        return _build(cls2, name, params, base, rho=rho, model=model, **base_kw, **kwargs)
    if name == "sgd-hess":
        return _build(
            SGDHess, name, params, lr=lr, rho=rho, momentum=momentum, weight_decay=weight_decay, **kwargs
        )
    if name == "minmin":
        base_opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        return _build(MinMinOptimizer, name, model, base_opt, inner_step_size=rho, **kwargs)
    if name == "msam":
        return _build(
            MSAM, name, params, lr=lr, momentum=momentum, rho=rho, weight_decay=weight_decay, **kwargs
        )
    if name == "adamw-msam-sf":
        return _build(
            AdamWMSAMScheduleFree, name, params, lr=lr, rho=rho, weight_decay=weight_decay, **kwargs
        )
    # newton-summary
    loss_fn = kwargs.pop("loss_fn", None)
    hg_loader = kwargs.pop("hg_loader", None)
    if loss_fn is None or hg_loader is None:
        raise ConfigError(
            "optimizer 'newton-summary' needs loss_fn=... and hg_loader=... (a fixed loader for H-bar/g-bar)"
        )
    # resolve_options filled in the seed example's settings (grnewt README): the class's plain
    # defaults (damping_int=1, rates recomputed every step, no smoothing) diverged on digits at lr >= 0.5.
    kind = kwargs.pop("partition")
    groups, _ = partition(model, kind)

    def full_loss(x: Any, target: Any) -> Tensor:
        device = next(model.parameters()).device
        return loss_fn(model(_to(x, device)), _to(target, device))

    return _build(NewtonSummary, name, groups, full_loss, hg_loader, damping=lr, momentum=momentum, **kwargs)


def run_option_defaults(name: str, *, seed: int) -> dict[str, Any]:
    """Options of ``name`` that a training run takes from its own settings when they are not given.

    ``sgd-hess`` draws its Rademacher probes from the run's ``seed``, so a run is reproduced from its
    ``config.json`` alone. These are hyperparameters: pass them to :func:`resolve_options` (under the
    user's options) so that the run records them.

    Args:
        name: one of ``OPTIMIZER_NAMES``.
        seed: the run's seed.

    Returns:
        A new dict (empty for the methods that need nothing from the run).
    """
    check_choice("optimizer", name, OPTIMIZER_NAMES)
    return {"seed": seed} if name == "sgd-hess" else {}


def run_arguments(name: str, *, train_data: Dataset, loss_fn: LossFn) -> dict[str, Any]:
    """Objects (not hyperparameters, never recorded) that ``name`` needs from the training run.

    ``newton-summary`` needs the loss and a fixed loader for ``H-bar``, ``g-bar`` and ``D``: one batch
    of the first ``NEWTON_HG_SAMPLES`` training examples, in order (Wolinski 2023, arXiv 2312.03885,
    computes them on a separate fixed loader ``hg_loader``).

    Args:
        name: one of ``OPTIMIZER_NAMES``.
        train_data: the training set.
        loss_fn: ``loss_fn(model(x), y) -> scalar``, the training loss.

    Returns:
        Keyword arguments for :func:`make_optimizer` (empty for the other methods).
    """
    check_choice("optimizer", name, OPTIMIZER_NAMES)
    if name != "newton-summary":
        return {}
    first = list(range(min(len(train_data), NEWTON_HG_SAMPLES)))  # type: ignore[arg-type]
    return {"loss_fn": loss_fn, "hg_loader": analysis_loader(Subset(train_data, first), NEWTON_HG_SAMPLES)}


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


def _to(x: Any, device: torch.device) -> Any:
    if isinstance(x, Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, (list, tuple)):
        return type(x)(_to(v, device) for v in x)
    return x


def needs_two_batches(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``training_step`` needs ``next_batch`` for this optimizer (Min-Min)."""
    return isinstance(optimizer, MinMinOptimizer)


def training_step(
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    loss_fn: LossFn,
    batch: Sequence[Any],
    next_batch: Sequence[Any] | None = None,
) -> float:
    """One optimization step of any optimizer from ``make_optimizer`` (or torch's own).

    Args:
        optimizer: the optimizer.
        model: the model; batches are moved to the device of its first parameter.
        loss_fn: ``loss_fn(model(x), y) -> scalar``.
        batch: ``(x, y)``.
        next_batch: a second, disjoint ``(x, y)``; required by ``minmin`` (its large batch), ignored
            by the others.

    Returns:
        The loss as a float (see the module docstring for where each optimizer evaluates it).
    """
    device = next(model.parameters()).device
    if needs_two_batches(optimizer):
        if next_batch is None:
            raise ConfigError("next_batch=None: the 'minmin' optimizer needs a second, disjoint batch")
        batches = {"small": _to(batch, device), "large": _to(next_batch, device)}
    else:
        batches = {"small": _to(batch, device)}

    def closure(phase: str = "small") -> Tensor:
        x, y = batches[phase][0], batches[phase][1]
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        create_graph = bool(getattr(optimizer, "needs_create_graph", False))
        with warnings.catch_warnings():
            # SGD-Hess detaches the gradients after its product, which breaks the cycle torch warns of
            warnings.filterwarnings("ignore", message=r"Using backward\(\) with create_graph=True")
            loss.backward(create_graph=create_graph)
        return loss

    loss = optimizer.step(closure)
    return float(loss.detach()) if isinstance(loss, Tensor) else float("nan")


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
