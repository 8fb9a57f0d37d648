"""Split conformal prediction: class sets and intervals with a finite-sample coverage guarantee.

>>> predictor = fit_conformal("multiclass", y_cal, p_cal, coverage=0.9)
>>> set_summary(y_test, predictor.prediction_sets(p_test))

Classification uses the LAC score (nonconformity = 1 - probability of the true class); binary
scores are P(positive), and sets have the columns [negative, positive]. Regression uses
|y - prediction| and gives prediction ± q-hat. The guarantee needs calibration rows that were
not used for training or model selection, exchangeable with the rows being predicted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from medtorch.errors import ConfigError

TASK_TYPES = ("binary", "multiclass", "regression")


def _class_probabilities(task_type: str, scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    if task_type == "binary":
        return np.column_stack([1 - scores, scores])
    return scores


@dataclass
class ConformalPredictor:
    """A fitted split-conformal threshold ``quantile`` (q-hat) for one task.

    For regression ``quantile`` is ``inf`` (unbounded intervals) when there are too few
    calibration rows for the requested coverage, i.e. when ceil((n + 1) * coverage) > n.
    """

    coverage: float
    task_type: str
    quantile: float
    n_calibration: int

    def prediction_sets(self, scores: np.ndarray) -> np.ndarray:
        """Boolean (n, k) membership: class j is in the set when 1 - p_j <= q-hat."""
        if self.task_type == "regression":
            raise ConfigError("prediction sets are for classification; use intervals() for regression")
        return 1 - _class_probabilities(self.task_type, scores) <= self.quantile

    def intervals(self, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds, prediction ± q-hat (regression only)."""
        if self.task_type != "regression":
            raise ConfigError("intervals are for regression; use prediction_sets() for classification")
        predictions = np.asarray(predictions, dtype=float)
        return predictions - self.quantile, predictions + self.quantile

    def get_config(self) -> dict[str, Any]:
        """Plain JSON (an infinite quantile is written as null)."""
        quantile = None if math.isinf(self.quantile) else float(self.quantile)
        return {
            "coverage": float(self.coverage),
            "task_type": self.task_type,
            "quantile": quantile,
            "n_calibration": int(self.n_calibration),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ConformalPredictor:
        try:
            quantile = math.inf if config["quantile"] is None else float(config["quantile"])
            return cls(float(config["coverage"]), config["task_type"], quantile, int(config["n_calibration"]))
        except KeyError as error:
            raise ConfigError(f"a conformal config is missing {error}") from None


def _nonconformity(task_type: str, y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    if task_type == "regression":
        return np.abs(np.asarray(y, dtype=float) - np.asarray(scores, dtype=float))
    probabilities = _class_probabilities(task_type, scores)
    return 1 - probabilities[np.arange(len(y)), np.asarray(y).astype(int)]


def _conformal_quantile(nonconformity: np.ndarray, coverage: float, task_type: str) -> float:
    """The ceil((n + 1) * coverage)-th smallest score, the finite-sample conformal quantile."""
    n = len(nonconformity)
    # The small tolerance keeps e.g. (9 + 1) * 0.9 = 9.000000000000002 from rounding up to 10.
    rank = math.ceil((n + 1) * coverage - 1e-9)
    if rank > n:
        return 1.0 if task_type != "regression" else math.inf
    return float(np.sort(nonconformity)[rank - 1])


def fit_conformal(task_type: str, y: np.ndarray, scores: np.ndarray, coverage: float = 0.9) -> ConformalPredictor:
    """Calibrate q-hat on held-out rows so that sets (or intervals) cover the truth with ``coverage``."""
    if task_type == "multilabel":
        raise ConfigError("conformal prediction sets are for binary, multiclass and regression tasks")
    if task_type not in TASK_TYPES:
        raise ConfigError(f"unknown task type {task_type!r}")
    if not 0 < coverage < 1:
        raise ConfigError(f"conformal coverage must be between 0 and 1 (exclusive), got {coverage}")
    if len(y) != len(scores) or len(y) == 0:
        raise ConfigError(f"conformal calibration needs equal, non-empty labels and scores ({len(y)} vs {len(scores)})")
    quantile = _conformal_quantile(_nonconformity(task_type, y, scores), coverage, task_type)
    return ConformalPredictor(float(coverage), task_type, quantile, len(y))


def set_summary(y: np.ndarray, sets: np.ndarray) -> dict[str, Any]:
    """Empirical coverage, mean set size, the distribution of sizes (``"0"``, ``"1"``, ...) and singleton rate."""
    sets = np.asarray(sets, dtype=bool)
    sizes = sets.sum(axis=1)
    distribution = np.bincount(sizes, minlength=sets.shape[1] + 1) / len(sizes)
    return {
        "coverage": float(np.mean(sets[np.arange(len(sets)), np.asarray(y).astype(int)])),
        "mean_size": float(np.mean(sizes)),
        "sizes": {str(size): float(fraction) for size, fraction in enumerate(distribution)},
        "singleton_rate": float(np.mean(sizes == 1)),
    }


def interval_summary(y: np.ndarray, low: np.ndarray, high: np.ndarray) -> dict[str, float]:
    """Empirical coverage and mean width of regression intervals (inf width when unbounded)."""
    y = np.asarray(y, dtype=float)
    return {
        "coverage": float(np.mean((low <= y) & (y <= high))),
        "mean_width": float(np.mean(np.asarray(high) - np.asarray(low))),
    }
