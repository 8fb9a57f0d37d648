"""Operating thresholds, always chosen on validation data and then frozen for test.

>>> threshold = choose_threshold(y_val, p_val, method="target_sensitivity", value=0.95)
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve

from medtorch.errors import ConfigError


def choose_threshold(y: np.ndarray, p: np.ndarray, method: str = "youden", value: float | None = None) -> float:
    """A probability threshold for a binary classifier.

    ``youden`` maximises sensitivity + specificity - 1; ``target_sensitivity`` (or
    ``target_specificity``) is the threshold that reaches ``value`` with the best other rate;
    ``fixed`` returns ``value``.
    """
    if method == "fixed":
        if value is None:
            raise ConfigError("evaluate.threshold.value is needed with method 'fixed'")
        return float(value)
    if len(np.unique(y)) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(y, p)
    thresholds = np.minimum(thresholds, 1.0)
    if method == "youden":
        return float(thresholds[np.argmax(tpr - fpr)])
    if value is None:
        raise ConfigError(f"evaluate.threshold.value is needed with method {method!r}")
    if method == "target_sensitivity":
        return float(thresholds[np.flatnonzero(tpr >= value)[0]])
    if method == "target_specificity":
        return float(thresholds[np.flatnonzero(1 - fpr >= value)[-1]])
    raise ConfigError(f"unknown threshold method {method!r}")
