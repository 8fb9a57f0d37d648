"""Model factories, registered by modality; see :mod:`medtorch.registry`."""

from medtorch.registry import create_model, get_model_entry, list_models, register_model

__all__ = ["create_model", "get_model_entry", "list_models", "register_model"]
