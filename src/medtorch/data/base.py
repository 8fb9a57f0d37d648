"""What every modality provides to the pipeline.

A modality (tabular, image, signal, ...) turns files into :class:`Records` and fits a
:class:`Preprocessor` that turns records into model input. Everything after that (splits,
task, training, evaluation, bundle) is shared. Adding a modality is one subclass of
:class:`Modality` decorated with :func:`register_modality`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator

import numpy as np

from medtorch.errors import ConfigError, DataError
from medtorch.registry import _did_you_mean, load_plugins

if TYPE_CHECKING:
    import pandas as pd
    import torch


@dataclass
class Sample:
    """One sample: model inputs, target, patient id (group) and subgroup attributes."""

    inputs: Any
    target: Any
    group: Any
    attributes: dict[str, Any]


@dataclass
class Records:
    """Samples of one modality before preprocessing, indexable together.

    ``inputs`` is whatever the modality reads (a DataFrame of features, a list of image paths,
    an array of signals); ``target`` holds the raw labels (``None`` at prediction time);
    ``groups`` the patient id of each sample; ``attributes`` the subgroup columns (sex, age, site);
    ``split`` a predefined split (``train``/``val``/``test`` per sample), when the source has one;
    ``names`` a name per sample to show beside its prediction (e.g. ``"208@12.500s"`` for a beat).

    >>> train = records.subset(np.arange(100))
    """

    inputs: Any
    target: np.ndarray | None = None
    groups: np.ndarray | None = None
    attributes: pd.DataFrame | None = None
    split: np.ndarray | None = None
    skipped: list[str] = field(default_factory=list)
    names: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> Sample:
        attributes = {} if self.attributes is None else self.attributes.iloc[index].to_dict()
        return Sample(
            inputs=self.inputs.iloc[index] if hasattr(self.inputs, "iloc") else self.inputs[index],
            target=None if self.target is None else self.target[index],
            group=None if self.groups is None else self.groups[index],
            attributes=attributes,
        )

    def __iter__(self) -> Iterator[Sample]:
        return (self[i] for i in range(len(self)))

    def subset(self, indices: np.ndarray) -> Records:
        """The records at ``indices`` (an integer array), in that order."""
        return Records(
            inputs=_take(self.inputs, indices),
            target=None if self.target is None else self.target[indices],
            groups=None if self.groups is None else self.groups[indices],
            attributes=None if self.attributes is None else self.attributes.iloc[indices].reset_index(drop=True),
            split=None if self.split is None else self.split[indices],
            names=None if self.names is None else self.names[indices],
        )


def _take(values: Any, indices: Any) -> Any:
    if hasattr(values, "iloc"):
        return values.iloc[indices].reset_index(drop=True)
    if isinstance(values, np.ndarray):
        return values[indices]
    return [values[i] for i in indices]


@dataclass
class Explanations:
    """What a modality shows about why its model decides: captioned PNG ``figures`` and a JSON-safe ``summary``."""

    title: str = "Explanations"
    figures: list[tuple[bytes, str]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class Fingerprints:
    """Per sample, for the duplicate checks: ``exact`` hashes, and optional 64-bit ``perceptual`` ones (images)."""

    exact: np.ndarray
    perceptual: np.ndarray | None = None


class Preprocessor(ABC):
    """Turns records into model input; fitted on training records only, saved in the bundle.

    State is plain JSON (``get_config``) so a bundle can be read by eye and loaded without pickle.
    """

    @abstractmethod
    def fit(self, records: Records) -> Preprocessor:
        """Learn the preprocessing state from training records; returns ``self``."""

    @abstractmethod
    def transform(self, inputs: Any) -> torch.Tensor:
        """Model input for ``inputs`` (the ``inputs`` field of :class:`Records`)."""

    @abstractmethod
    def model_kwargs(self) -> dict[str, Any]:
        """Shape arguments for the model factory, e.g. ``{"in_features": 31}``."""

    @abstractmethod
    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable state; ``from_config(get_config())`` rebuilds an equal preprocessor."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: dict[str, Any]) -> Preprocessor:
        """Rebuild a fitted preprocessor from :meth:`get_config`'s output."""

    def reading_config(self) -> dict[str, Any]:
        """Data-config settings that make new data be read exactly as the training data was
        (e.g. the feature columns and their types); applied by :meth:`Bundle.predict`."""
        return {}

    def dataset(self, inputs: Any, targets: np.ndarray, *, train: bool = False) -> torch.utils.data.Dataset:
        """A dataset of ``(model input, target)`` pairs; ``train=True`` lets a modality augment."""
        import torch

        return torch.utils.data.TensorDataset(self.transform(inputs), torch.as_tensor(targets))

    def feature_matrix(self, inputs: Any) -> np.ndarray:
        """2-D features for the scikit-learn baselines (default: the flattened model input)."""
        return self.transform(inputs).reshape(len(inputs), -1).numpy()


