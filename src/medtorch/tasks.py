"""Task types: how labels are encoded, which loss and output activation, which metrics.

>>> task = infer_task(np.array(["healthy", "cancer", "healthy"]))
>>> task.type, task.classes, task.positive
('binary', ['cancer', 'healthy'], 'cancer')
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch

from medtorch.errors import ConfigError, DataError


def _plain(value: Any) -> Any:
    """A JSON-friendly Python scalar for a numpy label."""
    return value.item() if isinstance(value, np.generic) else value


class Task(ABC):
    """A prediction task. ``out_features`` is the width of the model's last layer."""

    type: ClassVar[str]
    primary_metric: ClassVar[str]
    classes: list[Any]

    @property
    @abstractmethod
    def out_features(self) -> int: ...

    @abstractmethod
    def encode(self, target: np.ndarray) -> np.ndarray:
        """Raw labels to training targets (class indices, 0/1 floats or standardised values)."""

    @abstractmethod
    def loss(self, class_weights: torch.Tensor | None = None) -> torch.nn.Module:
        """The training loss; ``class_weights`` re-weights classes for rare positives."""

    @abstractmethod
    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Model output to probabilities (classification) or predictions in target units (regression)."""

    def balanced_class_weights(self, encoded: np.ndarray) -> np.ndarray | None:
        """Weights inversely proportional to class frequency (``None`` for regression)."""
        return None

    def class_weights(self, encoded: np.ndarray, option: str) -> np.ndarray | None:
        """Class weights under ``train.class_weights`` ``option``: none, balanced (inverse frequency) or
        sqrt (its square root, softened: a class 1000x rarer weighs ~32x, not 1000x)."""
        weights = None if option == "none" else self.balanced_class_weights(encoded)
        return np.sqrt(weights) if weights is not None and option == "sqrt" else weights

    def get_config(self) -> dict[str, Any]:
        return {"type": self.type, "classes": [_plain(c) for c in self.classes]}

    def fit_target_scale(self, encoded: np.ndarray) -> None:
        """Learn target scaling on training targets (regression only)."""


class BinaryTask(Task):
    """Two classes; the model emits one logit for the positive class."""

    type = "binary"
    primary_metric = "auroc"

    def __init__(self, classes: list[Any], positive: Any):
        if positive not in classes:
            raise ConfigError(f"positive class {positive!r} is not among the labels {classes}")
        self.classes = list(classes)
        self.positive = positive

    @property
    def out_features(self) -> int:
        return 1

    @property
    def negative(self) -> Any:
        return next(c for c in self.classes if c != self.positive)

    def encode(self, target: np.ndarray) -> np.ndarray:
        _check_known_labels(target, self.classes)
        return (target == self.positive).astype(np.float32)

    def loss(self, class_weights: torch.Tensor | None = None) -> torch.nn.Module:
        pos_weight = None if class_weights is None else (class_weights[1] / class_weights[0]).reshape(1)
        return _SqueezeLoss(torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight))

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.reshape(-1).sigmoid()

    def balanced_class_weights(self, encoded: np.ndarray) -> np.ndarray:
        return _balanced(np.bincount(encoded.astype(int), minlength=2))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "positive": _plain(self.positive)}


class _OneOutputPerClass(Task):
    """A task whose model emits one logit per class (or label)."""

    def __init__(self, classes: list[Any]):
        self.classes = list(classes)

    @property
    def out_features(self) -> int:
        return len(self.classes)


class MulticlassTask(_OneOutputPerClass):
    """One of several classes; softmax over ``len(classes)`` logits."""

    type = "multiclass"
    primary_metric = "auroc"

    def encode(self, target: np.ndarray) -> np.ndarray:
        _check_known_labels(target, self.classes)
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[_plain(t)] for t in target], dtype=np.int64)

    def loss(self, class_weights: torch.Tensor | None = None) -> torch.nn.Module:
        return torch.nn.CrossEntropyLoss(weight=class_weights)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=-1)

    def balanced_class_weights(self, encoded: np.ndarray) -> np.ndarray:
        return _balanced(np.bincount(encoded, minlength=len(self.classes)))


class MultilabelTask(_OneOutputPerClass):
    """Several yes/no labels per sample (one target column each); sigmoid per label."""

    type = "multilabel"
    primary_metric = "auroc"

    def encode(self, target: np.ndarray) -> np.ndarray:
        values = np.asarray(target, dtype=float)
        if values.ndim != 2 or not np.isin(values, (0, 1)).all():
            raise DataError("a multi-label target needs one 0/1 column per label")
        return values.astype(np.float32)

    def loss(self, class_weights: torch.Tensor | None = None) -> torch.nn.Module:
        return torch.nn.BCEWithLogitsLoss(pos_weight=class_weights)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.sigmoid()

    def balanced_class_weights(self, encoded: np.ndarray) -> np.ndarray:
        positives = encoded.sum(axis=0)
        return ((len(encoded) - positives) / np.maximum(positives, 1)).astype(np.float32)


class RegressionTask(Task):
    """A continuous target, standardised for training; predictions are in the target's units."""

    type = "regression"
    primary_metric = "rmse"

    def __init__(self, mean: float = 0.0, std: float = 1.0):
        self.classes = []
        self.mean, self.std = mean, std

    @property
    def out_features(self) -> int:
        return 1

    def fit_target_scale(self, encoded: np.ndarray) -> None:
        self.mean, self.std = float(np.mean(encoded)), float(np.std(encoded) or 1.0)

    def encode(self, target: np.ndarray) -> np.ndarray:
        values = np.asarray(target, dtype=np.float64)
        return ((values - self.mean) / self.std).astype(np.float32)

    def loss(self, class_weights: torch.Tensor | None = None) -> torch.nn.Module:
        return _SqueezeLoss(torch.nn.MSELoss())

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.reshape(-1) * self.std + self.mean

    def get_config(self) -> dict[str, Any]:
        return {"type": self.type, "mean": self.mean, "std": self.std}


