"""A scikit-learn style face for notebooks: parameters in ``__init__``, ``fit`` returns ``self``,
learned state ends in ``_``.

>>> clf = Classifier(model="ft_transformer", epochs=50).fit(train_df, target="disease")
>>> proba = clf.predict_proba(test_df)
>>> clf.save("bundle/")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from medtorch.bundle import Bundle, load_bundle
from medtorch.config import parse_config
from medtorch.data.base import detect_modality
from medtorch.data.splits import train_val_test_split
from medtorch.errors import ConfigError
from medtorch.tasks import infer_task

TARGET = "__medtorch_target__"
GROUP = "__medtorch_group__"


class Classifier(ClassifierMixin, BaseEstimator):
    """A medtorch model (any registered model) trained with the medtorch trainer.

    A fifth of the rows (by patient, when ``groups`` are given) is held out for early
    stopping and the operating threshold.
    """

    def __init__(
        self,
        model: str | None = None,
        epochs: int = 200,
        batch_size: int | str = "auto",
        lr: float | None = None,
        weight_decay: float | None = None,
        patience: int = 16,
        class_weights: str = "none",
        val_size: float = 0.2,
        threshold: str = "youden",
        seed: int = 0,
        progress: bool = False,
    ):
        self.model = model
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.class_weights = class_weights
        self.val_size = val_size
        self.threshold = threshold
        self.seed = seed
        self.progress = progress

    def fit(self, X: Any, y: Any = None, *, target: str | None = None, groups: Any = None) -> Classifier:
        """Fit on a DataFrame ``X`` with labels ``y``, or on ``X`` holding the ``target`` column."""
        from medtorch.pipeline import fit_model, resolve_candidates

        if (y is None) == (target is None):
            raise ConfigError("give either y or target= (the name of the label column in X)")
        frame = X.copy()
        if y is not None:
            frame[TARGET] = np.asarray(y)
            target = TARGET
        if groups is not None:
            frame[GROUP] = np.asarray(groups)
        cfg = parse_config(
            {
                "data": {"target": target, "group_column": GROUP if groups is not None else None, "val_size": self.val_size, "test_size": 0},
                "model": {"name": self.model},
                "train": {
                    "epochs": self.epochs,
                    "batch_size": self.batch_size,
                    "lr": self.lr,
                    "weight_decay": self.weight_decay,
                    "patience": self.patience,
                    "class_weights": self.class_weights,
                    "seed": self.seed,
                },
                "evaluate": {"threshold": {"method": self.threshold}},
            }
        )
        modality = detect_modality(frame)
        records = modality.read(frame, cfg.data)
        task = infer_task(records.target)
        if task.type not in ("binary", "multiclass"):
            raise ConfigError(f"Classifier needs class labels; this target makes a {task.type} task")
        train_idx, val_idx, _ = train_val_test_split(
            records.target, records.groups, val_size=self.val_size, test_size=0, seed=self.seed
        )
        candidates = resolve_candidates(cfg, modality, task, len(train_idx))
        _, fitted = fit_model(modality, records, train_idx, val_idx, task, candidates, progress=self.progress)
        self._set_learned(fitted.bundle)
        self.history_ = fitted.history
        return self

    def _set_learned(self, bundle: Bundle) -> None:
        self.bundle_ = bundle
        self.classes_ = np.asarray(bundle.task.classes, dtype=object)
        self.threshold_ = bundle.threshold

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, one column per entry of ``classes_``."""
        scores = self.bundle_.predict_scores(self._inputs(X))
        if self.bundle_.task.type == "binary":
            positive_first = self.classes_[0] == self.bundle_.task.positive
            return np.column_stack([scores, 1 - scores] if positive_first else [1 - scores, scores])
        return scores

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels (binary: at the threshold chosen on the validation rows)."""
        scores = self.bundle_.predict_scores(self._inputs(X))
        return self.bundle_.describe_scores(scores)["prediction"].to_numpy()

    def save(self, path: str | Path) -> Path:
        """Write the fitted model as a bundle folder."""
        return self.bundle_.save(path)

    @classmethod
    def load(cls, path: str | Path) -> Classifier:
        """A fitted classifier from a bundle folder."""
        classifier = cls()
        classifier._set_learned(load_bundle(path))
        return classifier

    def _inputs(self, X: Any) -> Any:
        return self.bundle_.read(X).inputs
