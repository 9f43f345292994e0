"""Token-level objectives: which labels count, the causal shift, and whether a model is a causal LM.

For token outputs ``(N, T, V)`` and labels ``(N, T)`` the loss is the cross-entropy of the counted
tokens, those whose label is not ``IGNORE_INDEX`` (-100, Hugging Face's padding label). A causal
language model predicts token ``t + 1`` from the tokens up to ``t``, so its logits ``[:, :-1]`` are
scored against the labels ``[:, 1:]`` (the shift Hugging Face applies inside its models). The
full-data objective is the mean over all counted tokens of the set, so each batch weighs by its
number of counted tokens (:func:`num_terms`), never by its number of sequences.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

IGNORE_INDEX = -100


def is_token_batch(outputs: object, targets: torch.Tensor) -> bool:
    """True for integer labels ``(N, T, ...)`` with outputs carrying one more (vocabulary) axis."""
    return (
        isinstance(outputs, torch.Tensor)
        and not targets.is_floating_point()
        and targets.dim() >= 2
        and outputs.dim() == targets.dim() + 1
    )


def is_token_labels(targets: torch.Tensor) -> bool:
    """True for integer labels with a sequence axis (``(N, T)``): a token-level objective."""
    return not targets.is_floating_point() and targets.dim() >= 2


def aligned(outputs: torch.Tensor, targets: torch.Tensor, causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat ``(logits (M, V), labels (M,))`` of a token batch, shifted by one position when causal."""
    if causal:
        outputs, targets = outputs[:, :-1], targets[:, 1:]
    return outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1)


def num_terms(targets: torch.Tensor, causal: bool) -> int:
    """How many terms a batch's mean loss averages: counted tokens for token labels, else rows."""
    if not is_token_labels(targets):
        return len(targets)
    if causal:
        targets = targets[:, 1:]
    return int((targets != IGNORE_INDEX).sum())


def token_hits(outputs: torch.Tensor, targets: torch.Tensor, causal: bool) -> torch.Tensor:
    """Number of counted tokens whose arg-max logit is the label (a 0-dim tensor)."""
    logits, labels = aligned(outputs, targets, causal)
    counted = labels != IGNORE_INDEX
    return (logits.argmax(dim=-1).eq(labels) & counted).sum()


def _hf_causal_class_names() -> set[str]:
    """Hugging Face's causal-LM class names, when ``transformers`` is already imported (never imports it)."""
    if "transformers" not in sys.modules:
        return set()
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    except ImportError:  # an unusual transformers build: fall back to the class-name rule
        return set()
    names: set[str] = set()
    for value in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():
        names.update([value] if isinstance(value, str) else value)
    return names


def is_causal_lm(model: nn.Module) -> bool:
    """Whether ``model`` is a causal language model: a Hugging Face ``*ForCausalLM`` / LM-head class
    registered as one, or a model whose ``config.is_decoder`` is true."""
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "is_decoder", False) is True:
        return True
    name = type(model).__name__
    return name.endswith("ForCausalLM") or name in _hf_causal_class_names()
