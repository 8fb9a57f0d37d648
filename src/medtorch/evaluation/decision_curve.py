"""Decision curve analysis: the net benefit of acting on a binary model's risks.

>>> curve = decision_curve(y_test, p_test)
>>> curve["threshold"][9], curve["model"][9], curve["treat_all"][9]

At threshold probability pt a clinician treats when p >= pt; net benefit counts true positives
and charges each false positive pt / (1 - pt), the odds at which treating and not treating are
judged equal. ``treat_all`` and ``treat_none`` (zero) are the default strategies to beat.
"""

from __future__ import annotations

import numpy as np

from medtorch.errors import ConfigError


def _default_thresholds() -> np.ndarray:
    return np.round(np.linspace(0.01, 0.99, 99), 2)


def decision_curve(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray | None = None) -> dict[str, list[float]]:
    """Net benefit of the model, treat-all and treat-none at each threshold (default 0.01, ..., 0.99)."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if p.ndim != 1 or y.ndim != 1:
        raise ConfigError("decision curves are for binary tasks (1-D labels and P(positive) scores)")
    if len(y) != len(p) or len(y) == 0:
        raise ConfigError(f"labels and scores must be non-empty and equal in length ({len(y)} vs {len(p)})")
    pt = _default_thresholds() if thresholds is None else np.asarray(thresholds, dtype=float)
    if np.any((pt <= 0) | (pt >= 1)):
        raise ConfigError("decision-curve thresholds must lie strictly between 0 and 1")
    n, prevalence = len(y), float(np.mean(y))
    odds = pt / (1 - pt)
    treated = p[:, None] >= pt[None, :]
    true_positives = (treated & (y[:, None] == 1)).sum(axis=0)
    false_positives = (treated & (y[:, None] == 0)).sum(axis=0)
    return {
        "threshold": pt.tolist(),
        "model": (true_positives / n - false_positives / n * odds).tolist(),
        "treat_all": (prevalence - (1 - prevalence) * odds).tolist(),
        "treat_none": np.zeros(len(pt)).tolist(),
    }