class Modality(ABC):
    """A kind of data: how to recognise it, read it and preprocess it.

    Subclasses set ``name`` and ``default_model`` (or override :meth:`default_models`) and are registered with
    :func:`register_modality`.
    """

    name: ClassVar[str]
    default_model: ClassVar[str]
    baselines: ClassVar[tuple[str, ...]] = ()
    # detection order: a more specific reader (an image manifest is also a CSV) goes first
    priority: ClassVar[int] = 0
    # training settings that suit the modality, used where the user set none (e.g. fewer epochs for images)
    train_defaults: ClassVar[dict[str, Any]] = {}

    def default_models(self, data_config: Any) -> list[dict[str, Any]]:
        """The models fitted where the user named none, each ``name`` plus factory arguments; with several,
        the best is kept (:func:`medtorch.pipeline.fit_model`: scikit-learn models by cross-validation in the
        training split first, then on validation). A modality whose kinds of
        sample want different models (a signal's beats and windows) decides from ``data_config``."""
        return [{"name": self.default_model}]

    @classmethod
    @abstractmethod
    def can_read(cls, source: Any) -> bool:
        """Whether ``source`` (a path or an in-memory object) looks like this modality's data."""

    @abstractmethod
    def read(self, source: Any, data_config: Any, *, with_target: bool = True) -> Records:
        """Read ``source`` into records; with ``with_target=False`` no target is required."""

    def data_settings(self, source: Any, data_config: Any) -> dict[str, Any]:
        """Data settings this modality decides from ``source`` where the user left them unset (e.g. a
        signal's unit and sampling rate); the pipeline applies them before reading, so reader and
        preprocessor see the same decision, and writes them to ``config.yaml``. None by default."""
        return {}

    def input_names(self, records: Records) -> list[str] | None:
        """A name for each record (e.g. the image file) to show beside its prediction, or ``None``."""
        return None if records.names is None else records.names.tolist()

    def explain(self, bundle: Any, records: Records) -> Explanations:
        """Explanations of the test predictions for the report (pictures) and metrics.json (numbers); none by default."""
        return Explanations()

    def fingerprints(self, records: Records, preprocessor: Preprocessor) -> Fingerprints | None:
        """Hashes of each sample for the leakage checks (exact copies across splits), or ``None``."""
        return None

    def missingness(self, records: Records) -> pd.DataFrame | None:
        """A boolean table (sample x input column) of missing values, or ``None`` where it does not apply."""
        return None

    def quality(self, records: Records, preprocessor: Preprocessor) -> pd.DataFrame | None:
        """A boolean table (sample x problem, e.g. a flat lead) of samples of doubtful quality, or ``None``."""
        return None

    @abstractmethod
    def preprocessor(self, data_config: Any) -> Preprocessor:
        """An unfitted preprocessor for this modality."""

    @abstractmethod
    def preprocessor_from_config(self, config: dict[str, Any]) -> Preprocessor:
        """A fitted preprocessor from a bundle's saved state."""


_MODALITIES: dict[str, type[Modality]] = {}


def register_modality(cls: type[Modality]) -> type[Modality]:
    """Class decorator: make ``cls`` available to the pipeline under ``cls.name``."""
    _MODALITIES[cls.name] = cls
    return cls


def get_modality(name: str) -> Modality:
    """An instance of the registered modality ``name``."""
    load_plugins()
    if name not in _MODALITIES:
        raise ConfigError(f"unknown modality {name!r}{_did_you_mean(name, _MODALITIES)}")
    return _MODALITIES[name]()


def list_modalities() -> list[str]:
    """Names of the registered modalities."""
    load_plugins()
    return sorted(_MODALITIES)


def detect_modality(source: Any) -> Modality:
    """The modality whose ``can_read`` accepts ``source``; a clear error when none does."""
    load_plugins()
    if isinstance(source, (str, Path)) and not Path(source).exists():
        raise DataError(f"data not found: {source}")
    for cls in sorted(_MODALITIES.values(), key=lambda c: -c.priority):
        if cls.can_read(source):
            return cls()
    raise DataError(f"cannot tell what kind of data {source} is; set data.format (one of {', '.join(list_modalities())})")
