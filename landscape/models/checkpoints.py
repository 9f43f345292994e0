"""Checkpoints: our own format, plain state dicts, Lightning-style dicts and ``.safetensors`` files.

Our format is a dict::

    {"format": "landscape-checkpoint", "format_version": 1,
     "model": {"name": "resnet18", "kwargs": {...}},  "state_dict": {...},
     "data": {...} | None, "optimizer": {"name": ..., "hparams": {...}} | None,
     "step": int | None, "epoch": int | None, "metrics": {...}, "extra": {...}}

Everything loads with ``torch.load(..., weights_only=True)``; a pickled ``nn.Module`` needs the explicit
``unsafe_load=True`` (``--unsafe-load``), because unpickling it can run arbitrary code.
"""

from __future__ import annotations

import pickle
import re
import struct
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landscape.data.datasets import DataSpec
from landscape.errors import CheckpointError, LandscapeError
from landscape.io.atomic import atomic_torch_save
from landscape.models.builders import ModelSpec, build_model

FORMAT_NAME = "landscape-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """What a checkpoint file holds, whatever its on-disk format."""

    state_dict: dict[str, torch.Tensor]
    source_format: str
    model_spec: ModelSpec | None = None
    data_spec: DataSpec | None = None
    optimizer: dict[str, Any] | None = None
    step: int | None = None
    epoch: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    module: nn.Module | None = None  # only for an unsafe-loaded pickled module
    # The weights under the names the file gives them (``n_averaged`` left out): what a model's keys
    # are matched against, with and without each known prefix.
    file_state_dict: dict[str, torch.Tensor] | None = None
    removed_prefix: str = ""  # the prefix chain taken off the file's names ("" for none)
    ignored_keys: list[str] = field(default_factory=list)  # file names that are not the model's
    filled_keys: list[str] = field(default_factory=list)  # model buffers the file lacks, filled with 0
    weights: str | None = None  # the file's key the weights came from ("state_dict", "state_dict_ema")
    other_weights: list[str] = field(default_factory=list)  # other weight sets the file holds


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    model_spec: ModelSpec,
    data_spec: DataSpec | None = None,
    optimizer: dict[str, Any] | None = None,
    step: int | None = None,
    epoch: int | None = None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint in our format, atomically (temporary file, then rename).

    Args:
        path: destination file.
        model: the model whose ``state_dict`` is saved (moved to CPU in the file).
        model_spec: how to rebuild the model.
        data_spec: the data the model was trained on, if known.
        optimizer: ``{"name": ..., "hparams": {...}}`` of the optimizer that trained it.
        step: optimizer steps taken.
        epoch: epochs completed.
        metrics: scalar metrics (loss, accuracy, ...).
        extra: any further JSON-like metadata (e.g. seed).
    """
    obj = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": model_spec.to_dict(),
        "state_dict": OrderedDict((k, v.detach().cpu()) for k, v in model.state_dict().items()),
        "data": data_spec.to_dict() if data_spec is not None else None,
        "optimizer": optimizer,
        "step": step,
        "epoch": epoch,
        "metrics": dict(metrics or {}),
        "extra": dict(extra or {}),
    }
    return atomic_torch_save(obj, path)


def _check_file(p: Path) -> None:
    if not p.exists():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist")
    if p.is_dir():
        raise CheckpointError(f"checkpoint {str(p)!r} is a directory, not a file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(p)!r} is empty")


def _load_safetensors(p: Path) -> Checkpoint:
    try:
        from safetensors.torch import load_file
    except ImportError as exc:  # pragma: no cover - safetensors is a runtime dependency
        raise CheckpointError("reading .safetensors needs the 'safetensors' package") from exc
    try:
        sd = load_file(str(p), device="cpu")
    except Exception as exc:
        raise CheckpointError(f"checkpoint {str(p)!r} is not a valid .safetensors file: {exc}") from exc
    return Checkpoint(state_dict=dict(sd), source_format="safetensors", path=str(p), file_state_dict=dict(sd))


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


# Prefixes wrappers put before a model's own names: DataParallel / DDP / AveragedModel ("module."),
# torch.compile ("_orig_mod."), PyTorch Lightning ("model."); they nest in any order.
KNOWN_PREFIXES = ("module.", "_orig_mod.", "model.")
_MAX_PREFIX_DEPTH = 3
# Keys a wrapper adds that are no weights of the model (AveragedModel's count of averaged models).
_WRAPPER_KEYS = ("n_averaged",)


