"""``evaluation.json``: the one writer and reader of a checkpoint's loss and accuracy over a dataset.

The file holds the evaluation (``loss``, ``accuracy``, ``num_samples``) and the objective's metadata
(``num_params``, ``device``, ``dtype``, ``bn_mode``), then where it came from (``checkpoint``,
``model``, ``data``, ``seed``, ``checkpoint_digest``) and ``settings``, its fingerprint
(:func:`evaluation_settings`): a result made with other settings is not replaced without asking
(``landscape evaluate --overwrite``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from landscape.analysis.result_file import objective_settings
from landscape.errors import ResultFileError
from landscape.io.atomic import atomic_write_json

EVALUATION_FILE = "evaluation.json"
_PROVENANCE = ("checkpoint", "model", "data", "seed", "checkpoint_digest", "settings")


def evaluation_settings(
    checkpoint: Any, data: Any, *, batch_size: int, dtype: Any, bn_mode: str
) -> dict[str, Any]:
    """What an evaluation depends on: :func:`~landscape.analysis.result_file.objective_settings` (the
    weights' digest, the model, the data, batches, precision and batch-norm mode), nothing more."""
    return objective_settings(checkpoint, data, batch_size=batch_size, dtype=dtype, bn_mode=bn_mode)


@dataclass
class EvaluationFile:
    """One ``evaluation.json``.

    Attributes:
        values: ``loss``, ``accuracy``, ``num_samples`` and the objective's metadata.
        checkpoint: the checkpoint's path as given.
        seed: the seed of the data sample.
        settings: :func:`evaluation_settings` (its digest, model and data are the file's too).
    """

    values: dict[str, Any]
    checkpoint: str
    seed: int
    settings: dict[str, Any]

    @property
    def loss(self) -> float:
        return float(self.values["loss"])

    @property
    def accuracy(self) -> float:
        return float(self.values["accuracy"])

    def to_dict(self) -> dict[str, Any]:
        """The JSON document, as written and as ``landscape evaluate --json`` prints it."""
        return {
            **self.values,
            "checkpoint": self.checkpoint,
            "model": self.settings["model"],
            "data": self.settings["data"],
            "seed": self.seed,
            "checkpoint_digest": self.settings["checkpoint_digest"],
            "settings": self.settings,
        }

    @classmethod
    def from_dict(cls, doc: Any, *, source: str = EVALUATION_FILE) -> EvaluationFile:
        """Read a document written by :meth:`to_dict`.

        Raises:
            ResultFileError: naming ``source``: not a JSON object, or without its loss or settings.
        """
        if not isinstance(doc, dict) or "loss" not in doc:
            raise ResultFileError(f"{source!r} is not an evaluation.json written by landscape")
        settings = doc.get("settings")
        if not isinstance(settings, dict) or "checkpoint_digest" not in settings:
            raise ResultFileError(f"{source!r} was written without its settings (an older landscape)")
        return cls(
            values={k: v for k, v in doc.items() if k not in _PROVENANCE},
            checkpoint=str(doc.get("checkpoint", "")),
            seed=int(doc.get("seed", 0)),
            settings=settings,
        )


def evaluation_file(
    objective: Any, settings: dict[str, Any], *, checkpoint: str | Path, seed: int
) -> EvaluationFile:
    """Evaluate ``objective`` (its mean loss and accuracy over the whole dataset) into a file record."""
    return EvaluationFile(
        values={**objective.evaluate().to_dict(), **objective.metadata()},
        checkpoint=str(checkpoint),
        seed=seed,
        settings=settings,
    )


def write_evaluation_file(out_dir: str | Path, record: EvaluationFile) -> Path:
    """Write ``out_dir/evaluation.json`` atomically."""
    return atomic_write_json(Path(out_dir) / EVALUATION_FILE, record.to_dict())


def read_evaluation_file(path: str | Path) -> EvaluationFile:
    """Read an ``evaluation.json`` written by :func:`write_evaluation_file`.

    Raises:
        ResultFileError: unreadable, or not one of ours.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultFileError(f"{str(p)!r} is unreadable ({exc})") from None
    return EvaluationFile.from_dict(doc, source=str(p))
