"""Operating thresholds chosen on validation data."""

from __future__ import annotations

import numpy as np
import pytest

from medtorch.errors import ConfigError
from medtorch.evaluation.metrics import binary_metrics
from medtorch.evaluation.thresholds import choose_threshold


def _validation(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    p = 1 / (1 + np.exp(-(1.2 * (2 * y - 1) + rng.normal(size=n))))
    return y, p


def test_youden_separates_a_separable_case_perfectly():
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.7, 0.8, 0.9])
    threshold = choose_threshold(y, p, "youden")
    assert 0.35 < threshold <= 0.7
    metrics = binary_metrics(y, p, threshold)
    assert metrics["sensitivity"] == 1.0 and metrics["specificity"] == 1.0


def test_youden_maximises_sensitivity_plus_specificity():
    y, p = _validation()
    threshold = choose_threshold(y, p, "youden")
    best = binary_metrics(y, p, threshold)
    j = best["sensitivity"] + best["specificity"]
    for other in np.unique(p):
        m = binary_metrics(y, p, other)
        assert m["sensitivity"] + m["specificity"] <= j + 1e-12


def test_threshold_is_a_probability():
    y = np.array([0, 1, 1])
    p = np.array([0.0, 1.0, 1.0])
    for method, value in (("youden", None), ("target_sensitivity", 0.9), ("target_specificity", 0.9)):
        assert 0.0 <= choose_threshold(y, p, method, value) <= 1.0


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95])
def test_target_sensitivity_is_reached_on_validation_data(target):
    y, p = _validation()
    threshold = choose_threshold(y, p, "target_sensitivity", target)
    assert binary_metrics(y, p, threshold)["sensitivity"] >= target


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95])
def test_target_sensitivity_keeps_the_best_specificity(target):
    """No other threshold that reaches the target sensitivity has a higher specificity."""
    y, p = _validation()
    chosen = binary_metrics(y, p, choose_threshold(y, p, "target_sensitivity", target))
    reaching = [binary_metrics(y, p, t) for t in np.unique(p)]
    best = max(m["specificity"] for m in reaching if m["sensitivity"] >= target)
    assert chosen["specificity"] == pytest.approx(best)


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95])
def test_target_specificity_is_reached_on_validation_data(target):
    y, p = _validation()
    threshold = choose_threshold(y, p, "target_specificity", target)
    assert binary_metrics(y, p, threshold)["specificity"] >= target


def test_fixed_threshold_is_returned_as_given():
    y, p = _validation()
    assert choose_threshold(y, p, "fixed", 0.3) == 0.3


def test_fixed_threshold_without_a_value_is_a_config_error():
    with pytest.raises(ConfigError, match="value is needed with method 'fixed'"):
        choose_threshold(np.array([0, 1]), np.array([0.2, 0.8]), "fixed")


def test_target_without_a_value_is_a_config_error():
    with pytest.raises(ConfigError, match="value is needed"):
        choose_threshold(np.array([0, 1]), np.array([0.2, 0.8]), "target_sensitivity")


def test_unknown_method_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown threshold method 'magic'"):
        choose_threshold(np.array([0, 1]), np.array([0.2, 0.8]), "magic", 0.5)


def test_validation_data_with_one_class_falls_back_to_one_half():
    assert choose_threshold(np.zeros(10), np.linspace(0, 1, 10), "youden") == 0.5
