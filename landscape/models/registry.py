"""The models of the toolkit by name: builder, one line of help, and the sizes they take from the data.

:func:`~landscape.models.builders.build_model`, the training run (which fills a model's input size and
class count from its data) and the command line's ``--model`` help read this table. Adding a model is
its module (one per architecture family) plus one entry below; :func:`register_model` adds one at run
time. Hugging Face folders are pattern sources (:data:`MODEL_SOURCES`: ``hf:DIR``, ``hf-config:DIR``),
tried before ``package.module:factory``; anything else is built as a factory.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from landscape.errors import ModelError
from landscape.models.cnn import SmallCNN
from landscape.models.gpt_tiny import gpt_tiny
from landscape.models.huggingface import HF_CONFIG_PREFIX, HF_PREFIX, build_hf_model
from landscape.models.mlp import MLP
from landscape.models.mnist1d import MNIST1DCNN, MNIST1DMLP
from landscape.models.resnet import resnet18, resnet34, resnet50
from landscape.models.wrn import WideResNet

InputKwargs = Callable[[tuple[int, ...]], dict[str, int]]


def flat_input(shape: tuple[int, ...]) -> dict[str, int]:
    """``in_features``: the number of values of one example (a network on flattened inputs)."""
    return {"in_features": math.prod(shape)}


def channels_first(shape: tuple[int, ...]) -> dict[str, int]:
    """``in_channels``: the first axis of one ``(C, H, W)`` example (a convolutional network)."""
    return {"in_channels": shape[0]}


def signal_length(shape: tuple[int, ...]) -> dict[str, int]:
    """``length``: the last axis of one ``(L,)`` or ``(C, L)`` example (a 1-D convolutional network)."""
    return {"length": shape[-1]}


def sequence_positions(shape: tuple[int, ...]) -> dict[str, int]:
    """``n_positions``: the length of one ``(T,)`` token sequence (a language model's context)."""
    return {"n_positions": shape[-1]}


@dataclass(frozen=True)
class ModelEntry:
    """One model of the registry.

    Attributes:
        name: the name ``build_model`` and ``--model`` take.
        builder: called with the model's keyword arguments; returns the ``nn.Module``.
        help: one line for the command line's help.
        input_kwargs: the keyword arguments that give the model its input size, from one example's
            shape (``None``: it takes none); with ``num_classes`` they are filled in from the data.
        sized_in_training: a training run fills those in; ``False`` for the MNIST-1D models, whose
            runs have always recorded their keyword arguments as given (a resumed run compares them).
        classes_kwarg: the keyword argument that takes the data's class count (``vocab_size`` for a
            language model, whose classes are the tokens).
    """

    name: str
    builder: Callable[..., nn.Module]
    help: str
    input_kwargs: InputKwargs | None = None
    sized_in_training: bool = True
    classes_kwarg: str = "num_classes"


_ENTRIES = (
    ModelEntry("mlp", MLP, "fully connected, hidden=[32, 32], tanh", flat_input),
    ModelEntry("cnn", SmallCNN, "two conv-BN-ReLU-pool blocks and a linear head", channels_first),
    ModelEntry("resnet18", resnet18, "CIFAR ResNet-18, 3x3 stem, no max-pool", channels_first),
    ModelEntry("resnet34", resnet34, "CIFAR ResNet-34", channels_first),
    ModelEntry("resnet50", resnet50, "CIFAR ResNet-50, bottleneck blocks", channels_first),
    ModelEntry("wrn", WideResNet, "WideResNet, depth=28 width=10", channels_first),
    ModelEntry(
        "mnist1d-mlp", MNIST1DMLP, "MNIST-1D paper's MLP, 40-100-100-10", flat_input, sized_in_training=False
    ),
    ModelEntry("mnist1d-cnn", MNIST1DCNN, "MNIST-1D paper's 1-D CNN", signal_length, sized_in_training=False),
    ModelEntry(
        "gpt-tiny",
        gpt_tiny,
        "GPT-2, 2 layers, n_embd 64, 4 heads, vocab and positions from the data (for text; the "
        "[transformers] extra)",
        sequence_positions,
        classes_kwarg="vocab_size",
    ),
)

#: name -> entry, in the order the help lists them.
MODELS: dict[str, ModelEntry] = {entry.name: entry for entry in _ENTRIES}


@dataclass(frozen=True)
class ModelSource:
    """A form of model name that is not a registry name (a Hugging Face folder).

    Attributes:
        form: the form ``--model`` takes (``hf:DIR``), for the help.
        build: ``build(name, **kwargs)`` -> the ``nn.Module``.
        help: a few words for the command line's help.
        matches: whether a model name is of this form.
    """

    form: str
    build: Callable[..., nn.Module]
    help: str
    matches: Callable[[str], bool]


#: The pattern sources, tried in order after the registry names and before ``package.module:factory``.
MODEL_SOURCES: list[ModelSource] = [
    ModelSource(
        "hf:DIR",
        build_hf_model,
        "a Hugging Face folder with its weights (from_pretrained, never a download; task in the kwargs)",
        lambda name: name.startswith(HF_PREFIX),
    ),
    ModelSource(
        "hf-config:DIR",
        build_hf_model,
        "a random init from a folder's config.json (seed in the kwargs)",
        lambda name: name.startswith(HF_CONFIG_PREFIX),
    ),
]


def model_source_builder(name: str) -> Callable[..., nn.Module] | None:
    """The builder of a pattern-source name, taking the model's keyword arguments; ``None`` if none."""
    for source in MODEL_SOURCES:
        if source.matches(name):
            return functools.partial(source.build, name)
    return None


def model_names() -> tuple[str, ...]:
    """The registered names, in order (read at call time, so later registrations count)."""
    return tuple(MODELS)


def model_help() -> str:
    """``name: help; ...`` for every registered model: the command line's ``--model`` help."""
    named = [f"{entry.name}: {entry.help}" for entry in MODELS.values()]
    return "; ".join(named + [f"{source.form}: {source.help}" for source in MODEL_SOURCES])


def register_model(entry: ModelEntry) -> None:
    """Add ``entry`` to the registry (a user's own model, available by its name from then on).

    Raises:
        ModelError: the name is taken, or holds ``:`` (kept for ``package.module:factory``).
    """
    if entry.name in MODELS or ":" in entry.name:
        raise ModelError(f"model name {entry.name!r} is taken or holds ':'; register it under another name")
    MODELS[entry.name] = entry


def data_sized_kwargs(
    name: str, kwargs: dict[str, Any], input_shape: Sequence[int], num_classes: int
) -> dict[str, Any]:
    """``kwargs`` with the input size and class count of the data added where they were not given.

    Only registry models with ``input_kwargs`` are filled (a ``package.module:factory`` takes what it
    is given). ``input_shape`` is one example's shape (``(1, 8, 8)`` for digits, ``(40,)`` for MNIST-1D,
    ``(seq_len,)`` token ids for text: ``gpt-tiny`` gets ``n_positions`` from it and ``vocab_size``
    from ``num_classes``, the data's vocabulary size).
    """
    entry = MODELS.get(name)
    filled = dict(kwargs)
    if entry is None or entry.input_kwargs is None:
        return filled
    for key, value in entry.input_kwargs(tuple(int(n) for n in input_shape)).items():
        filled.setdefault(key, int(value))
    filled.setdefault(entry.classes_kwarg, int(num_classes))
    return filled
