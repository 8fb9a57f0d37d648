"""Metrics per subgroup (sex, age band, site) and the gaps between a group and everyone else.

>>> table = subgroup_analysis(task, y, scores, threshold, attributes, groups=patient_ids)
>>> table["sex"][0]["gaps"]["equal_opportunity"]
{'value': -0.12, 'ci': [-0.21, -0.03], 'flagged': True}

A gap is a group's metric minus the same metric on all other samples; its 95% interval comes
from the same bootstrap as the metrics (by patient when ids are given) and the gap is flagged
when that interval excludes zero. Numeric attributes with many values (age) are cut into
quartile bands.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from medtorch.evaluation.metrics import _bootstrap_indices, compute_metrics
from medtorch.tasks import Task

MAX_GROUPS_BEFORE_BANDING = 8
# per task type: metrics shown per group, and the gaps computed from them (gap name -> metric)
SHOWN = {
    "binary": ("auroc", "sensitivity", "specificity", "ppv", "positive_rate"),
    "multiclass": ("auroc", "accuracy", "f1_macro"),
    "multilabel": ("auroc", "f1_macro"),
    "regression": ("mae", "rmse"),
}
GAPS = {
    "binary": {"auroc": "auroc", "equal_opportunity": "sensitivity", "specificity": "specificity", "demographic_parity": "positive_rate"},
    "multiclass": {"accuracy": "accuracy", "auroc": "auroc"},
    "multilabel": {"auroc": "auroc"},
    "regression": {"mae": "mae"},
}


def subgroup_analysis(
    task: Task,
    y: np.ndarray,
    scores: np.ndarray,
    threshold: float | None,
    attributes: pd.DataFrame | None,
    *,
    groups: np.ndarray | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    min_size: int = 10,
) -> dict[str, list[dict[str, Any]]]:
    """For each attribute column, one entry per group: its size, metrics with CIs, and gaps to the rest."""
    if attributes is None or attributes.empty:
        return {}
    result = {}
    for column in attributes.columns:
        labels = group_labels(attributes[column])
        if len(np.unique(labels)) < 2:
            continue
        result[str(column)] = _analyse_column(task, y, scores, threshold, labels, groups, n_bootstrap, confidence, seed, min_size)
    return result


def group_labels(column: pd.Series) -> np.ndarray:
    """Each sample's group name; many-valued numbers become quartile bands, missing values 'missing'."""
    numeric = pd.to_numeric(column, errors="coerce")
    if numeric.notna().sum() == column.notna().sum() and numeric.nunique() > MAX_GROUPS_BEFORE_BANDING:
        bands = pd.qcut(numeric, 4, duplicates="drop")
        labels = bands.map(lambda b: f"{b.left:.3g}–{b.right:.3g}", na_action="ignore").astype(object)
    else:
        labels = column.map(_name, na_action="ignore").astype(object)
    return labels.where(column.notna(), "missing").to_numpy(dtype=object)


def _name(value: object) -> str:
    """A group's name: 2.0 read from a column with gaps is the group '2'."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _analyse_column(task, y, scores, threshold, labels, groups, n_bootstrap, confidence, seed, min_size) -> list[dict[str, Any]]:
    names = sorted(np.unique(labels).tolist(), key=str)
    point = {name: _group_numbers(task, y, scores, threshold, labels == name) for name in names}
    draws: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    rng = np.random.default_rng(seed)
    if n_bootstrap > 0:
        for indices in _bootstrap_indices(len(y), groups, n_bootstrap, rng):
            sample_labels = labels[indices]
            for name in names:
                draws[name].append(_group_numbers(task, y[indices], scores[indices], threshold, sample_labels == name))
    alpha = (1 - confidence) / 2
    entries = []
    for name in names:
        size = int(np.sum(labels == name))
        numbers = {key: _with_ci(value, [d.get(key, np.nan) for d in draws[name]], alpha) for key, value in point[name].items()}
        metrics = {key: numbers[key] for key in SHOWN[task.type] if key in numbers}
        gaps = {}
        for gap, metric in GAPS[task.type].items():
            entry = numbers.get(f"gap_{metric}")
            if entry is None:
                continue
            low, high = entry["ci"]
            entry["flagged"] = bool(size >= min_size and low is not None and (low > 0 or high < 0))
            gaps[gap] = entry
        entries.append({"group": str(name), "n": size, "too_small": size < min_size, "metrics": metrics, "gaps": gaps})
    return entries


def _group_numbers(task: Task, y: np.ndarray, scores: np.ndarray, threshold: float | None, member: np.ndarray) -> dict[str, float]:
    """The group's metrics and each metric's difference from the other samples."""
    inside = _metrics(task, y[member], scores[member], threshold)
    outside = _metrics(task, y[~member], scores[~member], threshold)
    gaps = {f"gap_{k}": inside[k] - outside[k] for k in inside if k in outside}
    return inside | gaps


def _metrics(task: Task, y: np.ndarray, scores: np.ndarray, threshold: float | None) -> dict[str, float]:
    if len(y) == 0:
        return {}
    values = compute_metrics(task, y, scores, threshold)
    if task.type == "binary":
        values["positive_rate"] = float(np.mean(scores >= (0.5 if threshold is None else threshold)))
    return {k: v for k, v in values.items() if k in SHOWN[task.type]}


def _with_ci(value: float, draws: list[float], alpha: float) -> dict[str, Any]:
    values = np.asarray(draws, dtype=float)
    values = values[~np.isnan(values)]
    ci = [float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))] if len(values) > 1 else [None, None]
    return {"value": None if value is None or np.isnan(value) else float(value), "ci": ci}
