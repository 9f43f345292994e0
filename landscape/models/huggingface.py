"""Hugging Face model folders: ``hf:DIR`` (the saved weights) and ``hf-config:DIR`` (a random init).

``hf:DIR`` builds ``AutoModelFor<Task>.from_pretrained(DIR, local_files_only=True)``: the folder's
``config.json`` and weights, as ``save_pretrained`` wrote them; nothing is ever downloaded.
``hf-config:DIR`` builds ``AutoModelFor<Task>.from_config`` from the folder's ``config.json`` alone,
with random weights (drawn from ``torch.manual_seed(seed)`` when a ``seed`` is given, else from the
current generator, which a training run seeds). The task is read from ``config.architectures`` (the
class ``save_pretrained`` recorded) unless ``task`` names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from landscape.errors import ModelError
from landscape.models.gpt_tiny import require_transformers

HF_PREFIX = "hf:"
HF_CONFIG_PREFIX = "hf-config:"

#: task -> the ``transformers`` auto class that builds it.
HF_TASKS: dict[str, str] = {
    "causal-lm": "AutoModelForCausalLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "image-classification": "AutoModelForImageClassification",
    "masked-lm": "AutoModelForMaskedLM",
}

# task -> the name of the auto class's table of model classes, in transformers.models.auto.modeling_auto
_TASK_TABLES = {
    "causal-lm": "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
    "sequence-classification": "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
    "image-classification": "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
    "masked-lm": "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
}
# where a class is in no table (a user's own): the class-name endings of each task
_TASK_SUFFIXES = {
    "causal-lm": ("ForCausalLM", "LMHeadModel"),
    "sequence-classification": ("ForSequenceClassification",),
    "image-classification": ("ForImageClassification",),
    "masked-lm": ("ForMaskedLM",),
}


def is_hf_model(name: str) -> bool:
    """Whether a model name is a Hugging Face folder (``hf:DIR`` or ``hf-config:DIR``)."""
    return name.startswith((HF_PREFIX, HF_CONFIG_PREFIX))


def _classes_of(task: str) -> set[str]:
    from transformers.models.auto import modeling_auto

    names: set[str] = set()
    for value in getattr(modeling_auto, _TASK_TABLES[task], {}).values():
        names.update([value] if isinstance(value, str) else value)
    return names


def tasks_of(architectures: list[str] | None) -> list[str]:
    """The tasks the recorded model classes are for (empty when the config records none)."""
    found = []
    for task in HF_TASKS:
        known = _classes_of(task)
        if any(a in known or a.endswith(_TASK_SUFFIXES[task]) for a in architectures or []):
            found.append(task)
    return found


def resolve_task(name: str, architectures: list[str] | None, task: str | None) -> str:
    """``task`` when given (checked), else the one task ``architectures`` says.

    Raises:
        ModelError: ``task`` is not a known task, or it is not given and the folder names no task or
            several.
    """
    choices = ", ".join(HF_TASKS)
    if task is not None:
        if task not in HF_TASKS:
            raise ModelError(f"model {name!r}: task {task!r} is not one of {choices}")
        return task
    found = tasks_of(architectures)
    if len(found) == 1:
        return found[0]
    said = f"names {', '.join(architectures)}" if architectures else "names no architecture"
    raise ModelError(
        f"model {name!r}: the folder's config.json {said}, which is not one task; give the task "
        f"(one of {choices})"
    )


def model_folder(name: str) -> Path:
    """The folder of ``hf:DIR`` / ``hf-config:DIR``, checked to hold a ``config.json``.

    Raises:
        ModelError: the folder does not exist or holds no ``config.json``.
    """
    prefix = HF_PREFIX if name.startswith(HF_PREFIX) else HF_CONFIG_PREFIX
    folder = Path(name[len(prefix) :]).expanduser()
    if not folder.is_dir():
        raise ModelError(
            f"model {name!r}: {str(folder)!r} is not a folder; give one written by save_pretrained"
        )
    if not (folder / "config.json").is_file():
        raise ModelError(
            f"model {name!r}: {str(folder)!r} is not a Hugging Face model folder (no config.json); "
            "write one with save_pretrained"
        )
    return folder


def build_hf_model(name: str, task: str | None = None, seed: int | None = None) -> nn.Module:
    """The model of a Hugging Face folder: ``hf:DIR`` with its weights, ``hf-config:DIR`` at random.

    Args:
        name: ``hf:DIR`` or ``hf-config:DIR``.
        task: ``causal-lm``, ``sequence-classification``, ``image-classification`` or ``masked-lm``
            (default: what ``config.architectures`` says).
        seed: for ``hf-config:DIR``, the seed of the random weights (default: the current generator).

    Raises:
        ModelError: ``transformers`` is missing, the folder is not a model folder, its task is unknown,
            or its weights do not load.
    """
    require_transformers(f"model {name!r}")
    import transformers

    folder = model_folder(name)
    pretrained = name.startswith(HF_PREFIX)
    if pretrained and seed is not None:
        raise ModelError(
            f"model {name!r} loads saved weights and takes no seed; use 'hf-config:DIR' for a random init"
        )
    try:
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"model {name!r}: the folder's config.json does not load: {_first_line(exc)}"
        ) from None
    auto = getattr(transformers, HF_TASKS[resolve_task(name, getattr(config, "architectures", None), task)])
    try:
        if pretrained:
            return auto.from_pretrained(str(folder), local_files_only=True)
        return _random_init(auto, config, seed)
    except (OSError, ValueError, KeyError) as exc:
        hint = f"; use 'hf-config:{folder}' for a random init" if pretrained else ""
        raise ModelError(f"model {name!r} does not build: {_first_line(exc)}{hint}") from None


def _random_init(auto: Any, config: Any, seed: int | None) -> nn.Module:
    if seed is None:
        return auto.from_config(config)
    with torch.random.fork_rng(devices=[]):  # leave the caller's generator where it was
        torch.manual_seed(seed)
        return auto.from_config(config)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