def _without_wrapper_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    kept = {k: v for k, v in sd.items() if k not in _WRAPPER_KEYS}
    return kept if kept else sd


def common_prefix(keys: list[str]) -> str:
    """The longest chain of known prefixes that every key starts with ("" when there is none)."""
    chain = ""
    while keys and chain.count(".") < _MAX_PREFIX_DEPTH:
        step = next((q for q in KNOWN_PREFIXES if all(k.startswith(chain + q) for k in keys)), None)
        if step is None or all(k == chain + step for k in keys):
            break
        chain += step
    return chain


def _strip_common_prefix(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    chain = common_prefix(list(sd))
    return ({k[len(chain) :]: v for k, v in sd.items()} if chain else sd), chain


def load_checkpoint(path: str | Path, *, unsafe_load: bool = False, weights: str | None = None) -> Checkpoint:
    """Read any supported checkpoint into a :class:`Checkpoint` (tensors on the CPU).

    Accepted: our format; a plain ``state_dict``; a dict holding ``state_dict`` or ``model``
    (PyTorch Lightning ``.ckpt`` files) or ``state_dict_ema`` (timm); ``.safetensors``; and, only with
    ``unsafe_load=True``, a pickled ``nn.Module``. Wrapper prefixes (``module.``, ``_orig_mod.``,
    ``model.``, nested in any order) that every name carries are removed here; :func:`load_model`
    matches the file's names against the model's again, with and without each prefix.

    Args:
        path: the checkpoint file.
        unsafe_load: allow unpickling a whole ``nn.Module``.
        weights: ``None`` for the file's main weights, ``"ema"`` for a timm file's ``state_dict_ema``.

    Raises:
        CheckpointError: missing, a directory, empty, truncated, not a checkpoint, or unsafe.
    """
    p = Path(path)
    if weights not in (None, "ema"):
        raise CheckpointError(
            f"the weight set {weights!r} is not known; ask for 'ema' (a timm file's state_dict_ema) or none"
        )
    ckpt = _load_any(p, unsafe_load, weights)
    if weights == "ema" and ckpt.weights != "state_dict_ema":
        raise CheckpointError(
            f"checkpoint {str(p)!r} has no 'state_dict_ema' (it holds one set of weights); "
            "load it without asking for the EMA weights"
        )
    return ckpt


def _load_any(p: Path, unsafe_load: bool, weights: str | None) -> Checkpoint:
    _check_file(p)
    if p.suffix == ".safetensors":
        return _load_safetensors(p)
    try:
        with warnings.catch_warnings():
            # torch's two-line note on plain pickle files; the refusal below says what matters.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        is_plain_pickle, planted = _scan_plain_pickle(p)
        blocked = planted or _blocked_global(str(exc))
        if blocked is not None:
            if not unsafe_load:
                raise CheckpointError(
                    f"checkpoint {str(p)!r} contains the pickled Python object {blocked!r}, which is not "
                    "plain weights and could run code when loaded; refusing. If you trust this file, pass "
                    "unsafe_load=True, which executes code from the file"
                ) from None
            return _load_unsafe(p, blocked, weights)
        if is_plain_pickle:
            raise CheckpointError(
                f"checkpoint {str(p)!r} was written by pickle, not torch.save, and cannot be read "
                "safely; re-save it with torch.save(state_dict, path)"
            ) from None
        raise CheckpointError(f"checkpoint {str(p)!r} is corrupt or not a PyTorch checkpoint") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {str(p)!r} is truncated or not a PyTorch file: {_first_line(str(exc))}"
        ) from None
    except Exception:  # corrupt bytes can break the unpickler in any way (IndexError, KeyError, ...)
        raise CheckpointError(f"checkpoint {str(p)!r} is corrupt or not a PyTorch checkpoint") from None
    return _from_object(obj, p, weights)


# torch names the refused object "GLOBAL module.name" in every wording it has used
# ("Unsupported global: GLOBAL x.y was not an allowed global", "unsupported GLOBAL posix.system whose
# module posix is blocked"); anything else ("Unsupported operand", bad magic) is a corrupt file.
_GLOBAL_RE = re.compile(r"GLOBAL ([A-Za-z_][\w.]*)")


