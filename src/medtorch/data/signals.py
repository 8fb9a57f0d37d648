"""Biosignals (ECG, EEG) as a modality: beats of annotated WFDB records, the record as the patient.

Sources:

- a folder of WFDB records (``.hea`` + ``.dat``, ``.atr`` beat annotations), e.g. the MIT-BIH
  Arrhythmia Database: with ``data.unit: beat`` (the default when annotations exist) every
  annotated beat is a sample, labelled with its AAMI EC57 class (N, S, V, F, Q), and the
  record is the group, so no patient is on both sides of a split;
- for prediction, also a single record; R-peaks are then detected (NeuroKit2) when the record
  has no annotations.

Each beat is a band-passed window around its R-peak (0.25 s before, 0.45 s after, at the
bundle's sampling rate) plus seven RR-interval features (pre, post, local and five-minute
average RR, and the ratios that normalise them per patient).

>>> records = Signals().read("mitbih_arrhythmia/", DataConfig())
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtorch.config import DataConfig
from medtorch.data.base import Fingerprints, Modality, Preprocessor, Records, register_modality
from medtorch.errors import ConfigError, DataError

DEFAULT_FS = 360.0
PACED_SYMBOL = "/"  # records with paced beats are left out of the AAMI protocol (de Chazal et al. 2004)


def _io() -> Any:
    from medtorch.data import signal_io

    return signal_io


@register_modality
class Signals(Modality):
    """ECG beats from WFDB records; one sample per annotated (or detected) beat."""

    name = "signal"
    default_model = "cnn_rr"
    baselines = ("prior", "logistic_regression")
    priority = 5
    train_defaults = {"epochs": 30, "patience": 6, "schedule": "cosine", "monitor": "loss", "class_weights": "balanced"}

    @classmethod
    def can_read(cls, source: Any) -> bool:
        if not isinstance(source, (str, Path)):
            return False
        path = Path(source)
        if path.is_dir():
            return any(path.glob("*.hea"))
        return path.suffix.lower() in (".hea", ".edf") or (path.suffix == "" and path.with_suffix(".hea").exists())

    def read(self, source: Any, data_config: DataConfig, *, with_target: bool = True) -> Records:
        io = _io()
        path = Path(source)
        paths = io.list_records(path) if path.is_dir() else [path]
        if not paths:
            raise DataError(f"{path} holds no WFDB records (.hea files)")
        fs = data_config.sampling_rate or DEFAULT_FS
        parts, leads = [], None
        for record_path in paths:
            record = io.read_record(record_path)
            if with_target and record.annotation_samples is None:
                raise DataError(f"record {record.name} has no beat annotations (.atr), so its beats have no labels")
            if with_target and data_config.exclude_paced and PACED_SYMBOL in set(record.annotation_symbols.tolist()):
                continue
            leads = leads or data_config.leads or len(record.signal)
            if len(record.signal) < leads:
                raise DataError(f"record {record.name} has {len(record.signal)} leads; the model reads {leads}")
            record.signal = record.signal[:leads]
            peaks = None
            if record.annotation_samples is None:
                peaks = np.round(io.detect_r_peaks(record.signal, record.fs) * fs / record.fs).astype(int)
            parts.append(io.segment_beats(record, peaks, fs=fs, labelled=with_target))
        beats = io.concatenate(parts)
        return Records(inputs=beats.features, target=beats.labels if with_target else None, groups=beats.record)

    def fingerprints(self, records: Records, preprocessor: Preprocessor) -> Fingerprints:
        import hashlib

        return Fingerprints(exact=np.array([hashlib.sha1(row.tobytes()).hexdigest() for row in records.inputs], dtype=object))

    def preprocessor(self, data_config: DataConfig) -> SignalPreprocessor:
        return SignalPreprocessor(fs=data_config.sampling_rate or DEFAULT_FS)

    def preprocessor_from_config(self, config: dict[str, Any]) -> SignalPreprocessor:
        return SignalPreprocessor(**config)


class SignalPreprocessor(Preprocessor):
    """Beat windows scaled by the training windows' spread; RR features standardised with training statistics."""

    def __init__(
        self,
        fs: float = DEFAULT_FS,
        leads: int | None = None,
        length: int | None = None,
        window_scale: float | None = None,
        rr_mean: list[float] | None = None,
        rr_std: list[float] | None = None,
    ):
        self.fs, self.leads, self.length = fs, leads, length
        self.window_scale, self.rr_mean, self.rr_std = window_scale, rr_mean, rr_std

    @property
    def n_rr(self) -> int:
        return len(_io().RR_FEATURES)

    def fit(self, records: Records) -> SignalPreprocessor:
        io = _io()
        before, after = io.beat_window(self.fs)
        self.length = before + after
        features = np.asarray(records.inputs, dtype=np.float32)
        self.leads = (features.shape[1] - self.n_rr) // self.length
        windows, rr = features[:, : -self.n_rr], features[:, -self.n_rr :]
        self.window_scale = float(np.std(windows)) or 1.0
        self.rr_mean, self.rr_std = rr.mean(axis=0).tolist(), np.maximum(rr.std(axis=0), 1e-6).tolist()
        return self

    def transform(self, inputs: Any) -> torch.Tensor:
        features = np.asarray(inputs, dtype=np.float32)
        expected = self.leads * self.length + self.n_rr
        if features.ndim != 2 or features.shape[1] != expected:
            raise DataError(f"beats of shape {features.shape[1:]} given to a model that reads {self.leads} lead(s) of {self.length} samples")
        windows = features[:, : -self.n_rr] / self.window_scale
        rr = (features[:, -self.n_rr :] - np.asarray(self.rr_mean, dtype=np.float32)) / np.asarray(self.rr_std, dtype=np.float32)
        return torch.from_numpy(np.hstack([windows, rr]).astype(np.float32))

    def model_kwargs(self) -> dict[str, Any]:
        return {"in_channels": self.leads, "length": self.length, "n_extra": self.n_rr}

    def reading_config(self) -> dict[str, Any]:
        return {"sampling_rate": self.fs, "leads": self.leads}

    def get_config(self) -> dict[str, Any]:
        return {
            "fs": self.fs,
            "leads": self.leads,
            "length": self.length,
            "window_scale": self.window_scale,
            "rr_mean": self.rr_mean,
            "rr_std": self.rr_std,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SignalPreprocessor:
        if "fs" not in config:
            raise ConfigError("signal preprocessing state is incomplete")
        return cls(**config)
