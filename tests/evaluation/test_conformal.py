"""Split conformal prediction: empirical coverage on simulations, and the bookkeeping by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.special import expit, softmax

from medtorch.errors import ConfigError
from medtorch.evaluation.conformal import (
    ConformalPredictor,
    fit_conformal,
    interval_summary,
    set_summary,
)


def _multiclass(n: int, seed: int, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Labels from softmax(true logits); the model sees the logits with noise, so sets vary in size."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=1.5, size=(n, k))
    cumulative = np.cumsum(softmax(logits, axis=1), axis=1)
    y = (rng.random(n)[:, None] > cumulative).sum(axis=1)
    return y, softmax(logits + rng.normal(scale=0.5, size=(n, k)), axis=1)


def _binary(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=2.0, size=n)
    y = (rng.random(n) < expit(x)).astype(int)
    return y, expit(x + rng.normal(scale=0.5, size=n))


def _regression(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return 2 * x + rng.normal(scale=0.7, size=n), 2 * x


@pytest.mark.parametrize("coverage", [0.8, 0.9])
def test_multiclass_sets_reach_the_requested_coverage(coverage):
    predictor = fit_conformal("multiclass", *_multiclass(5000, seed=0), coverage=coverage)
    y_test, p_test = _multiclass(5000, seed=1)
    summary = set_summary(y_test, predictor.prediction_sets(p_test))
    assert summary["coverage"] == pytest.approx(coverage, abs=0.03)
    assert 0 < summary["singleton_rate"] < 1  # sets really vary in size


def test_sets_grow_with_coverage():
    y_cal, p_cal = _multiclass(5000, seed=2)
    y_test, p_test = _multiclass(5000, seed=3)
    sizes = [
        set_summary(y_test, fit_conformal("multiclass", y_cal, p_cal, c).prediction_sets(p_test))["mean_size"]
        for c in (0.7, 0.8, 0.9, 0.95)
    ]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


@pytest.mark.parametrize("coverage", [0.8, 0.9])
def test_binary_sets_reach_the_requested_coverage(coverage):
    predictor = fit_conformal("binary", *_binary(5000, seed=4), coverage=coverage)
    y_test, p_test = _binary(5000, seed=5)
    sets = predictor.prediction_sets(p_test)
    assert sets.shape == (5000, 2)
    assert set_summary(y_test, sets)["coverage"] == pytest.approx(coverage, abs=0.03)


@pytest.mark.parametrize("coverage", [0.8, 0.9])
def test_regression_intervals_reach_the_requested_coverage(coverage):
    predictor = fit_conformal("regression", *_regression(5000, seed=6), coverage=coverage)
    y_test, predictions = _regression(5000, seed=7)
    summary = interval_summary(y_test, *predictor.intervals(predictions))
    assert summary["coverage"] == pytest.approx(coverage, abs=0.03)
    assert summary["mean_width"] == pytest.approx(2 * predictor.quantile)


def test_quantile_is_the_finite_sample_order_statistic():
    # n = 9 residuals 1..9: coverage 0.8 needs the ceil(10 * 0.8) = 8th smallest.
    y = np.arange(1.0, 10.0)
    predictor = fit_conformal("regression", y, np.zeros(9), coverage=0.8)
    assert predictor.quantile == 8.0 and predictor.n_calibration == 9
    assert fit_conformal("regression", y, np.zeros(9), coverage=0.9).quantile == 9.0
    # ceil(10 * 0.95) = 10 > 9: too few rows for this coverage.
    assert math.isinf(fit_conformal("regression", y, np.zeros(9), coverage=0.95).quantile)


def test_too_few_rows_gives_every_class():
    predictor = fit_conformal("multiclass", np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]), coverage=0.9)
    assert predictor.quantile == 1.0
    assert predictor.prediction_sets(np.array([[1.0, 0.0], [0.5, 0.5]])).all()


def test_lac_sets_by_hand():
    # Nonconformity 1 - p(true): 0.1, 0.4, 0.3, 0.6. With n = 4, coverage 0.6 takes the
    # ceil(5 * 0.6) = 3rd smallest (0.4) and coverage 0.8 the 4th (0.6).
    y = np.array([0, 1, 2, 0])
    p = np.array([[0.9, 0.05, 0.05], [0.3, 0.6, 0.1], [0.1, 0.2, 0.7], [0.4, 0.5, 0.1]])
    test = np.array([[0.65, 0.3, 0.05], [0.45, 0.45, 0.1], [0.2, 0.3, 0.5], [0.35, 0.33, 0.32]])
    narrow = fit_conformal("multiclass", y, p, coverage=0.6)
    assert narrow.quantile == pytest.approx(0.4)
    assert narrow.prediction_sets(test).tolist() == [[True, False, False]] + [[False, False, False]] * 3
    wide = fit_conformal("multiclass", y, p, coverage=0.8)
    assert wide.quantile == pytest.approx(0.6)
    assert wide.prediction_sets(test).tolist() == [
        [True, False, False],
        [True, True, False],
        [False, False, True],
        [False, False, False],
    ]


def test_binary_sets_have_negative_then_positive_columns():
    predictor = ConformalPredictor(coverage=0.9, task_type="binary", quantile=0.3, n_calibration=10)
    sets = predictor.prediction_sets(np.array([0.9, 0.1, 0.5, 0.75]))
    assert sets.tolist() == [[False, True], [True, False], [False, False], [False, True]]
    wide = ConformalPredictor(coverage=0.9, task_type="binary", quantile=0.6, n_calibration=10)
    assert wide.prediction_sets(np.array([0.5, 0.3])).tolist() == [[True, True], [True, False]]


def test_set_summary_by_hand():
    y = np.array([0, 1, 2, 1])
    sets = np.array([[True, False, False], [True, True, False], [False, False, False], [False, True, True]])
    summary = set_summary(y, sets)
    assert summary == {
        "coverage": 0.75,
        "mean_size": 1.25,
        "sizes": {"0": 0.25, "1": 0.25, "2": 0.5, "3": 0.0},
        "singleton_rate": 0.25,
    }


def test_interval_summary_by_hand():
    summary = interval_summary(np.array([1.0, 5.0, 3.0]), np.array([0.0, 0.0, 3.0]), np.array([2.0, 4.0, 4.0]))
    assert summary == {"coverage": pytest.approx(2 / 3), "mean_width": pytest.approx(7 / 3)}


@pytest.mark.parametrize("quantile", [0.37, math.inf])
def test_config_round_trips_through_json(quantile):
    predictor = ConformalPredictor(coverage=0.9, task_type="regression", quantile=quantile, n_calibration=12)
    text = json.dumps(predictor.get_config(), allow_nan=False)
    assert ConformalPredictor.from_config(json.loads(text)) == predictor


def test_fitted_config_round_trips_through_json():
    y, p = _multiclass(500, seed=8)
    predictor = fit_conformal("multiclass", y, p)
    restored = ConformalPredictor.from_config(json.loads(json.dumps(predictor.get_config())))
    assert restored == predictor
    assert np.array_equal(restored.prediction_sets(p), predictor.prediction_sets(p))


def test_user_errors():
    y, p = _multiclass(50, seed=9)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        fit_conformal("multiclass", y, p, coverage=1.5)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        fit_conformal("multiclass", y, p, coverage=0.0)
    with pytest.raises(ConfigError, match="binary, multiclass and regression"):
        fit_conformal("multilabel", np.zeros((5, 2)), np.full((5, 2), 0.5))
    with pytest.raises(ConfigError):
        fit_conformal("regression", np.ones(5), np.ones(5)).prediction_sets(np.ones(5))
    with pytest.raises(ConfigError):
        fit_conformal("multiclass", y, p).intervals(np.ones(5))
