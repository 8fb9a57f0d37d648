"""Grad-CAM heatmaps for image bundles, computed with MONAI and drawn over the image.

>>> explanation = explain_image(load_bundle("runs/xray/bundle"), "patient1.dcm")
>>> save_overlay(explanation, "heatmap.png")

For a binary task the map shows evidence for the positive class; for a multiclass task,
evidence for the predicted class (or the class asked for).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtorch.bundle import Bundle
from medtorch.errors import MedtorchError
from medtorch.models.ensemble import Ensemble


@dataclass
class Explanation:
    """A Grad-CAM heatmap in [0, 1], the image it explains (display intensities), and the prediction."""

    heatmap: np.ndarray
    image: np.ndarray
    label: Any
    probability: float
    explained_class: Any


def target_layer(model: torch.nn.Module) -> str:
    """The layer whose activations Grad-CAM weighs: the model's ``gradcam_layer``, else the first
    activation after its last convolution (Grad-CAM is defined on rectified feature maps; a raw
    convolution output before normalisation can invert the map)."""
    declared = getattr(model, "gradcam_layer", None)
    if declared:
        return declared
    modules = list(model.named_modules())
    convolutions = [i for i, (_, m) in enumerate(modules) if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]
    if not convolutions:
        raise MedtorchError("Grad-CAM needs a convolutional image model")
    activations = (torch.nn.ReLU, torch.nn.GELU, torch.nn.SiLU, torch.nn.LeakyReLU, torch.nn.ELU)
    after = [name for name, m in modules[convolutions[-1] :] if isinstance(m, activations)]
    return after[0] if after else modules[convolutions[-1]][0]


def explain_image(bundle: Bundle, image: Any, explained_class: Any = None) -> Explanation:
    """Grad-CAM of ``bundle`` for one image (a path, or an array as the modality reads it)."""
    from monai.visualize import GradCAM

    if bundle.modality.name != "image" or bundle.kind != "torch":
        raise MedtorchError("explain works on image bundles with a neural network")
    task, preprocessor = bundle.task, bundle.preprocessor
    item = bundle.read(image).inputs[0] if isinstance(image, (str, Path)) else image
    tensor = preprocessor.load(item)[None]
    scores = bundle.predict_scores([item] if not isinstance(item, np.ndarray) else item[None])
    labels, probabilities = bundle.decide(scores)  # the probability of the predicted label, not always of the positive class
    class_index = _class_index(task, explained_class, scores[0])
    model = bundle.model.eval()
    # MONAI's default post-processing maps (min, max) to (1, 0), flipping the map; scale it ourselves
    members = list(model.members) if isinstance(model, Ensemble) else [model]  # an ensemble's map: its members' mean
    cams = [GradCAM(nn_module=m, target_layers=target_layer(m), postprocessing=lambda x: x) for m in members]
    heatmap = np.mean([_unit(cam(x=tensor, class_idx=class_index)[0, 0].detach().numpy()) for cam in cams], axis=0)  # each member weighs alike
    display = preprocessor.resized(item).mean(dim=0).numpy()
    explained = task.positive if task.type == "binary" else task.classes[class_index]
    return Explanation(_unit(heatmap), display, labels[0], float(probabilities[0]), explained)


def _class_index(task: Any, explained_class: Any, scores: np.ndarray) -> int:
    if task.type == "binary":
        return 0
    if explained_class is None:
        return int(np.argmax(scores))
    names = [str(c) for c in task.classes]
    if str(explained_class) not in names:
        raise MedtorchError(f"class {explained_class!r} is not one of {names}")
    return names.index(str(explained_class))


def _unit(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def save_overlay(explanation: Explanation, path: str | Path | Any) -> str | Path | Any:
    """A PNG: the image, and the heatmap over it, titled with the prediction (to a path or a binary file)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image, heatmap = explanation.image, explanation.heatmap
    if image.ndim == 3:  # a volume: show its middle slice
        image, heatmap = image[image.shape[0] // 2], heatmap[heatmap.shape[0] // 2]
    figure, (left, right) = plt.subplots(1, 2, figsize=(7, 3.6))
    for axis in (left, right):
        axis.imshow(image, cmap="gray")
        axis.axis("off")
    right.imshow(heatmap, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    left.set_title("image")
    right.set_title(f"Grad-CAM for {explanation.explained_class}")
    figure.suptitle(f"predicted: {explanation.label} (p = {explanation.probability:.2f})")
    if isinstance(path, (str, Path)):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight", format="png")
    plt.close(figure)
    return path
