"""Integrated-gradients attributions for tabular bundles, summed back onto the user's columns.

>>> attributions = feature_attributions(load_bundle("runs/heart/bundle"), "new_patients.csv")
>>> png = importance_figure(global_importance(attributions))

Integrated gradients (Captum) attributes the model's output logit to the preprocessed features;
the attributions of the features derived from one input column (its standardised value, its
missingness indicator, its one-hot categories) are added up, so each row of the result has one
value per original column, and a row sums (up to the integration error) to the logit of the row
minus the logit of the baseline. Which logit: binary, the single logit (evidence for the
positive class); multiclass, the logit of ``target`` (default: each row's predicted class);
multilabel, the logit of label ``target`` (default: the first label); regression, the model's
output (the standardised target, before it is scaled back to the target's units).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from medtorch.bundle import Bundle
from medtorch.errors import ConfigError, MedtorchError
from medtorch.explain.figures import agg_figure, png_bytes

IMPORTANCE_TITLE = "Feature importance (mean |integrated gradients|)"


def feature_attributions(
    bundle: Bundle,
    data: pd.DataFrame | str | Path,
    *,
    target: Any = None,
    n_steps: int = 32,
    baseline: str = "mean",
    batch_size: int = 256,
) -> pd.DataFrame:
    """Integrated gradients per row and original column of ``data`` (a DataFrame or a table path).

    ``target`` names the class (multiclass) or label (multilabel) to explain, by name or else by
    index; it is ignored for binary and regression tasks. Returns a DataFrame with one row per
    input row and one column per feature column the bundle was trained on.
    """
    try:
        from captum.attr import IntegratedGradients
    except ImportError:
        raise MedtorchError("integrated gradients need captum: pip install 'medtorch[explain]'") from None

    if bundle.modality.name != "tabular":
        raise ConfigError(f"feature attributions work on tabular bundles; this bundle is {bundle.modality.name!r}")
    if bundle.kind != "torch":
        raise ConfigError(f"feature attributions need a neural network; {bundle.model_name!r} is a scikit-learn model")
    if baseline != "mean":
        raise ConfigError(f"unknown attribution baseline {baseline!r}; the only one is 'mean'")
    if n_steps < 1:
        raise ConfigError(f"n_steps must be at least 1, not {n_steps}")

    preprocessor = bundle.preprocessor
    inputs = bundle.read(data).inputs
    features = torch.from_numpy(preprocessor.feature_matrix(inputs))
    owners = _feature_owners(preprocessor)
    model = bundle.model
    device = next(iter(model.parameters()), torch.empty(0)).device
    was_training = model.training
    model.eval()

    def forward(x: torch.Tensor) -> torch.Tensor:
        output = model(x).float()
        return output[:, None] if output.ndim == 1 else output

    # baseline = training mean in preprocessed space: 0 for standardised columns, and 0 (absent) for indicators and one-hots
    reference = torch.zeros(1, features.shape[1], device=device)
    integrated = IntegratedGradients(forward)
    chunks = []
    try:
        for batch in features.split(batch_size):
            batch = batch.to(device)
            targets = _targets(bundle.task, target, forward, batch)
            attributions = integrated.attribute(
                batch,
                baselines=reference.expand_as(batch),
                target=targets,
                n_steps=n_steps,
                internal_batch_size=max(batch_size, len(batch)) * 4,
            )
            chunks.append(attributions.detach().float().cpu().numpy())
    finally:
        model.train(was_training)
    per_feature = np.concatenate(chunks) if chunks else np.zeros((0, features.shape[1]), np.float32)
    columns = preprocessor.columns
    summed = np.zeros((len(per_feature), len(columns)), dtype=np.float64)
    for feature, owner in enumerate(owners):
        summed[:, owner] += per_feature[:, feature]
    return pd.DataFrame(summed, columns=columns, index=inputs.index)


def _feature_owners(preprocessor: Any) -> list[int]:
    """For each preprocessed feature, the index of the original column it comes from."""
    position = {name: i for i, name in enumerate(preprocessor.columns)}
    owners = [position[spec["name"]] for spec in preprocessor.numeric]
    owners += [position[spec["name"]] for spec in preprocessor.numeric if spec["indicator"]]
    owners += [position[spec["name"]] for spec in preprocessor.categorical for _ in spec["categories"]]
    if len(owners) != len(preprocessor.feature_names):
        raise MedtorchError("the bundle's preprocessing does not match its feature names; re-train the bundle")
    return owners


def _targets(task: Any, target: Any, forward: Any, batch: torch.Tensor) -> torch.Tensor | int:
    """The output index to explain: one per row for multiclass without ``target``, else one for all."""
    if task.type in ("binary", "regression"):
        return 0
    if target is not None:
        return _label_index(task, target)
    if task.type == "multilabel":
        return 0
    with torch.no_grad():
        return forward(batch).argmax(dim=1)


def _label_index(task: Any, target: Any) -> int:
    names = [str(c) for c in task.classes]
    if str(target) in names:
        return names.index(str(target))
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool) and 0 <= target < len(names):
        return int(target)
    kind = "class" if task.type == "multiclass" else "label"
    raise ConfigError(f"{kind} {target!r} is not one of {names}")


def global_importance(attributions: pd.DataFrame) -> pd.Series:
    """Mean absolute attribution per column, largest first."""
    importance = attributions.abs().mean(axis=0).sort_values(ascending=False)
    importance.name = "importance"
    return importance


def importance_figure(importance: pd.Series, top: int = 15) -> bytes:
    """PNG bytes of a horizontal bar chart of the ``top`` most important columns, largest at top."""
    shown = importance.sort_values(ascending=False).head(top)[::-1]  # barh draws the first bar at the bottom
    figure, axis = _figure(len(shown))
    axis.barh([str(name) for name in shown.index], shown.to_numpy(dtype=float), color="#4c72b0")
    axis.set_title(IMPORTANCE_TITLE)
    axis.set_xlabel("mean |attribution| (logit units)")
    return png_bytes(figure)


def patient_figure(attributions_row: pd.Series, values_row: pd.Series, title: str, top: int = 10) -> bytes:
    """PNG bytes of one patient's signed attributions: red pushes towards the explained class, blue away."""
    order = attributions_row.abs().sort_values(ascending=False).index[:top][::-1]
    shown = attributions_row[order].to_numpy(dtype=float)
    labels = [f"{name} = {_format_value(values_row.get(name, np.nan))}" for name in order]
    colours = ["#d62728" if value > 0 else "#1f77b4" for value in shown]
    figure, axis = _figure(len(shown))
    axis.barh(labels, shown, color=colours)
    axis.axvline(0, color="black", linewidth=0.8)
    axis.set_title(title)
    axis.set_xlabel("attribution (logit units)")
    return png_bytes(figure)


def _format_value(value: Any) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "missing"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value)


def _figure(n_bars: int) -> tuple[Any, Any]:
    figure = agg_figure((6.5, 0.35 * max(n_bars, 1) + 1.4))
    return figure, figure.add_subplot()
