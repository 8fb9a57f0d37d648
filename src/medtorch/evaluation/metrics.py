"""Metrics for every task type, with bootstrap confidence intervals.

>>> evaluate(task, y_test, scores, threshold=0.41, groups=patient_ids)
{'auroc': {'value': 0.93, 'ci': [0.89, 0.96]}, 'sensitivity': {...}, ...}

When patient ids are given the bootstrap resamples patients, not rows, so the interval
reflects how many patients were seen.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn import metrics as skm

from medtorch.tasks import Task


def _safe(fn: Any, *args: Any, **kwargs: Any) -> float:
    """The metric, or NaN where it is undefined (e.g. AUROC on a resample with one class)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(fn(*args, **kwargs))
        except ValueError:
            return float("nan")


def _nanmean(values: list[float]) -> float:
    """The mean of the defined values (a class absent from a resample has no AUROC), NaN if none."""
    defined = [v for v in values if not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney statistic (ties count one half).

    Written out because a 1000-resample bootstrap calls it thousands of times and scikit-learn's
    input checks cost more than the computation; tests check it equals ``roc_auc_score``.
    """
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def average_precision(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision with scikit-learn's definition (step-wise, tied scores grouped); fast for the bootstrap."""
    if not y.any():
        return float("nan")
    order = np.argsort(-p, kind="mergesort")
    scores, hits = p[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(hits)[last_of_tie]
    precision = true_positives / (last_of_tie + 1)
    recall = true_positives / true_positives[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """AUROC, AUPRC, Brier score, and the confusion-matrix metrics at ``threshold``."""
    y = y.astype(int)
    predicted = p >= threshold
    tp = float(np.sum(predicted & (y == 1)))
    tn = float(np.sum(~predicted & (y == 0)))
    fp = float(np.sum(predicted & (y == 0)))
    fn = float(np.sum(~predicted & (y == 1)))
    sensitivity, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    ppv = _ratio(tp, tp + fp)
    return {
        "auroc": auroc(y, p),
        "auprc": average_precision(y, p),
        "accuracy": (tp + tn) / len(y),
        "balanced_accuracy": (sensitivity + specificity) / 2,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "ppv": ppv,
        "npv": _ratio(tn, tn + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "brier": float(np.mean((p - y) ** 2)),
    }


def multiclass_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Macro averages weigh every class equally; micro averages weigh every sample (micro F1 = accuracy)."""
    labels = np.arange(p.shape[1])
    y = y.astype(int)
    predicted = p.argmax(axis=1)
    one_hot = np.eye(p.shape[1])[y]
    return {
        "auroc": float(_nanmean([auroc(one_hot[:, k], p[:, k]) for k in labels])),
        "auroc_micro": auroc(one_hot.ravel(), p.ravel()),
        "accuracy": float(np.mean(predicted == y)),
        "balanced_accuracy": _safe(skm.balanced_accuracy_score, y, predicted),
        "f1_macro": _safe(skm.f1_score, y, predicted, average="macro", labels=labels, zero_division=0),
        "log_loss": _safe(skm.log_loss, y, np.clip(p, 1e-7, 1), labels=labels),
        "brier": float(np.mean(np.sum((p - one_hot) ** 2, axis=1))),
    }


def multilabel_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    predicted = (p >= threshold).astype(int)
    y = y.astype(int)
    return {
        "auroc": float(_nanmean([auroc(y[:, k], p[:, k]) for k in range(y.shape[1])])),
        "auroc_micro": auroc(y.ravel(), p.ravel()),
        "auprc": float(_nanmean([average_precision(y[:, k], p[:, k]) for k in range(y.shape[1])])),
        "auprc_micro": average_precision(y.ravel(), p.ravel()),
        "f1_macro": _safe(skm.f1_score, y, predicted, average="macro", zero_division=0),
        "f1_micro": _safe(skm.f1_score, y, predicted, average="micro", zero_division=0),
    }


def one_vs_rest(task: Task, y: np.ndarray, n_classes: int) -> np.ndarray:
    """0/1 truth per class, ``(n, n_classes)``: class codes one-hot encoded (multiclass), or the labels as they are (multilabel)."""
    return np.eye(n_classes, dtype=int)[y.astype(int)] if task.type == "multiclass" else y.astype(int)


def per_class_metrics(task: Task, y: np.ndarray, scores: np.ndarray, threshold: float | None = None) -> dict[str, float]:
    """One-vs-rest metrics of each class (multiclass, at argmax) or label (multilabel, at ``threshold``),
    as flat ``"<class>/<metric>"`` keys so the bootstrap treats them like any metric."""
    if task.type not in ("multiclass", "multilabel"):
        return {}
    truth = one_vs_rest(task, y, scores.shape[1])
    if task.type == "multiclass":
        called = np.eye(scores.shape[1], dtype=bool)[scores.argmax(axis=1)]
    else:
        called = scores >= (0.5 if threshold is None else threshold)
    result = {}
    for k, name in enumerate(task.classes):
        column = binary_metrics(truth[:, k], scores[:, k], 0.5)  # threshold unused below: the call is given
        tp, fp = np.sum(called[:, k] & (truth[:, k] == 1)), np.sum(called[:, k] & (truth[:, k] == 0))
        fn = np.sum(~called[:, k] & (truth[:, k] == 1))
        tn = len(truth) - tp - fp - fn
        result |= {
            f"{name}/auroc": column["auroc"],
            f"{name}/auprc": column["auprc"],
            f"{name}/sensitivity": _ratio(tp, tp + fn),
            f"{name}/specificity": _ratio(tn, tn + fp),
            f"{name}/ppv": _ratio(tp, tp + fp),
            f"{name}/f1": _ratio(2 * tp, 2 * tp + fp + fn),
            f"{name}/support": float(truth[:, k].sum()),
        }
    return result


def regression_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {
        "rmse": float(np.sqrt(np.mean((p - y) ** 2))),
        "mae": float(np.mean(np.abs(p - y))),
        "r2": _safe(skm.r2_score, y, p),
    }


def compute_metrics(task: Task, y: np.ndarray, scores: np.ndarray, threshold: float | None = None) -> dict[str, float]:
    """Point estimates of the task's metrics.

    ``y`` is in the task's encoding (:meth:`Task.encode`), except for regression, where it is
    in the target's own units, like the scores.
    """
    if task.type == "binary":
        return binary_metrics(y, scores, 0.5 if threshold is None else threshold)
    if task.type == "multiclass":
        return multiclass_metrics(y, scores)
    if task.type == "multilabel":
        return multilabel_metrics(y, scores, 0.5 if threshold is None else threshold)
    return regression_metrics(y, scores)


def best_scored(scores: dict[str, float | None]) -> str:
    """The key of the highest score: how a run keeps one of several fits (models, class weightings). Ties, and
    scores a set cannot give (None, e.g. AUROC with one class), go to the earlier key.

    >>> best_scored({"none": 0.71, "sqrt": 0.74, "balanced": None})
    'sqrt'
    """
    return max(scores, key=lambda key: -np.inf if scores[key] is None else scores[key])


def primary_metric(task: Task, y: np.ndarray, scores: np.ndarray) -> float:
    """The task's headline metric (AUROC for classification, RMSE for regression)."""
    if task.type == "regression":
        return regression_metrics(y * task.std + task.mean, scores)["rmse"]
    if task.type == "multiclass":
        return multiclass_metrics(y, scores)["auroc"]
    return compute_metrics(task, y, scores)["auroc"]


def evaluate(
    task: Task,
    y: np.ndarray,
    scores: np.ndarray,
    threshold: float | None = None,
    *,
    groups: np.ndarray | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    metric_fn: Any = compute_metrics,
) -> dict[str, dict[str, Any]]:
    """Each metric as ``{"value": x, "ci": [lo, hi]}``; percentile bootstrap, by patient when ``groups`` is given.

    ``y`` as for :func:`compute_metrics`; ``metric_fn(task, y, scores, threshold)`` returns the
    metrics to bootstrap (default :func:`compute_metrics`; e.g. :func:`per_class_metrics`).
    """
    point = metric_fn(task, y, scores, threshold)
    if n_bootstrap <= 0:
        return {name: {"value": _finite(value), "ci": [None, None]} for name, value in point.items()}
    draws = {name: [] for name in point}
    rng = np.random.default_rng(seed)
    for indices in _bootstrap_indices(len(y), groups, n_bootstrap, rng):
        for name, value in metric_fn(task, y[indices], scores[indices], threshold).items():
            draws[name].append(value)
    alpha = (1 - confidence) / 2
    result = {}
    for name, value in point.items():
        values = np.asarray(draws[name], dtype=float)
        values = values[~np.isnan(values)]
        ci = [float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))] if len(values) else [None, None]
        result[name] = {"value": _finite(value), "ci": ci}
    return result


def _bootstrap_indices(n: int, groups: np.ndarray | None, n_bootstrap: int, rng: np.random.Generator):
    if groups is None:
        for _ in range(n_bootstrap):
            yield rng.integers(0, n, n)
        return
    unique, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(unique))]
    for _ in range(n_bootstrap):
        chosen = rng.integers(0, len(unique), len(unique))
        yield np.concatenate([members[g] for g in chosen])


def _finite(value: float) -> float | None:
    return None if value is None or np.isnan(value) else float(value)
