"""A trained model as a folder anyone can read: ``medtorch.json`` plus the weights.

::

    bundle/
      medtorch.json        # format version, modality, model name + kwargs, task, classes,
                           # preprocessing state, threshold, file hashes
      model.safetensors    # torch models (model.skops for scikit-learn models)

Loading never unpickles: torch weights are safetensors, scikit-learn models are skops files
whose object types are checked against an allow-list before they are built.

>>> bundle = load_bundle("runs/heart/bundle")
>>> predictions = bundle.predict("new_patients.csv")
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from medtorch.data.base import Modality, Preprocessor, get_modality
from medtorch.errors import RETRAIN_HINT, BundleError
from medtorch.registry import create_model, get_model_entry
from medtorch.tasks import Task, task_from_config
from medtorch.version import BUNDLE_FORMAT_VERSION, __version__

CONFIG_FILE = "medtorch.json"
# skops trusts plain builtins itself; what it reports beyond them must be scikit-learn's or NumPy's, or one of ours
# with no code of its own on load (skops restores its attributes: arrays, lists and scikit-learn estimators)
TRUSTED_PREFIXES = ("sklearn.", "numpy.")
TRUSTED_TYPES = ("medtorch.models.rocket.MiniRocket", "medtorch.models.rocket.MiniRocketClassifier")


@dataclass
class Bundle:
    """A fitted model with everything needed to apply it to raw input."""

    model: Any
    model_name: str
    model_kwargs: dict[str, Any]
    task: Task
    modality: Modality
    preprocessor: Preprocessor
    threshold: float | None = None
    test_time_augmentation: int = 0
    calibrator: Any = None  # medtorch.evaluation.calibration.Calibrator, fitted on validation
    conformal: Any = None  # medtorch.evaluation.conformal.ConformalPredictor, fitted on validation
    data_config: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return get_model_entry(self.model_name).kind

    @property
    def members(self) -> int:
        """How many networks the model averages: 1, or the size of a deep ensemble."""
        return len(self.model.members) if _is_ensemble(self.model) else 1

    def predict_scores(self, inputs: Any, *, calibrated: bool = True) -> np.ndarray:
        """Probabilities (or regression values) for modality inputs (e.g. a DataFrame of features),
        recalibrated as fitted on validation unless ``calibrated=False``."""
        scores = self._model_scores(inputs)
        return self.calibrator.transform(scores) if calibrated and self.calibrator is not None else scores

    def _model_scores(self, inputs: Any) -> np.ndarray:
        from medtorch.inference import predict_scores, sklearn_matrix, sklearn_scores

        if self.kind == "sklearn":
            return sklearn_scores(self.model, self.task, sklearn_matrix(self.preprocessor, inputs, get_model_entry(self.model_name).reads))
        targets = np.zeros(len(inputs))
        scores = predict_scores(self.model, self.task, self.preprocessor.dataset(inputs, targets))
        if not self.test_time_augmentation:
            return scores
        import torch

        augmented = self.preprocessor.dataset(inputs, targets, train=True)
        with torch.random.fork_rng():  # repeatable, and leaves the caller's random state alone
            torch.manual_seed(0)
            copies = [predict_scores(self.model, self.task, augmented) for _ in range(self.test_time_augmentation)]
        return np.mean([scores, *copies], axis=0)

    def read(self, source: Any) -> Any:
        """Records of new data, read the way the training data was (missing codes, columns, types)."""
        from medtorch.config import DataConfig

        settings = {**self.data_config, "path": None, "target": None, "split_column": None}
        return self.modality.read(source, DataConfig(**settings, **self.preprocessor.reading_config()), with_target=False)

    def read_labeled(self, source: Any) -> Any:
        """Records of new labelled data (external validation), read the way the training data was."""
        from medtorch.config import DataConfig

        settings = {**self.data_config, "path": None, "split_column": None, "optional_columns": True}
        return self.modality.read(source, DataConfig(**settings, **self.preprocessor.reading_config()))

    def predict(self, source: Any) -> Any:
        """A DataFrame of scores and predicted labels for a file or DataFrame, one row per input row."""
        import pandas as pd

        records = self.read(source)
        scores = self.predict_scores(records.inputs)
        table = pd.DataFrame(index=range(len(scores)))
        names = self.modality.input_names(records)
        if names is not None:
            table["input"] = names
        if records.groups is not None:
            table["group"] = records.groups
        table = pd.concat([table, self.describe_scores(scores)], axis=1)
        return table

    def describe_scores(self, scores: np.ndarray) -> Any:
        """Scores as named columns plus the predicted label (at the saved threshold for binary tasks),
        and, when the bundle has a conformal predictor, the prediction set (or interval) and an
        ``uncertain`` flag: the set is not a single class, so refer the case to a clinician."""
        import pandas as pd

        task = self.task
        if task.type == "binary":
            threshold = 0.5 if self.threshold is None else self.threshold
            labels = np.where(scores >= threshold, task.positive, task.negative)
            table = pd.DataFrame({f"probability_{task.positive}": scores, "prediction": labels})
            return self._with_sets(table, scores, [task.negative, task.positive])
        if task.type == "multiclass":
            table = pd.DataFrame(scores, columns=[f"probability_{c}" for c in task.classes])
            table["prediction"] = np.asarray(task.classes, dtype=object)[scores.argmax(axis=1)]
            return self._with_sets(table, scores, list(task.classes))
        if task.type == "multilabel":
            table = pd.DataFrame(scores, columns=[f"probability_{c}" for c in task.classes])
            for i, c in enumerate(task.classes):
                table[f"prediction_{c}"] = (scores[:, i] >= 0.5).astype(int)
            return table
        table = pd.DataFrame({"prediction": scores})
        if self.conformal is not None:
            table["interval_low"], table["interval_high"] = self.conformal.intervals(scores)
        return table

    def decide(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The predicted label of each row of scores (binary: at the saved threshold) and the probability
        the model gives that label, for one-label tasks (binary, multiclass)."""
        labels = self.describe_scores(scores)["prediction"].to_numpy()
        if self.task.type == "binary":
            return labels, np.where(labels == self.task.positive, scores, 1 - scores)
        return labels, scores.max(axis=1)

    def _with_sets(self, table: Any, scores: np.ndarray, classes: list[Any]) -> Any:
        if self.conformal is None:
            return table
        members = self.conformal.prediction_sets(scores)
        table["prediction_set"] = ["|".join(str(c) for c, inside in zip(classes, row) if inside) for row in members]
        table["uncertain"] = members.sum(axis=1) != 1
        return table

    def save(self, path: str | Path) -> Path:
        """Write the bundle folder (see :func:`save_bundle`)."""
        return save_bundle(self, path)


