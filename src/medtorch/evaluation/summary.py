"""Everything the report says about a bundle's predictions on one labelled set (test or external).

>>> numbers = clinical_summary(bundle, test_records, n_bootstrap=1000)
>>> numbers["calibration"]["after"]["ece"]
{'value': 0.031, 'ci': [0.019, 0.048]}

Metrics with CIs, per-class metrics, the operating point's confusion matrix, calibration
before and after the bundle's recalibration, conformal coverage, subgroups, the decision curve
and the ROC/PR points (per class for several classes). Every number is computed on the given
records only; thresholds, calibration and conformal sets were fitted on validation data when the
bundle was made.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medtorch.evaluation.metrics import evaluate, one_vs_rest, per_class_metrics
from medtorch.tasks import Task

CALIBRATION_BOOTSTRAP = 200  # each resample refits the calibration slope; 200 keeps intervals stable and fast
CURVE_POINTS = 200  # points kept per ROC or PR curve: a smooth line at a few kB per class in metrics.json


def evaluation_target(task: Task, raw: np.ndarray) -> np.ndarray:
    """Labels as the metrics take them: class codes, or values in the target's units for regression."""
    return np.asarray(raw, dtype=float) if task.type == "regression" else task.encode(raw)


def clinical_summary(
    bundle: Any, records: Any, *, n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, Any]:
    """The statistics of ``bundle`` on labelled ``records`` (see the module docstring)."""
    task = bundle.task
    y = evaluation_target(task, records.target)
    raw = bundle.predict_scores(records.inputs, calibrated=False)
    scores = bundle.calibrator.transform(raw) if bundle.calibrator is not None else raw
    options = {"groups": records.groups, "n_bootstrap": n_bootstrap, "confidence": confidence, "seed": seed}
    summary: dict[str, Any] = {
        "n": int(len(y)),
        "threshold": bundle.threshold,
        "metrics": evaluate(task, y, scores, bundle.threshold, **options),
        "curves": roc_pr_curves(task, y, scores),
    }
    if task.type in ("multiclass", "multilabel"):
        summary["per_class"] = _nest(evaluate(task, y, scores, bundle.threshold, metric_fn=per_class_metrics, **options))
    if task.type in ("binary", "multiclass"):
        summary["operating_point"] = operating_point(task, y, scores, bundle.threshold)
    if task.type != "regression":
        options_small = options | {"n_bootstrap": min(n_bootstrap, CALIBRATION_BOOTSTRAP)}
        summary["calibration"] = calibration_summary(task, y, raw, scores, bundle.calibrator, options_small)
    if bundle.conformal is not None:
        summary["conformal"] = conformal_summary(bundle, y, scores)
    if records.attributes is not None:
        from medtorch.evaluation.subgroups import subgroup_analysis

        summary["subgroups"] = subgroup_analysis(task, y, scores, bundle.threshold, records.attributes, **options)
    if task.type == "binary" and len(np.unique(y)) == 2:
        from medtorch.evaluation.decision_curve import decision_curve

        summary["decision_curve"] = decision_curve(y, scores)
    return summary


def operating_point(task: Task, y: np.ndarray, scores: np.ndarray, threshold: float | None) -> dict[str, Any]:
    """The confusion matrix (rows: truth, columns: prediction) at the frozen threshold, or at argmax."""
    from sklearn.metrics import confusion_matrix

    if task.type == "binary":
        labels = [task.negative, task.positive]
        called = (scores >= (0.5 if threshold is None else threshold)).astype(int)
        matrix = confusion_matrix(y.astype(int), called, labels=[0, 1])
    else:
        labels = list(task.classes)
        matrix = confusion_matrix(y.astype(int), scores.argmax(axis=1), labels=list(range(len(labels))))
    return {"threshold": threshold, "labels": [str(label) for label in labels], "matrix": matrix.tolist()}


def calibration_numbers(task: Task, y: np.ndarray, scores: np.ndarray, threshold: float | None = None) -> dict[str, float]:
    """ECE and Brier score (and, for binary tasks, the calibration slope and intercept)."""
    from medtorch.evaluation.calibration import calibration_slope_intercept, expected_calibration_error

    numbers = {"ece": expected_calibration_error(y, scores)}
    if task.type == "multiclass":
        one_hot = np.eye(scores.shape[1])[y.astype(int)]
        numbers["brier"] = float(np.mean(np.sum((scores - one_hot) ** 2, axis=1)))
    else:
        numbers["brier"] = float(np.mean((scores - y) ** 2))
    if task.type == "binary":
        numbers["slope"], numbers["intercept"] = calibration_slope_intercept(y, scores)
    return numbers


def calibration_summary(
    task: Task, y: np.ndarray, raw: np.ndarray, calibrated: np.ndarray, calibrator: Any, options: dict[str, Any]
) -> dict[str, Any]:
    """Calibration of the model's own probabilities (before) and of the recalibrated ones (after)."""
    from medtorch.evaluation.calibration import reliability_curve

    return {
        "method": "none" if calibrator is None else calibrator.method,
        "params": {} if calibrator is None else calibrator.params,
        "before": evaluate(task, y, raw, metric_fn=calibration_numbers, **options),
        "after": evaluate(task, y, calibrated, metric_fn=calibration_numbers, **options),
        "reliability": {"before": reliability_curve(y, raw), "after": reliability_curve(y, calibrated)},
    }


def conformal_summary(bundle: Any, y: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """Empirical coverage of the bundle's conformal sets (or intervals) against their target."""
    from medtorch.evaluation.conformal import interval_summary, set_summary

    conformal = bundle.conformal
    if bundle.task.type == "regression":
        low, high = conformal.intervals(scores)
        numbers = interval_summary(y, low, high)
    else:
        numbers = set_summary(y.astype(int), conformal.prediction_sets(scores))
    return {"target": conformal.coverage, **numbers}


def roc_pr_curves(task: Task, y: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """ROC and precision-recall points, thinned for the report: one curve for a binary task; one
    curve per class against the rest (``{"per_class": {class: curve}}``) for multiclass and
    multi-label tasks, for each class with both positive and negative cases in ``y``; ``{}`` for regression."""
    if task.type == "binary":
        return _curve(np.asarray(y, dtype=int), scores) if len(np.unique(y)) == 2 else {}
    if task.type not in ("multiclass", "multilabel"):
        return {}
    truth = one_vs_rest(task, np.asarray(y), scores.shape[1])
    per_class = {str(name): _curve(truth[:, k], scores[:, k]) for k, name in enumerate(task.classes) if 0 < truth[:, k].sum() < len(truth)}
    return {"per_class": per_class} if per_class else {}


def _curve(y: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """One ROC and one precision-recall curve of 0/1 ``y`` against ``scores``, at most ``CURVE_POINTS`` points each."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    fpr, tpr, _ = roc_curve(y, scores)
    precision, recall, _ = precision_recall_curve(y, scores)
    keep = lambda a: np.round(a[np.linspace(0, len(a) - 1, min(len(a), CURVE_POINTS)).astype(int)], 4).tolist()  # noqa: E731
    return {"roc": {"fpr": keep(fpr), "tpr": keep(tpr)}, "pr": {"recall": keep(recall), "precision": keep(precision)}}


def _nest(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"A/auroc": x}`` to ``{"A": {"auroc": x}}``."""
    nested: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        name, metric = key.rsplit("/", 1)
        nested.setdefault(name, {})[metric] = value
    return nested
