"""Simple scikit-learn baselines, fitted on any modality's feature matrix.

Every run reports them beside the deep model so a reader sees what the deep model adds.

>>> clf = create_model("logistic_regression", task_type="binary", seed=0)
"""

from __future__ import annotations

from typing import Any

from medtorch.registry import register_model


@register_model("logistic_regression", modality="any", kind="sklearn")
def logistic_regression(task_type: str, seed: int = 0, C: float = 1.0) -> Any:
    """L2-regularised logistic regression (ridge regression for a continuous target)."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.multioutput import MultiOutputClassifier

    if task_type == "regression":
        return Ridge(alpha=1.0 / C)
    model = LogisticRegression(C=C, max_iter=5000, random_state=seed)
    return MultiOutputClassifier(model) if task_type == "multilabel" else model


@register_model("hist_gradient_boosting", modality="any", kind="sklearn")
def hist_gradient_boosting(task_type: str, seed: int = 0, max_iter: int = 200, learning_rate: float = 0.1) -> Any:
    """scikit-learn's histogram gradient boosting with its default early stopping (on from 10,000 rows).

    >>> model = create_model("hist_gradient_boosting", task_type="multiclass", learning_rate=0.05, max_iter=400)
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.multioutput import MultiOutputClassifier

    options = {"max_iter": max_iter, "learning_rate": learning_rate, "random_state": seed}
    if task_type == "regression":
        return HistGradientBoostingRegressor(**options)
    model = HistGradientBoostingClassifier(**options)
    return MultiOutputClassifier(model) if task_type == "multilabel" else model


@register_model("extra_trees", modality="any", kind="sklearn")
def extra_trees(task_type: str, seed: int = 0, n_estimators: int = 300, max_leaf_nodes: int | None = 256) -> Any:
    """scikit-learn's extremely randomised trees: strong on a few hundred samples of many weak features (e.g. EEG segments).

    ``max_leaf_nodes`` bounds the bundle (fully grown trees take about 200 bytes per training sample per
    tree, gigabytes on a large table); ``model: {name: extra_trees, max_leaf_nodes: null}`` lifts it.
    """
    from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor

    options = {"n_estimators": n_estimators, "max_leaf_nodes": max_leaf_nodes, "random_state": seed}
    if task_type == "regression":
        return ExtraTreesRegressor(**options)
    return ExtraTreesClassifier(**options)  # takes multi-label targets natively


@register_model("prior", modality="any", kind="sklearn")
def prior(task_type: str, seed: int = 0) -> Any:
    """The trivial baseline: every sample gets the training class frequencies (or the mean value)."""
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.multioutput import MultiOutputClassifier

    if task_type == "regression":
        return DummyRegressor(strategy="mean")
    model = DummyClassifier(strategy="prior", random_state=seed)
    return MultiOutputClassifier(model) if task_type == "multilabel" else model