def _blocked_global(message: str) -> str | None:
    """The dotted name of the global a weights-only load refused, or ``None`` if none is named."""
    match = _GLOBAL_RE.search(message)
    return match.group(1).rstrip(".") if match else None


_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}


# What plain tensors and state dicts pickle as; anything else is the object to name.
_WEIGHTS_GLOBALS = {"collections.OrderedDict", "_codecs.encode"}


def _is_weights_global(name: str) -> bool:
    return name in _WEIGHTS_GLOBALS or name.startswith("torch.")


def _scan_plain_pickle(p: Path) -> tuple[bool, str | None]:
    """Whether ``p`` is a plain (non-zip) pickle, and the first non-torch global it refers to.

    Found by reading the opcodes (``pickletools``, which never imports or calls anything): plain
    ``pickle.dump`` files of protocol 4+ fail torch's weights-only loader on the FRAME opcode before it
    reaches any global, so torch's message does not name the dangerous one.
    """
    import pickletools

    if zipfile.is_zipfile(p):
        return False, None
    recent: list[object] = []  # the values of the last pushes, enough to resolve STACK_GLOBAL
    memo: dict[object, object] = {}
    try:
        with open(p, "rb") as fh:
            for opcode, arg, _ in pickletools.genops(fh):
                name = opcode.name
                found = None
                if name in ("GLOBAL", "INST"):
                    found = str(arg).replace(" ", ".")
                elif name == "STACK_GLOBAL":
                    named = len(recent) >= 2 and all(isinstance(v, str) for v in recent[-2:])
                    found = f"{recent[-2]}.{recent[-1]}" if named else "an unnamed global"
                if found is not None:
                    if not _is_weights_global(found):
                        return True, found
                    recent.append(None)
                elif name in _STRING_OPS:
                    recent.append(arg)
                elif name == "MEMOIZE":
                    memo[len(memo)] = recent[-1] if recent else None
                elif name in _PUT_OPS:
                    memo[arg] = recent[-1] if recent else None
                elif name in _GET_OPS:
                    recent.append(memo.get(arg))
                elif name not in ("FRAME", "PROTO"):
                    recent.append(None)
                if name == "STOP":
                    return True, None
    except (ValueError, EOFError, OSError, struct.error, pickle.UnpicklingError):  # not a pickle stream
        return False, None
    return False, None


def _first_line(msg: str) -> str:
    return msg.strip().splitlines()[0][:200] if msg.strip() else "unknown error"


def _load_unsafe(p: Path, blocked: str, weights: str | None) -> Checkpoint:
    try:
        obj = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:  # the file's own code ran and failed: any exception type is possible
        raise CheckpointError(
            f"checkpoint {str(p)!r} could not be unpickled even with unsafe_load=True (it refers to "
            f"{blocked!r}): {type(exc).__name__}: {_first_line(str(exc))}"
        ) from None
    if isinstance(obj, nn.Module):
        return Checkpoint(
            state_dict=dict(obj.state_dict()), source_format="pickled-module", path=str(p), module=obj
        )
    return _from_object(obj, p, weights)


