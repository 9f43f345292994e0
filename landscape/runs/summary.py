"""One run's row of a comparison: final metrics, magnitude statistics and ``lambda_max``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from landscape.optim.decompose import STAT_KEYS

#: Share of a run's steps averaged for the "early" and the "late" statistics.
EARLY_LATE_FRACTION = 0.1


@dataclass
class RunSummary:
    """One run's row of the comparison."""

    name: str
    path: str
    optimizer: str
    rho: float | None
    decomposition: str | None
    epochs: int
    steps: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    stats_mean: dict[str, float] = field(default_factory=dict)
    stats_early: dict[str, float] = field(default_factory=dict)
    stats_late: dict[str, float] = field(default_factory=dict)
    lambda_max: float | None = None
    lambda_max_samples: int | None = None
    lambda_max_source: str | None = None
    lambda_max_settings: dict[str, Any] | None = None
    lambda_max_note: str | None = None
    epoch_stats: dict[str, list[float]] = field(default_factory=dict)
    #: sharpness measures of the final checkpoint by name (``MeasureResult.to_dict()`` plus ``source``:
    #: ``"computed"`` or the ``sharpness.json`` they were read from), on the sample of ``lambda_max``
    measures: dict[str, dict[str, Any]] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """Flat row for the CSV table."""
        r: dict[str, Any] = {
            "run": self.name,
            "optimizer": self.optimizer,
            "rho": self.rho,
            "decomposition": self.decomposition,
            "epochs": self.epochs,
            "steps": self.steps,
            "train_loss": self.train_loss,
            "train_accuracy": self.train_accuracy,
            "test_loss": self.test_loss,
            "test_accuracy": self.test_accuracy,
            "lambda_max": self.lambda_max,
            "lambda_max_source": self.lambda_max_source,
        }
        for key in STAT_KEYS:
            r[f"{key}_mean"] = self.stats_mean.get(key)
            r[f"{key}_early"] = self.stats_early.get(key)
            r[f"{key}_late"] = self.stats_late.get(key)
        for name, m in self.measures.items():
            r[f"sharpness_{name}"] = m.get("value")
        return r
