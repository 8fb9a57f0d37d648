"""Clinical metrics and their bootstrap confidence intervals."""

from __future__ import annotations

import numpy as np
import pytest

from medtorch.evaluation.metrics import (
    binary_metrics,
    compute_metrics,
    evaluate,
    multiclass_metrics,
    primary_metric,
    regression_metrics,
)
from medtorch.tasks import BinaryTask, MulticlassTask, MultilabelTask, RegressionTask

# Ten patients, threshold 0.5: TP = 3 (0.9, 0.8, 0.6), FN = 1 (0.3), FP = 2 (0.7, 0.55), TN = 4.
Y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
P = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.55, 0.4, 0.2, 0.1, 0.05])
BINARY = BinaryTask([0, 1], 1)


def _noisy_scores(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(np.float32)
    p = 1 / (1 + np.exp(-(1.5 * (2 * y - 1) + rng.normal(size=n))))
    return y, p


def _width(entry: dict) -> float:
    low, high = entry["ci"]
    return high - low


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sensitivity", 3 / 4),
        ("specificity", 4 / 6),
        ("ppv", 3 / 5),
        ("npv", 4 / 5),
        ("accuracy", 7 / 10),
        ("balanced_accuracy", (3 / 4 + 4 / 6) / 2),
        ("f1", 2 * 3 / (2 * 3 + 2 + 1)),
        # positive-negative pairs ranked correctly: 6 + 6 + 5 + 3 of 24
        ("auroc", 20 / 24),
        # precision at each positive's rank: 1/1, 2/2, 3/4, 4/7
        ("auprc", (1 + 1 + 3 / 4 + 4 / 7) / 4),
        ("brier", 1.705 / 10),
    ],
)
def test_binary_metric_matches_the_hand_computed_value(name, expected):
    assert binary_metrics(Y, P, 0.5)[name] == pytest.approx(expected)


def test_score_equal_to_the_threshold_counts_as_positive():
    metrics = binary_metrics(np.array([1, 0]), np.array([0.5, 0.2]), 0.5)
    assert metrics["sensitivity"] == 1.0
    assert metrics["specificity"] == 1.0


def test_rate_without_a_denominator_is_nan_not_an_error():
    metrics = binary_metrics(np.array([0, 0, 0]), np.array([0.1, 0.2, 0.3]), 0.5)
    assert np.isnan(metrics["sensitivity"])
    assert np.isnan(metrics["ppv"])
    assert np.isnan(metrics["auroc"])
    assert metrics["specificity"] == 1.0


def test_compute_metrics_uses_half_as_the_default_threshold():
    assert compute_metrics(BINARY, Y, P) == binary_metrics(Y, P, 0.5)