def _from_object(obj: Any, p: Path, weights: str | None = None) -> Checkpoint:
    if isinstance(obj, dict) and obj.get("format") == FORMAT_NAME:
        version = obj.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint {str(p)!r} has format_version {version!r}; this landscape reads up to {FORMAT_VERSION}"
            )
        model = obj.get("model")
        data = obj.get("data")
        return Checkpoint(
            state_dict=_own_format_state_dict(obj, p),
            source_format="landscape",
            model_spec=_own_format_model_spec(model, p) if model else None,
            data_spec=DataSpec.from_dict(data) if isinstance(data, dict) and data else None,
            optimizer=obj.get("optimizer"),
            step=obj.get("step"),
            epoch=obj.get("epoch"),
            metrics=dict(obj.get("metrics") or {}),
            extra=dict(obj.get("extra") or {}),
            path=str(p),
        )
    if _is_state_dict(obj):
        return _foreign_checkpoint(dict(obj), "state_dict", p)
    if isinstance(obj, dict):
        others = [k for k in _WEIGHT_SETS if _is_state_dict(obj.get(k))]
        if weights == "ema":
            if "state_dict_ema" not in others:
                held = ", ".join(repr(k) for k in others) or "no other weight set"
                raise CheckpointError(
                    f"checkpoint {str(p)!r} has no 'state_dict_ema' (it holds {held}); "
                    "load it without asking for the EMA weights"
                )
            key = "state_dict_ema"
        else:
            key = next((k for k in others if k != "state_dict_ema"), others[0] if others else None)
        if key is not None:
            fmt = _WEIGHT_SETS[key]
            if key == "state_dict" and "pytorch-lightning_version" not in obj:
                fmt = "dict"
            step = obj.get("global_step", obj.get("step"))
            epoch = obj.get("epoch")
            ckpt = _foreign_checkpoint(dict(obj[key]), fmt, p)
            ckpt.step = step if isinstance(step, int) else None
            ckpt.epoch = epoch if isinstance(epoch, int) else None
            ckpt.weights = key
            ckpt.other_weights = [k for k in others if k != key]
            return ckpt
    raise CheckpointError(
        f"checkpoint {str(p)!r} holds a {type(obj).__name__} that is neither a state_dict nor a dict with "
        "'state_dict'/'model' tensors"
    )


# Where a dict-shaped file keeps its weights, in the order they are looked for, and the format it is.
_WEIGHT_SETS = {
    "state_dict": "lightning",
    "model_state_dict": "dict",
    "model": "dict",
    "state_dict_ema": "dict",
}


def _foreign_checkpoint(raw: dict[str, torch.Tensor], fmt: str, p: Path) -> Checkpoint:
    """A checkpoint of weights without a model spec: names as in the file, and without a common prefix."""
    file_sd = _without_wrapper_keys(raw)
    sd, chain = _strip_common_prefix(file_sd)
    return Checkpoint(
        state_dict=sd, source_format=fmt, path=str(p), file_state_dict=file_sd, removed_prefix=chain
    )


def _own_format_state_dict(obj: dict[str, Any], p: Path) -> dict[str, torch.Tensor]:
    if "state_dict" not in obj:
        raise CheckpointError(
            f"checkpoint {str(p)!r} says it is a {FORMAT_NAME} file but has no 'state_dict' key; "
            "the file is damaged or was not written by landscape.models.checkpoints.save_checkpoint"
        )
    sd = obj["state_dict"]
    if not isinstance(sd, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()
    ):
        raise CheckpointError(
            f"checkpoint {str(p)!r}: key 'state_dict' holds a {type(sd).__name__}, not a mapping of "
            "names to tensors"
        )
    return dict(sd)


def _own_format_model_spec(model: Any, p: Path) -> ModelSpec:
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise CheckpointError(
            f"checkpoint {str(p)!r}: key 'model' holds {model!r:.80}, not a spec like "
            "{'name': 'cnn', 'kwargs': {...}}; pass model='NAME' to say which model it holds"
        )
    kwargs = model.get("kwargs")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise CheckpointError(
            f"checkpoint {str(p)!r}: key 'model' has kwargs {kwargs!r:.80}, not a dict of keyword arguments"
        )
    return ModelSpec.from_dict(model)


@dataclass
class KeyFit:
    """How a file's names map onto a model's: the prefix chain taken off, and what does not fit."""

    prefix: str
    state_dict: dict[str, torch.Tensor]  # under the model's names
    file_names: dict[str, str]  # model name -> the name in the file
    missing: list[str]  # model names the file lacks (num_batches_tracked aside)
    unexpected: list[str]  # file names that are not the model's

    @property
    def exact(self) -> bool:
        return not self.missing and not self.unexpected

    @property
    def tolerable(self) -> bool:
        """Every model name found, and the rest only keys outside the removed prefix (a Lightning
        module's loss weights, say), so they cannot be part of the model."""
        return (
            bool(self.prefix)
            and not self.missing
            and not any(k.startswith(self.prefix) for k in self.unexpected)
        )


