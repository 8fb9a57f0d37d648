"""Registries for models and modalities, in the manner of timm.

One decorator registers, one factory builds, one listing enumerates::

    @register_model("mlp", modality="tabular")
    def mlp(in_features: int, out_features: int) -> nn.Module: ...

    model = create_model("mlp", in_features=30, out_features=1)
    names = list_models(modality="tabular")

Built-in and third-party modules announce themselves through the ``medtorch.plugins``
entry-point group, so this core module never imports a modality: the first look-up imports
every plugin module, and each registers what it defines.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Callable

from medtorch.errors import ConfigError

PLUGIN_GROUP = "medtorch.plugins"
_plugins_loaded = False


def load_plugins() -> None:
    """Import every module registered under the ``medtorch.plugins`` entry-point group (once)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry in entry_points(group=PLUGIN_GROUP):
        import_module(entry.value)


@dataclass(frozen=True)
class ModelEntry:
    """A registered model factory.

    ``kind`` is ``"torch"`` for an ``nn.Module`` trained by the medtorch trainer, or
    ``"sklearn"`` for a scikit-learn estimator fitted on the preprocessed features. ``reads`` says what a
    scikit-learn model is given: ``"features"`` (the modality's feature matrix; a signal's hand-made
    features alone) or ``"samples"`` (the whole preprocessed row a network reads, with the preprocessor's
    ``model_kwargs`` to read it by, for models that transform raw samples themselves, e.g. MiniRocket).
    ``task_types`` lists the tasks it can learn (``None``: every one); a modality's default that cannot
    learn a run's task is left out of the run's candidates.
    """

    name: str
    modality: str
    factory: Callable[..., Any]
    kind: str = "torch"
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    reads: str = "features"
    task_types: tuple[str, ...] | None = None

    def learns(self, task_type: str) -> bool:
        return self.task_types is None or task_type in self.task_types


_MODELS: dict[str, ModelEntry] = {}


def register_model(
    name: str, *, modality: str, kind: str = "torch", reads: str = "features", task_types: tuple[str, ...] | None = None, **defaults: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a model factory under ``name``; ``defaults`` are training hints (e.g. ``lr``); ``reads`` and
    ``task_types``: see :class:`ModelEntry`."""

    def decorator(factory: Callable[..., Any]) -> Callable[..., Any]:
        if name in _MODELS and _MODELS[name].factory is not factory:
            raise ValueError(f"model {name!r} is already registered")
        doc = (factory.__doc__ or "").strip().splitlines()
        if reads not in ("features", "samples"):
            raise ValueError(f"model {name!r}: reads must be 'features' or 'samples', not {reads!r}")
        _MODELS[name] = ModelEntry(name, modality, factory, kind, doc[0] if doc else "", defaults, reads, task_types)
        return factory

    return decorator


def get_model_entry(name: str) -> ModelEntry:
    """Return the registry entry for ``name``; an unknown name is a :class:`ConfigError`."""
    load_plugins()
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}{_did_you_mean(name, _MODELS)}; see `medtorch models`")
    return _MODELS[name]


def create_model(name: str, **kwargs: Any) -> Any:
    """Build the registered model ``name`` with ``kwargs``.

    >>> model = create_model("mlp", in_features=4, out_features=1)
    """
    entry = get_model_entry(name)
    task_type = kwargs.get("task_type")
    if task_type is not None and not entry.learns(task_type):
        raise ConfigError(f"model {name!r} learns {' or '.join(entry.task_types or ())} targets, not a {task_type} one")
    return entry.factory(**kwargs)


def list_models(modality: str | None = None, kind: str | None = None) -> list[str]:
    """Names of registered models, optionally only those of one modality or kind."""
    load_plugins()
    return sorted(
        name
        for name, entry in _MODELS.items()
        if (modality is None or entry.modality == modality) and (kind is None or entry.kind == kind)
    )


def _did_you_mean(name: str, choices: Any) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
