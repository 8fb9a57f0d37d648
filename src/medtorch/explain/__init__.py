"""Explanations of a bundle's predictions (Grad-CAM for images)."""

from medtorch.explain.gradcam import Explanation, explain_image, save_overlay

__all__ = ["Explanation", "explain_image", "save_overlay"]