def _prefix_chains(keys: list[str]) -> list[str]:
    """ "" and every chain of known prefixes that some key starts with, shortest first."""
    chains = [""]
    for chain in chains:  # grows while it is walked: a breadth-first search over chains
        if chain.count(".") >= _MAX_PREFIX_DEPTH:
            continue
        for q in KNOWN_PREFIXES:
            if chain + q not in chains and any(k.startswith(chain + q) for k in keys):
                chains.append(chain + q)
    return chains


def _fit_with(file_sd: dict[str, torch.Tensor], prefix: str, own: dict[str, torch.Tensor]) -> KeyFit:
    names: dict[str, str] = {}
    for k in file_sd:
        if prefix and k.startswith(prefix):
            names[k[len(prefix) :]] = k
    for k in file_sd:
        if not (prefix and k.startswith(prefix)):
            names.setdefault(k, k)
    missing = [k for k in own if k not in names and k.rsplit(".", 1)[-1] != "num_batches_tracked"]
    unexpected = [raw for name, raw in names.items() if name not in own]
    kept = {name: file_sd[raw] for name, raw in names.items() if name in own}
    return KeyFit(prefix, kept, {n: r for n, r in names.items() if n in own}, missing, unexpected)


def fit_keys(file_sd: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> KeyFit:
    """The mapping of a file's names onto a model's that fits best.

    The names as they are come first (a model whose own submodule is called ``module`` keeps it),
    then each chain of known prefixes, shortest first; an exact fit beats one that leaves keys
    outside the prefix over; when none fits, the one with the fewest problems is returned.
    """
    fits = [_fit_with(file_sd, chain, own) for chain in _prefix_chains(list(file_sd))]
    exact = next((f for f in fits if f.exact), None)
    if exact is not None:
        return exact
    tolerable = next((f for f in fits if f.tolerable), None)
    if tolerable is not None:
        return tolerable
    return min(fits, key=lambda f: len(f.missing) + len(f.unexpected))


def load_state_into(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    *,
    source: str = "checkpoint",
    file_names: dict[str, str] | None = None,
    unexpected: list[str] | None = None,
) -> None:
    """Load ``state_dict`` strictly; on mismatch raise one message listing every problem.

    Args:
        model: the model to load into.
        state_dict: weights under the model's names.
        source: what the weights come from, for the message.
        file_names: model name -> the name in the file, so messages name keys as the file does.
        unexpected: the file's names that fit no model name (default: those of ``state_dict``).
    """
    own = model.state_dict()
    named = file_names or {}
    missing = [k for k in own if k not in state_dict]
    if unexpected is None:
        unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{named.get(k, k)} {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)
    ]
    not_floating = [
        f"{named.get(k, k)} ({str(state_dict[k].dtype).replace('torch.', '')})"
        for k in own
        if k in state_dict and own[k].is_floating_point() and not state_dict[k].is_floating_point()
    ]
    if not_floating:
        # Copying integer (or bool) values into float weights truncates them silently.
        raise CheckpointError(
            f"{source} holds non-floating tensors for the model's floating parameters or buffers: "
            + ", ".join(not_floating[:8])
            + (f", ... ({len(not_floating)} in all)" if len(not_floating) > 8 else "")
            + "; save the weights as floating point (e.g. float32)"
        )
    if missing or unexpected or shapes:

        def short(xs: list[str]) -> str:
            return ", ".join(xs[:8]) + (f", ... ({len(xs)} in all)" if len(xs) > 8 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {short(unexpected)}")
        if shapes:
            parts.append(f"wrong shapes: {short(shapes)}")
        raise CheckpointError(f"{source} does not fit the model architecture; " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)


def load_model(
    path: str | Path | Checkpoint,
    *,
    model: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    unsafe_load: bool = False,
) -> tuple[nn.Module, Checkpoint]:
    """Rebuild the model a checkpoint holds and load its weights (on the CPU) at their own precision.

    A float64 checkpoint gives a float64 model, with the file's weights bit for bit; any other
    floating precision (float32, float16, bfloat16) loads into the model as built (exactly, for the
    float32 models the builders make).

    Args:
        path: checkpoint file, or an already loaded :class:`Checkpoint`.
        model: registry name or ``package.module:factory``; required when the file carries no spec
            (plain state dicts, Lightning, safetensors), and overrides the file's spec otherwise.
        model_kwargs: keyword arguments of the factory (override the file's).
        unsafe_load: allow unpickling a whole ``nn.Module``.
    """
    ckpt = path if isinstance(path, Checkpoint) else load_checkpoint(path, unsafe_load=unsafe_load)
    if ckpt.module is not None and model is None:
        return ckpt.module, ckpt
    if model is not None:
        kwargs = dict(model_kwargs or {})
        if ckpt.model_spec is not None and ckpt.model_spec.name == model and model_kwargs is None:
            kwargs = dict(ckpt.model_spec.kwargs)
        spec = ModelSpec(model, kwargs)
    elif ckpt.model_spec is not None:
        spec = ModelSpec(ckpt.model_spec.name, {**ckpt.model_spec.kwargs, **(model_kwargs or {})})
    else:
        raise CheckpointError(
            f"checkpoint {ckpt.path!r} ({ckpt.source_format}) does not say which model it holds; "
            "pass model='NAME' or model='package.module:factory'"
        )
    net = build_model(spec)
    precision = checkpoint_precision(ckpt.state_dict)
    if precision == torch.float64:
        # built in float32, ``load_state_dict`` would round the file's weights through float32
        net = net.to(torch.float64)
    _load_fitted(net, ckpt)
    ckpt.model_spec = spec
    return net, ckpt


def _load_fitted(net: nn.Module, ckpt: Checkpoint) -> None:
    """Load the file's weights into ``net`` under the name mapping that fits it; record the mapping."""
    own = net.state_dict()
    file_sd = ckpt.file_state_dict if ckpt.file_state_dict is not None else ckpt.state_dict
    fit = fit_keys(file_sd, own)
    weights = dict(fit.state_dict)
    filled = [k for k in own if k not in weights and k.rsplit(".", 1)[-1] == "num_batches_tracked"]
    for k in filled:
        # torch's BatchNorm accepts a state dict without the counter and starts it at 0
        weights[k] = torch.zeros_like(own[k])
    load_state_into(
        net,
        weights,
        source=f"checkpoint {ckpt.path!r}",
        file_names=fit.file_names,
        unexpected=[] if fit.tolerable else fit.unexpected,
    )
    if fit.state_dict.keys() != ckpt.state_dict.keys():
        ckpt.state_dict = fit.state_dict
    ckpt.removed_prefix = fit.prefix
    ckpt.ignored_keys = list(fit.unexpected)
    ckpt.filled_keys = filled


def checkpoint_precision(state_dict: dict[str, torch.Tensor]) -> torch.dtype | None:
    """The widest floating dtype among a state dict's tensors (``None`` when it has none)."""
    widest: torch.dtype | None = None
    for t in state_dict.values():
        if not (isinstance(t, torch.Tensor) and t.is_floating_point()):
            continue
        if widest is None or torch.finfo(t.dtype).bits > torch.finfo(widest).bits:
            widest = t.dtype
    return widest


def describe_checkpoint(ckpt: Checkpoint) -> dict[str, Any]:
    """A JSON-ready summary: format, model, parameter counts per layer type, buffers, dtype, metadata.

    Tied weights (GPT-2's token embedding and output head: one tensor under two names) are counted
    once, under the first name; ``tied_parameters`` lists each group of names that share one tensor,
    found from the file (tensors on one storage with the same offset, shape and stride) and from the
    built model (``named_parameters(remove_duplicate=False)``), so ``num_parameters`` equals
    ``sum(p.numel() for p in model.parameters())``.
    """
    sd = ckpt.state_dict
    info: dict[str, Any] = {
        "path": ckpt.path,
        "format": ckpt.source_format,
        "model": ckpt.model_spec.to_dict() if ckpt.model_spec else None,
        "num_tensors": len(sd),
    }
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in sd.values()})
    info["dtypes"] = dtypes
    net = _described_model(ckpt)
    module_types = _module_types(net) if net is not None else {}
    tied = tied_groups(sd, net)
    repeated = {name for group in tied for name in group[1:]}
    params_by_type: dict[str, int] = {}
    buffers: dict[str, int] = {}
    total_params = 0
    for k, v in sd.items():
        if k in repeated:
            continue
        leaf = k.rsplit(".", 1)[-1]
        is_buffer = leaf in ("running_mean", "running_var", "num_batches_tracked") or (
            module_types
            and k in module_types
            and leaf not in ("weight", "bias")
            and not v.is_floating_point()
        )
        if is_buffer:
            buffers[leaf] = buffers.get(leaf, 0) + v.numel()
            continue
        kind = module_types.get(k) or _guess_layer_type(k, v)
        params_by_type[kind] = params_by_type.get(kind, 0) + v.numel()
        total_params += v.numel()
    info["num_parameters"] = total_params
    info["parameters_by_layer_type"] = dict(sorted(params_by_type.items(), key=lambda kv: -kv[1]))
    info["tied_parameters"] = tied
    info["buffers"] = buffers
    info["has_batchnorm_statistics"] = "running_mean" in buffers
    info["data"] = ckpt.data_spec.to_dict() if ckpt.data_spec else None
    info["optimizer"] = ckpt.optimizer
    info["step"] = ckpt.step
    info["epoch"] = ckpt.epoch
    info["metrics"] = ckpt.metrics
    info["keys"] = {
        "removed_prefix": ckpt.removed_prefix or None,
        "ignored": list(ckpt.ignored_keys),
        "filled": list(ckpt.filled_keys),
        "weights": ckpt.weights,
        "other_weights": list(ckpt.other_weights),
    }
    if ckpt.extra:
        info["extra"] = ckpt.extra
    return info


