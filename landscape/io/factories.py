"""``package.module:attr`` targets: a user's own model, dataset or loss, imported by name."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from landscape.errors import ModelError


def resolve_factory(target: str, kind: str = "model") -> Callable[..., Any]:
    """Import ``package.module:attr`` and return the attribute; errors name the target."""
    if ":" not in target:
        raise ModelError(f"{kind} {target!r} is not 'package.module:factory'")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"cannot import module {module_name!r} for {kind} {target!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelError(f"module {module_name!r} has no attribute {attr!r} ({kind} {target!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(f"{kind} {target!r} is not callable")
    return obj