def test_multiclass_metrics_match_hand_computed_values():
    y = np.array([0, 1, 2, 2])
    p = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    metrics = multiclass_metrics(y, p)
    assert metrics["accuracy"] == pytest.approx(3 / 4)
    assert metrics["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert metrics["log_loss"] == pytest.approx(-np.mean(np.log([0.8, 0.7, 0.7, 0.2])))


def test_regression_metrics_match_hand_computed_values():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([1.0, 2.0, 3.0, 6.0])
    metrics = regression_metrics(y, p)
    assert metrics["rmse"] == pytest.approx(1.0)
    assert metrics["mae"] == pytest.approx(0.5)
    assert metrics["r2"] == pytest.approx(1 - 4 / 5)


def test_multilabel_metrics_score_each_label():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    metrics = compute_metrics(MultilabelTask(["a", "b"]), y, y * 0.8 + 0.1)
    assert metrics["auroc"] == pytest.approx(1.0)
    assert metrics["f1_micro"] == pytest.approx(1.0)


def test_primary_metric_of_regression_is_rmse_in_target_units():
    task = RegressionTask(mean=100.0, std=10.0)
    y_encoded = np.array([0.0, 1.0])  # 100 and 110
    assert primary_metric(task, y_encoded, np.array([100.0, 112.0])) == pytest.approx(np.sqrt(2))


def test_evaluate_gives_value_and_ci_for_every_metric():
    y, p = _noisy_scores(200)
    result = evaluate(BINARY, y, p, 0.5, n_bootstrap=200)
    assert set(result) == set(binary_metrics(y, p, 0.5))
    for name, entry in result.items():
        assert set(entry) == {"value", "ci"}, name
        assert entry["value"] == pytest.approx(binary_metrics(y, p, 0.5)[name])


def test_bootstrap_ci_contains_the_point_estimate():
    y, p = _noisy_scores(300)
    for name, entry in evaluate(BINARY, y, p, 0.5, n_bootstrap=300).items():
        low, high = entry["ci"]
        assert low <= entry["value"] <= high, name


def test_bootstrap_ci_narrows_with_more_data():
    small = evaluate(BINARY, *_noisy_scores(100, seed=1), 0.5, n_bootstrap=300)
    large = evaluate(BINARY, *_noisy_scores(2000, seed=1), 0.5, n_bootstrap=300)
    for name in ("auroc", "sensitivity", "specificity", "brier"):
        assert _width(large[name]) < 0.5 * _width(small[name]), name


def test_bootstrap_is_reproducible_for_a_seed():
    y, p = _noisy_scores(150)
    assert evaluate(BINARY, y, p, n_bootstrap=100, seed=3) == evaluate(BINARY, y, p, n_bootstrap=100, seed=3)


def test_higher_confidence_gives_a_wider_interval():
    y, p = _noisy_scores(200)
    narrow = evaluate(BINARY, y, p, n_bootstrap=300, confidence=0.8)
    wide = evaluate(BINARY, y, p, n_bootstrap=300, confidence=0.99)
    assert _width(wide["auroc"]) > _width(narrow["auroc"])


def test_no_bootstrap_gives_no_interval():
    result = evaluate(BINARY, Y, P, 0.5, n_bootstrap=0)
    assert result["auroc"] == {"value": pytest.approx(20 / 24), "ci": [None, None]}


def test_undefined_metric_is_reported_as_none():
    y = np.zeros(20)
    result = evaluate(BINARY, y, np.linspace(0, 1, 20), 0.5, n_bootstrap=20)
    assert result["auroc"]["value"] is None
    assert result["auroc"]["ci"] == [None, None]
    assert result["specificity"]["value"] == pytest.approx(0.5)


def test_patient_level_bootstrap_contains_the_point_estimate():
    y, p = _noisy_scores(60)
    groups = np.repeat(np.arange(20), 3)
    result = evaluate(BINARY, y, p, 0.5, groups=groups, n_bootstrap=200)
    for name, entry in result.items():
        if entry["value"] is not None:
            assert entry["ci"][0] <= entry["value"] <= entry["ci"][1], name


def test_patient_level_bootstrap_is_not_fooled_by_repeated_visits():
    """Eight identical visits per patient add no information: resampling patients keeps the
    interval as wide as for one visit each, resampling rows would shrink it about threefold."""
    y, p = _noisy_scores(60, seed=2)
    visits = 8
    y_rows, p_rows = np.repeat(y, visits), np.repeat(p, visits)
    groups = np.repeat(np.arange(60), visits)
    by_patient = evaluate(BINARY, y_rows, p_rows, 0.5, groups=groups, n_bootstrap=300)
    by_row = evaluate(BINARY, y_rows, p_rows, 0.5, n_bootstrap=300)
    one_visit = evaluate(BINARY, y, p, 0.5, n_bootstrap=300)
    assert _width(by_patient["auroc"]) > 2 * _width(by_row["auroc"])
    assert _width(by_patient["auroc"]) == pytest.approx(_width(one_visit["auroc"]), rel=0.35)


def test_patient_level_bootstrap_accepts_text_patient_ids():
    y, p = _noisy_scores(40)
    groups = np.array([f"P{i // 4}" for i in range(40)])
    result = evaluate(BINARY, y, p, 0.5, groups=groups, n_bootstrap=50)
    assert result["auroc"]["ci"][0] is not None


def test_multiclass_evaluation_gives_intervals():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 150)
    logits = rng.normal(size=(150, 3)) + 2 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    result = evaluate(MulticlassTask([0, 1, 2]), y, p, n_bootstrap=100)
    assert result["auroc"]["ci"][0] <= result["auroc"]["value"] <= result["auroc"]["ci"][1]
    assert result["auroc"]["value"] > 0.8


def test_fast_auroc_and_average_precision_equal_scikit_learn_with_ties():
    from sklearn.metrics import average_precision_score, roc_auc_score

    from medtorch.evaluation.metrics import auroc, average_precision

    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(5, 200))
        y = rng.integers(0, 2, n)
        if y.min() == y.max():
            continue
        p = np.round(rng.random(n), int(rng.integers(1, 4)))  # coarse scores make ties
        assert auroc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert average_precision(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)


def test_bootstrap_ci_of_auroc_covers_the_analytic_value_of_a_binormal_model():
    """Positives ~ N(d, 1), negatives ~ N(0, 1): the true AUROC is Phi(d / sqrt(2))."""
    from scipy.stats import norm

    d, rng = 1.0, np.random.default_rng(7)
    y = np.r_[np.ones(300), np.zeros(300)]
    scores = np.r_[rng.normal(d, 1, 300), rng.normal(0, 1, 300)]
    result = evaluate(BinaryTask([0, 1], 1), y, 1 / (1 + np.exp(-scores)), 0.5, n_bootstrap=500)
    low, high = result["auroc"]["ci"]
    assert low < norm.cdf(d / np.sqrt(2)) < high
    assert 0.05 < high - low < 0.12  # about 4 standard errors of an AUROC from 600 samples


def test_bootstrap_ci_of_auroc_covers_the_truth_in_about_95_of_100_simulations():
    from scipy.stats import norm

    truth, covered = norm.cdf(0.8 / np.sqrt(2)), 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        y = np.r_[np.ones(60), np.zeros(60)]
        scores = np.r_[rng.normal(0.8, 1, 60), rng.normal(0, 1, 60)]
        low, high = evaluate(BinaryTask([0, 1], 1), y, scores, 0.5, n_bootstrap=200, seed=seed)["auroc"]["ci"]
        covered += low <= truth <= high
    assert 88 <= covered <= 100


@pytest.mark.parametrize(
    ("scores", "kept"),
    [({"first": None, "second": 0.7}, "second"), ({"first": 0.7, "second": 0.7}, "first"), ({"first": None, "second": None}, "first")],
    ids=["no-score-loses", "tie-to-the-earlier", "none-scored"],
)
def test_a_choice_on_validation_passes_over_a_score_the_validation_set_cannot_give(scores, kept):
    """A validation set of one class has no AUROC; the candidate that has one wins, and with none the first is kept."""
    from medtorch.evaluation.metrics import best_scored

    assert best_scored(scores) == kept