def _described_model(ckpt: Checkpoint) -> nn.Module | None:
    """The checkpoint's model, built to name layer types and ties (``None`` where it does not build)."""
    if ckpt.module is not None:
        return ckpt.module
    if ckpt.model_spec is None:
        return None
    try:
        return build_model(ckpt.model_spec)
    except LandscapeError:  # build_model reports any failure as ModelError; the counts still stand
        return None


def _module_types(net: nn.Module) -> dict[str, str]:
    """Tensor name -> the type of the module that holds it (every name of a tied parameter)."""
    types: dict[str, str] = {}
    for name, mod in net.named_modules(remove_duplicate=False):
        for pname, _ in mod.named_parameters(recurse=False):
            types[f"{name}.{pname}" if name else pname] = type(mod).__name__
        for bname, _ in mod.named_buffers(recurse=False):
            types[f"{name}.{bname}" if name else bname] = type(mod).__name__
    return types


def tied_groups(state_dict: dict[str, torch.Tensor], net: nn.Module | None = None) -> list[list[str]]:
    """The groups of state-dict names that hold one tensor, each in state-dict order.

    Two names are tied when their tensors share a storage with the same offset, shape and stride (a
    file written by ``torch.save`` keeps the sharing), or when ``net`` holds one parameter under both
    names (``named_parameters(remove_duplicate=False)``; a format that stores copies, such as
    safetensors, loses the first sign but not this one).
    """
    order = {name: i for i, name in enumerate(state_dict)}
    parent = {name: name for name in state_dict}

    def find(name: str) -> str:
        while parent[name] != name:
            name = parent[name]
        return name

    def join(names: list[str]) -> None:
        names = sorted((n for n in names if n in parent), key=order.__getitem__)
        for other in names[1:]:
            parent[find(other)] = find(names[0])

    by_view: dict[tuple[Any, ...], list[str]] = {}
    for name, t in state_dict.items():
        if isinstance(t, torch.Tensor) and t.numel() > 0:
            view = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
            by_view.setdefault(view, []).append(name)
    by_parameter: dict[int, list[str]] = {}
    if net is not None:
        for name, param in net.named_parameters(remove_duplicate=False):
            by_parameter.setdefault(id(param), []).append(name)
    for names in [*by_view.values(), *by_parameter.values()]:
        join(names)
    groups: dict[str, list[str]] = {}
    for name in state_dict:
        groups.setdefault(find(name), []).append(name)
    return [g for g in groups.values() if len(g) > 1]


def _guess_layer_type(key: str, v: torch.Tensor) -> str:
    """Layer type from a tensor's rank when the model is unknown (plain state dicts)."""
    if v.dim() == 4:
        return "Conv2d"
    if v.dim() == 2:
        return "Linear" if "emb" not in key else "Embedding"
    if v.dim() == 3:
        return "Conv1d"
    if v.dim() == 5:
        return "Conv3d"
    return "1-D (bias / norm)"
