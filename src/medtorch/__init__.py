"""medtorch: deep learning on healthcare data, one honest pipeline from data to a servable model.

>>> import medtorch
>>> run = medtorch.train("heart.csv", target="disease", out="runs/heart")
>>> medtorch.load_bundle("runs/heart/bundle").predict("new_patients.csv")

Names are imported on first use so ``import medtorch`` (and the CLI) start fast.
"""

from importlib import import_module
from typing import Any

from medtorch.version import __version__

_EXPORTS = {
    "train": "medtorch.pipeline",
    "predict": "medtorch.pipeline",
    "load_bundle": "medtorch.bundle",
    "Bundle": "medtorch.bundle",
    "Classifier": "medtorch.estimator",
    "RunConfig": "medtorch.config",
    "load_config": "medtorch.config",
    "create_model": "medtorch.registry",
    "list_models": "medtorch.registry",
    "register_model": "medtorch.registry",
    "register_modality": "medtorch.data.base",
    "list_modalities": "medtorch.data.base",
    "Records": "medtorch.data.base",
    "train_val_test_split": "medtorch.data.splits",
    "group_kfold": "medtorch.data.splits",
    "Trainer": "medtorch.training.trainer",
    "evaluate": "medtorch.evaluation.metrics",
    "MedtorchError": "medtorch.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'medtorch' has no attribute {name!r}")
