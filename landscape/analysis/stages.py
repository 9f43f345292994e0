"""Resume ``sharpness`` after an interruption: each finished stage is kept on disk with its key.

A stage (eigenvalues, trace, density, per layer, per batch, each measure) is saved as soon as it finishes, under a
key made of the model's state, the data, the numerical settings and the stage's own options. On a
rerun a stage whose key matches is read back instead of recomputed; any difference (another
checkpoint, ``--samples``, seed, dtype, tolerance, ...) recomputes it. The result file is written
before its key, so a key on disk always names a complete result.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from landscape.hessian.results import SavedResult
from landscape.io.atomic import atomic_write_json
from landscape.io.digest import settings_digest
from landscape.objective.core import Objective
from landscape.objective.digest import data_digest, model_digest

R = TypeVar("R")


class StageCache:
    """Finished stages of one computation in ``folder``, valid for ``base`` settings."""

    def __init__(self, folder: str | Path, base: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.base = base
        self.reused: list[str] = []

    @classmethod
    def for_objective(cls, folder: str | Path, objective: Objective, **settings: Any) -> StageCache:
        """Key every stage by the objective's weights, data and metadata plus ``settings``."""
        base = {
            "model": model_digest(objective),
            "data": data_digest(objective),
            "param_names": list(objective.param_names),
            "objective": objective.metadata(),
            **settings,
        }
        return cls(folder, base)

    def _key(self, name: str, options: dict[str, Any]) -> str:
        return settings_digest({"stage": name, "base": self.base, "options": options})

    def run(self, name: str, options: dict[str, Any], cls: type[R], compute: Callable[[], R]) -> R:
        """The stored result of stage ``name`` if its key matches, else ``compute()`` (then stored)."""
        key = self._key(name, options)
        key_file = self.folder / f"{name}.key.json"
        result_file = self.folder / f"{name}.json"
        if key_file.is_file() and result_file.is_file():
            try:
                if json.loads(key_file.read_text()).get("key") == key:
                    result = _load(cls, result_file)
                    self.reused.append(name)
                    return result
            except Exception:  # a damaged stage file is recomputed, never trusted
                pass
        result = compute()
        _save(result, result_file)
        atomic_write_json(key_file, {"key": key, "stage": name})
        return result


def _save(result: Any, path: Path) -> None:
    """A :class:`SavedResult` saves itself (JSON + NPZ); other results (a measure) as their ``to_dict``."""
    if isinstance(result, SavedResult):
        result.save(path)
    else:
        atomic_write_json(path, result.to_dict())


def _load(cls: type[R], path: Path) -> R:
    if issubclass(cls, SavedResult):
        return cls.load(path)  # type: ignore[return-value]
    return cls.from_dict(json.loads(path.read_text()))  # type: ignore[attr-defined]