def save_bundle(bundle: Bundle, path: str | Path) -> Path:
    """Write ``bundle`` to the folder ``path``; returns the folder."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if bundle.kind == "sklearn":
        import skops.io

        weights = path / "model.skops"
        skops.io.dump(bundle.model, weights)
    else:
        from safetensors.torch import save_file

        weights = path / "model.safetensors"
        save_file({k: v.detach().cpu().contiguous() for k, v in bundle.model.state_dict().items()}, str(weights))
    config = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "medtorch_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "modality": bundle.modality.name,
        "model": {
            "name": bundle.model_name,
            "kind": bundle.kind,
            "kwargs": _jsonable(bundle.model_kwargs),
            "members": bundle.members,
            "file": weights.name,
            "sha256": _sha256(weights),
        },
        "task": bundle.task.get_config(),
        "threshold": bundle.threshold,
        "test_time_augmentation": bundle.test_time_augmentation,
        "calibration": None if bundle.calibrator is None else bundle.calibrator.get_config(),
        "conformal": None if bundle.conformal is None else bundle.conformal.get_config(),
        "data": _jsonable(bundle.data_config),
        "preprocessing": bundle.preprocessor.get_config(),
        "metadata": _jsonable(bundle.metadata),
    }
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return path


def load_bundle(path: str | Path) -> Bundle:
    """Rebuild a bundle written by :func:`save_bundle`, checking its format and file hash."""
    path = Path(path)
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise BundleError(f"{path} is not a medtorch bundle (no {CONFIG_FILE})")
    try:
        config = json.loads(config_path.read_text())
        version = config["format_version"]
        model_info = config["model"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise BundleError(f"{config_path} is damaged: {error}") from None
    if version > BUNDLE_FORMAT_VERSION:
        raise BundleError(f"{path} has bundle format {version}; this medtorch reads up to {BUNDLE_FORMAT_VERSION}: upgrade medtorch")
    weights = path / model_info["file"]
    if not weights.is_file():
        raise BundleError(f"{weights} is missing")
    if _sha256(weights) != model_info["sha256"]:
        raise BundleError(f"{weights} does not match the hash recorded in {CONFIG_FILE}; the bundle was altered")
    modality = get_modality(config["modality"])
    task = task_from_config(config["task"])
    if model_info["kind"] == "sklearn" and config["modality"] == "signal" and version < 4:
        raise BundleError(
            f"{path}'s {model_info['name']} was fitted on signal samples and features; this medtorch gives it the features alone: {RETRAIN_HINT}"
        )
    if model_info["kind"] == "sklearn":
        model = _load_skops(weights)
    else:
        from safetensors.torch import load_file

        model = _build_model(model_info)
        try:
            model.load_state_dict(load_file(str(weights)))
        except RuntimeError as error:  # torch lists every missing and unexpected weight
            first = str(error).strip().splitlines()[-1].strip()
            raise BundleError(
                f"{weights}'s weights do not fit this medtorch's {model_info['name']} ({first}): {RETRAIN_HINT}"
            ) from None
        model.eval()
    return Bundle(
        model=model,
        model_name=model_info["name"],
        model_kwargs=model_info["kwargs"],
        task=task,
        modality=modality,
        preprocessor=modality.preprocessor_from_config(config["preprocessing"]),
        threshold=config.get("threshold"),
        test_time_augmentation=config.get("test_time_augmentation", 0),
        calibrator=_calibrator_from(config.get("calibration")),
        conformal=_conformal_from(config.get("conformal")),
        data_config=config.get("data", {}),
        metadata=config.get("metadata", {}),
    )


def _is_ensemble(model: Any) -> bool:
    from medtorch.models.ensemble import Ensemble

    return isinstance(model, Ensemble)


def _build_model(info: dict[str, Any]) -> Any:
    """The architecture the bundle names, as a deep ensemble when it has several members."""
    members = int(info.get("members", 1))
    if members == 1:
        return create_model(info["name"], **info["kwargs"])
    from medtorch.models.ensemble import Ensemble

    return Ensemble([create_model(info["name"], **info["kwargs"]) for _ in range(members)])


def _calibrator_from(config: dict[str, Any] | None) -> Any:
    if not config:
        return None
    from medtorch.evaluation.calibration import Calibrator

    return Calibrator.from_config(config)


def _conformal_from(config: dict[str, Any] | None) -> Any:
    if not config:
        return None
    from medtorch.evaluation.conformal import ConformalPredictor

    return ConformalPredictor.from_config(config)


def _load_skops(path: Path) -> Any:
    import skops.io

    untrusted = skops.io.get_untrusted_types(file=path)
    refused = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES) and t not in TRUSTED_TYPES]
    if refused:
        raise BundleError(f"{path} contains object types outside scikit-learn/numpy: {', '.join(refused[:5])}")
    return skops.io.load(path, trusted=untrusted)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
