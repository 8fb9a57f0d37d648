"""Calibration error, calibration slope and recalibration on simulations with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit, logit, softmax

from medtorch.errors import ConfigError
from medtorch.evaluation.calibration import (
    Calibrator,
    calibration_slope_intercept,
    expected_calibration_error,
    fit_calibrator,
    reliability_curve,
)
from medtorch.evaluation.metrics import auroc


def _binary(n: int, seed: int, sharpen: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from true risks p ~ U(0, 1); reported risks sigmoid(sharpen * logit(p))."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.001, 0.999, n)
    y = (rng.random(n) < p).astype(int)
    return y, expit(sharpen * logit(p))


def _multiclass(n: int, seed: int, sharpen: float = 3.0, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Labels from softmax(true logits); reported probabilities softmax(sharpen * true logits)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=1.0, size=(n, k))
    truth = softmax(logits, axis=1)
    y = (rng.random(n)[:, None] > np.cumsum(truth, axis=1)).sum(axis=1)
    return y, softmax(sharpen * logits, axis=1)


def test_ece_of_a_calibrated_simulation_is_small():
    y, p = _binary(20000, seed=0)
    assert expected_calibration_error(y, p) < 0.02


def test_ece_of_an_over_confident_simulation_is_large():
    y, p = _binary(20000, seed=0, sharpen=3.0)
    assert expected_calibration_error(y, p) > 0.05


def test_ece_by_hand():
    # Two bins of width 0.5: [0.1, 0.2, 0.3] (mean 0.2, one positive of three) and
    # [0.7, 0.9] (mean 0.8, both positive): (3 * |0.2 - 1/3| + 2 * |0.8 - 1|) / 5 = 0.16.
    y = np.array([0, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.9])
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.16)


def test_multiclass_ece_is_top_label():
    # Confidences 0.6 (right), 0.8 (wrong), 0.9 (right); one bin: |mean 0.7667 - accuracy 2/3| = 0.1.
    y = np.array([0, 0, 2])
    p = np.array([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.05, 0.05, 0.9]])
    assert expected_calibration_error(y, p, n_bins=1) == pytest.approx(0.1)


def test_multilabel_ece_is_the_mean_over_labels():
    y = np.array([[0, 1], [1, 1], [0, 0], [1, 1], [1, 0]])
    p = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.4], [0.7, 0.6], [0.9, 0.3]])
    per_label = [expected_calibration_error(y[:, j], p[:, j], n_bins=2) for j in range(2)]
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(np.mean(per_label))


def test_reliability_curve_skips_empty_bins():
    y = np.array([0, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.9])
    curve = reliability_curve(y, p, n_bins=10)
    assert curve["count"] == [1, 1, 1, 1, 1]
    assert curve["confidence"] == pytest.approx([0.1, 0.2, 0.3, 0.7, 0.9])
    assert curve["observed"] == [0.0, 1.0, 0.0, 1.0, 1.0]
    assert reliability_curve(y, p, n_bins=2) == {
        "confidence": pytest.approx([0.2, 0.8]),
        "observed": pytest.approx([1 / 3, 1.0]),
        "count": [3, 2],
    }


def test_slope_and_intercept_of_a_calibrated_simulation():
    slope, intercept = calibration_slope_intercept(*_binary(20000, seed=1))
    assert slope == pytest.approx(1.0, abs=0.1)
    assert intercept == pytest.approx(0.0, abs=0.1)


def test_slope_of_an_over_confident_simulation_is_one_third():
    slope, _ = calibration_slope_intercept(*_binary(20000, seed=1, sharpen=3.0))
    assert slope == pytest.approx(1 / 3, rel=0.1)


def test_intercept_measures_calibration_in_the_large():
    y, p = _binary(20000, seed=2)
    shifted = expit(logit(p) + 1.0)  # every risk's odds multiplied by e
    _, intercept = calibration_slope_intercept(y, shifted)
    assert intercept == pytest.approx(-1.0, abs=0.1)


def test_slope_and_intercept_are_nan_with_one_class():
    slope, intercept = calibration_slope_intercept(np.ones(5), np.full(5, 0.7))
    assert np.isnan(slope) and np.isnan(intercept)
    with pytest.raises(ConfigError):
        calibration_slope_intercept(np.array([0, 1]), np.array([[0.5, 0.5], [0.2, 0.8]]))


def test_temperature_scaling_recovers_the_temperature_and_fixes_ece():
    y_val, p_val = _binary(20000, seed=3, sharpen=3.0)
    y_test, p_test = _binary(20000, seed=4, sharpen=3.0)
    calibrator = fit_calibrator("binary", y_val, p_val, "temperature")
    assert calibrator.params["temperature"] == pytest.approx(3.0, rel=0.1)
    assert expected_calibration_error(y_test, p_test) > 0.08
    assert expected_calibration_error(y_test, calibrator.transform(p_test)) < 0.03


def test_multiclass_temperature_scaling():
    y_val, p_val = _multiclass(10000, seed=5)
    y_test, p_test = _multiclass(10000, seed=6)
    calibrator = fit_calibrator("multiclass", y_val, p_val, "temperature")
    assert calibrator.params["temperature"] == pytest.approx(3.0, rel=0.1)
    calibrated = calibrator.transform(p_test)
    assert calibrated.sum(axis=1) == pytest.approx(np.ones(len(calibrated)))
    assert np.array_equal(calibrated.argmax(axis=1), p_test.argmax(axis=1))
    assert expected_calibration_error(y_test, p_test) > 0.08
    assert expected_calibration_error(y_test, calibrated) < 0.03


def test_multilabel_temperature_is_one_per_label():
    y0, p0 = _binary(5000, seed=7, sharpen=3.0)
    y1, p1 = _binary(5000, seed=8, sharpen=0.5)
    calibrator = fit_calibrator("multilabel", np.column_stack([y0, y1]), np.column_stack([p0, p1]))
    t0, t1 = calibrator.params["temperature"]
    assert t0 == pytest.approx(3.0, rel=0.15) and t1 == pytest.approx(0.5, rel=0.15)
    assert calibrator.transform(np.column_stack([p0, p1])).shape == (5000, 2)


@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_monotone_calibration_keeps_auroc(method):
    y, p = _binary(5000, seed=9, sharpen=3.0)
    calibrated = fit_calibrator("binary", y, p, method).transform(p)
    # The 1e-6 clip on inputs ties a few extreme scores, so compare with the clipped scores.
    assert auroc(y, calibrated) == pytest.approx(auroc(y, np.clip(p, 1e-6, 1 - 1e-6)), abs=1e-12)


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_platt_and_isotonic_reduce_ece(method):
    y_val, p_val = _binary(10000, seed=10, sharpen=3.0)
    y_test, p_test = _binary(10000, seed=11, sharpen=3.0)
    calibrated = fit_calibrator("binary", y_val, p_val, method).transform(p_test)
    assert expected_calibration_error(y_test, calibrated) < 0.03 < expected_calibration_error(y_test, p_test)


def test_platt_recovers_the_inverse_sharpening():
    y, p = _binary(20000, seed=12, sharpen=3.0)
    params = fit_calibrator("binary", y, p, "platt").params
    assert params["a"] == pytest.approx(1 / 3, rel=0.1)
    assert params["b"] == pytest.approx(0.0, abs=0.1)


def test_temperature_and_platt_never_return_exact_zero_or_one():
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.array([0.0, 0.2, 0.9, 1.0, 0.6, 0.4])
    for method in ("temperature", "platt"):
        out = fit_calibrator("binary", y, p, method).transform(np.array([0.0, 1e-12, 1.0]))
        assert np.all((out > 0) & (out < 1))
    sharp = Calibrator("temperature", "binary", {"temperature": 0.05}).transform(np.array([0.0, 1.0]))
    assert np.all((sharp > 0) & (sharp < 1))


@pytest.mark.parametrize(
    ("task_type", "method", "data"),
    [
        ("binary", "temperature", _binary(500, seed=13, sharpen=2.0)),
        ("binary", "platt", _binary(500, seed=13, sharpen=2.0)),
        ("binary", "isotonic", _binary(500, seed=13, sharpen=2.0)),
        ("multiclass", "temperature", _multiclass(500, seed=14)),
        ("binary", "none", _binary(50, seed=15)),
    ],
)
def test_config_round_trips_through_json(task_type, method, data):
    y, p = data
    calibrator = fit_calibrator(task_type, y, p, method)
    restored = Calibrator.from_config(json.loads(json.dumps(calibrator.get_config())))
    assert restored == calibrator
    assert np.array_equal(restored.transform(p), calibrator.transform(p))


def test_multilabel_config_round_trips_through_json():
    y0, p0 = _binary(300, seed=16, sharpen=2.0)
    y1, p1 = _binary(300, seed=17)
    y, p = np.column_stack([y0, y1]), np.column_stack([p0, p1])
    calibrator = fit_calibrator("multilabel", y, p)
    restored = Calibrator.from_config(json.loads(json.dumps(calibrator.get_config())))
    assert np.array_equal(restored.transform(p), calibrator.transform(p))


def test_identity_cases():
    y, p = _binary(100, seed=18)
    assert fit_calibrator("binary", np.ones(100), p).method == "none"
    assert np.array_equal(fit_calibrator("binary", y, p, "none").transform(p), p)
    targets = np.linspace(0, 50, 10)
    regression = fit_calibrator("regression", targets, targets + 1)
    assert regression.method == "none" and np.array_equal(regression.transform(targets), targets)


def test_user_errors():
    y, p = _multiclass(100, seed=19)
    with pytest.raises(ConfigError, match="calibration 'platt' is for binary tasks; use 'temperature'"):
        fit_calibrator("multiclass", y, p, "platt")
    with pytest.raises(ConfigError, match="binary tasks"):
        fit_calibrator("multilabel", np.zeros((3, 2)), np.full((3, 2), 0.5), "isotonic")
    with pytest.raises(ConfigError, match="unknown calibration method"):
        fit_calibrator("binary", np.array([0, 1]), np.array([0.3, 0.6]), "beta")
    with pytest.raises(ConfigError):
        Calibrator.from_config({"method": "temperature", "task_type": "binary", "params": {}})
    with pytest.raises(ConfigError):
        Calibrator.from_config({"method": "splines", "task_type": "binary"})
