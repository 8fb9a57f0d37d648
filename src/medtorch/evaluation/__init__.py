"""Evaluation: clinical metrics with bootstrap confidence intervals, operating thresholds, reports."""

from medtorch.evaluation.metrics import compute_metrics, evaluate, primary_metric
from medtorch.evaluation.thresholds import choose_threshold

__all__ = ["choose_threshold", "compute_metrics", "evaluate", "primary_metric"]