TASKS: dict[str, type[Task]] = {t.type: t for t in (BinaryTask, MulticlassTask, MultilabelTask, RegressionTask)}


def task_from_config(config: dict[str, Any]) -> Task:
    """Rebuild a task from :meth:`Task.get_config`."""
    kind = config["type"]
    if kind == "binary":
        return BinaryTask(config["classes"], config["positive"])
    if kind == "regression":
        return RegressionTask(config["mean"], config["std"])
    return TASKS[kind](config["classes"])


def infer_task(
    target: np.ndarray, task_type: str | None = None, positive: Any = None, label_names: list[str] | None = None
) -> Task:
    """The task a target calls for, unless ``task_type`` says otherwise.

    Two distinct values make a binary task (positive: the larger number, ``True``, or else the
    rarer class); a few distinct integers or strings a multiclass task; many distinct numbers a
    regression; a 2-D 0/1 target a multi-label task.
    """
    if target.ndim == 2:
        if task_type not in (None, "multilabel"):
            raise ConfigError(f"several target columns make a multilabel task, not {task_type}")
        return MultilabelTask(label_names or [f"label_{i}" for i in range(target.shape[1])])
    values = [_plain(v) for v in target if not _is_missing(v)]
    if not values:
        raise DataError("the target column has no values")
    classes = sorted(set(values), key=lambda v: (str(type(v)), v))
    numeric = all(isinstance(v, (int, float, bool)) for v in values)
    if task_type is None:
        many_floats = numeric and any(isinstance(v, float) and not float(v).is_integer() for v in values)
        task_type = "regression" if many_floats or (numeric and len(classes) > 20) else (
            "binary" if len(classes) == 2 else "multiclass"
        )
    if task_type != "regression" and len(classes) < 2:
        raise DataError(f"the target has a single class ({classes[0]!r}); a classifier needs at least two")
    if task_type == "binary":
        if len(classes) != 2:
            raise DataError(f"a binary task needs exactly two classes; the target has {len(classes)}: {classes[:10]}")
        return BinaryTask(classes, _default_positive(values, classes) if positive is None else _match(positive, classes))
    if task_type == "multiclass":
        return MulticlassTask(classes)
    if task_type == "regression":
        if not numeric:
            raise DataError("a regression target must be numeric")
        return RegressionTask()
    raise ConfigError(f"unknown task type {task_type!r}; choose binary, multiclass, multilabel or regression")


def _default_positive(values: list[Any], classes: list[Any]) -> Any:
    if all(isinstance(c, (int, float, bool)) for c in classes):
        return max(classes)
    counts = {c: values.count(c) for c in classes}
    return min(classes, key=lambda c: (counts[c], -classes.index(c)))


def _match(positive: Any, classes: list[Any]) -> Any:
    """The class equal to ``positive``, also when the config gives ``1`` as the string ``"1"``."""
    for c in classes:
        if c == positive or str(c) == str(positive):
            return c
    raise ConfigError(f"positive class {positive!r} is not among the labels {classes}")


def _check_known_labels(target: np.ndarray, classes: list[Any]) -> None:
    unknown = {_plain(t) for t in target} - set(classes)
    if unknown:
        raise DataError(f"labels {sorted(map(str, unknown))[:5]} were not seen in training (known: {classes})")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _balanced(counts: np.ndarray) -> np.ndarray:
    return (counts.sum() / (len(counts) * np.maximum(counts, 1))).astype(np.float32)


class _SqueezeLoss(torch.nn.Module):
    """Apply a loss to a one-column output and a 1-D target."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.inner(output.reshape(-1), target.reshape(-1))
