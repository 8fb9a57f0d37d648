"""Batched forward passes shared by the trainer, the bundle and evaluation.

>>> scores = predict_scores(model, task, features)   # probabilities, or values for regression
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset, default_collate


def model_outputs(model: torch.nn.Module, inputs: torch.Tensor | Dataset, batch_size: int = 1024, device: Any = None) -> torch.Tensor:
    """Raw model outputs (logits) for a tensor of inputs or a dataset of ``(x, y)`` pairs, in eval mode."""
    device = device or next(iter(model.parameters()), torch.empty(0)).device
    was_training = model.training
    model.eval()
    outputs = []
    with torch.inference_mode():
        for x in _input_batches(inputs, batch_size):
            outputs.append(model(x.to(device)).float().cpu())
    model.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0)


def predict_scores(model: torch.nn.Module, task: Any, inputs: torch.Tensor | Dataset, batch_size: int = 1024) -> np.ndarray:
    """Probabilities (classification) or predictions in target units (regression)."""
    return task.scores(model_outputs(model, inputs, batch_size)).numpy()


def batch_of(dataset: Dataset, indices: torch.Tensor) -> Any:
    """The samples at ``indices`` as one batch: a ``TensorDataset`` is sliced, a dataset with a
    ``batch(indices)`` method builds (and augments) the batch itself, any other is collated."""
    if isinstance(dataset, TensorDataset):
        return tuple(tensor[indices] for tensor in dataset.tensors)
    if hasattr(dataset, "batch"):
        return dataset.batch(indices)
    return default_collate([dataset[i] for i in indices.tolist()])


def _input_batches(inputs: torch.Tensor | Dataset, batch_size: int):
    if isinstance(inputs, torch.Tensor):
        yield from inputs.split(batch_size)
        return
    for indices in torch.arange(len(inputs)).split(batch_size):
        batch = batch_of(inputs, indices)
        yield batch[0] if isinstance(batch, (list, tuple)) else batch  # the inputs of (x, y) pairs


def sklearn_matrix(preprocessor: Any, inputs: Any, reads: str) -> np.ndarray:
    """The matrix a scikit-learn model reads (its registry entry's ``reads``): the feature matrix, or the
    whole preprocessed rows for a model that reads the samples itself."""
    return preprocessor.transform(inputs).numpy() if reads == "samples" else preprocessor.feature_matrix(inputs)


def sklearn_scores(model: Any, task: Any, features: np.ndarray) -> np.ndarray:
    """Scores of a fitted scikit-learn estimator in the same form as :func:`predict_scores`."""
    if task.type == "regression":
        return model.predict(features).astype(float)
    if task.type == "multilabel":
        return np.stack([p[:, 1] for p in model.predict_proba(features)], axis=1)
    probabilities = model.predict_proba(features)
    return probabilities[:, 1] if task.type == "binary" else probabilities
