"""Biosignals (ECG, EEG) as a modality: beats of annotated records, or fixed windows of labelled
records; the record is the patient, so no record is on both sides of a split.

Sources (WFDB ``.hea``/``.dat``, EDF, or raw ``.npy``/``.txt``/``.csv`` arrays with
``data.record_sampling_rate``):

- ``data.unit: beat`` (the default for a folder of beat-annotated records, e.g. the MIT-BIH
  Arrhythmia Database): every annotated beat is a sample, labelled with its AAMI EC57 class
  (N, S, V, F, Q). A beat is the band-passed window 0.25 s before to 0.45 s after its R-peak
  plus nine RR-interval features (``RR_FEATURES``: pre, post, local and five-minute average RR, and
  their ratios) and six ``TEMPLATE_FEATURES`` against the record's typical beat (``data.beat_template``,
  on by default). The default beat model is ``BEAT_MODEL``, a linear model on those 15 features.
- ``data.unit: window`` (the default when records carry labels: a ``REFERENCE.csv`` of
  ``record,label`` lines as in the PhysioNet challenges, ``data.labels``, or class sub-folders
  ``folder/<label>/<record>``): every ``data.window_seconds`` window of a record is a sample with
  the record's label (AF rhythm, seizure), plus the ``WINDOW_FEATURES`` (spectral, waveform, spike, per-band, rhythm).
  The default window models are ``WINDOW_MODELS``: gradient boosting and extra trees on those features,
  MiniRocket on the samples (averaged with extra trees on the features) and the CNN on the window with them,
  chosen in two steps (``pipeline.fit_model``): the three scikit-learn models by cross-validation inside the
  training records, then their best against the CNN on validation.
- With labels, each beat (by the 10 s of the record it falls in) or window gets NeuroKit2's ECG
  quality verdict (``data.ecg_quality``; on for beats, off for windows): shown in the checks and
  as subgroup metrics.
- For prediction, also a single record; R-peaks are detected (causally, as streaming does)
  when the record has no annotations.

>>> records = Signals().read("mitbih_arrhythmia/", DataConfig())
>>> records = Signals().read("training2017/", DataConfig(window_seconds=30))   # REFERENCE.csv labels
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtorch.config import DataConfig
from medtorch.data.base import Explanations, Fingerprints, Modality, Preprocessor, Records, register_modality
from medtorch.errors import RETRAIN_HINT, BundleError, ConfigError, DataError

DEFAULT_FS = {"beat": 360.0, "window": 128.0}
# the longest default window: the AF episode of the guidelines and the scoring epoch of sleep EEG; validation on CinC 2017
# preferred 30-s windows to 10-s ones (macro F1 0.686 against 0.603), while on Bonn EEG a 23.6-s segment padded to 30 s
# scored below 10-s windows (0.885 against 0.892) and the whole segment above both (0.924; docs/benchmarks/biosignals.md):
# so a window is the records' median length, up to this
MAX_WINDOW_SECONDS = 30.0
PACED_SYMBOL = "/"  # records with paced beats are left out of the AAMI protocol (de Chazal et al. 2004)
ECG_QUALITY = "ECG quality"  # the subgroup column of NeuroKit2's verdicts
UNACCEPTABLE_ECG = "ECG quality unacceptable (NeuroKit2, Zhao 2018)"
# chosen on validation on MIT-BIH DS1 (docs/benchmarks/biosignals.md): a linear model on the RR and template
# features carried to held-out patients better than the CNN on the beat (validation macro F1 0.553 vs 0.445)
BEAT_MODEL = {"name": "rr_linear", "shape_points": 0}
# the scikit-learn three compared by CV inside the training records, their best against the CNN on validation
# (pipeline.fit_model; on Bonn EEG MiniRocket was kept in 4 folds of 5, docs/benchmarks/biosignals.md); features
# see one or two leads well, the CNN what channel-averaged features miss (many leads), and MiniRocket (averaged with
# extra trees) waveform detail the features miss: on Bonn's training folds it beat extra trees alone (inner CV,
# 0.932 against 0.915), while alone on CinC's rhythms it fell far below boosting (0.62 against 0.83 on one inner fold)
# boosting at half scikit-learn's learning rate with twice the trees: in 5-fold CV inside each CinC training fold
# (no test fold read) it scored 0.787 against 0.783 (challenge score; better in 4 of 5 folds)
WINDOW_MODELS = (
    {"name": "hist_gradient_boosting", "learning_rate": 0.05, "max_iter": 400},
    {"name": "extra_trees"},
    {"name": "minirocket"},
    {"name": "cnn_rr"},
)


def _io() -> Any:
    from medtorch.data import signal_io

    return signal_io


@register_modality
class Signals(Modality):
    """ECG beats from WFDB records; one sample per annotated (or detected) beat."""

    name = "signal"
    default_model = "cnn_rr"  # the modality's network; the defaults fitted are BEAT_MODEL or WINDOW_MODELS
    baselines = ("prior", "logistic_regression")
    priority = 5
    # chosen on validation (docs/benchmarks/biosignals.md): patience 16 over 6 on Bonn EEG (small validation sets are noisy);
    # square-root class weights over balanced ones on MIT-BIH (8 Q beats weighed in the hundreds); on CinC 2017 no
    # weights beat balanced ones too, so balanced (the first default) lost wherever it was compared
    train_defaults = {"epochs": 30, "patience": 16, "schedule": "cosine", "monitor": "loss", "class_weights": "sqrt"}

    def default_models(self, data_config: DataConfig) -> list[dict[str, Any]]:
        return [dict(BEAT_MODEL)] if data_config.unit == "beat" else [dict(model) for model in WINDOW_MODELS]

    def explain(self, bundle: Any, records: Records) -> Explanations:
        """Test beats or windows, right and wrong per class, shaded where a network's evidence lay."""
        if records.target is None or bundle.task.type not in ("binary", "multiclass"):
            return Explanations()
        from medtorch.explain.signals import signal_examples

        title = "Examples: a wrong and a right evaluation case per class"
        return Explanations(title=title, figures=signal_examples(bundle, records))

    @classmethod
    def can_read(cls, source: Any) -> bool:
        if not isinstance(source, (str, Path)):
            return False
        path = Path(source)
        if path.is_dir():
            return any(path.glob("*.hea")) or any(path.glob("*.edf")) or _io().labelled_records(path) is not None
        return path.suffix.lower() in (".hea", ".edf") or (path.suffix == "" and path.with_suffix(".hea").exists())

    def read(self, source: Any, data_config: DataConfig, *, with_target: bool = True) -> Records:
        path = Path(source)
        unit = data_config.unit or self.unit_of(path)
        reader = self._read_beats if unit == "beat" else self._read_windows
        return reader(path, data_config, with_target)

    def data_settings(self, source: Any, data_config: DataConfig) -> dict[str, Any]:
        unit = data_config.unit or self.unit_of(Path(source))
        settings = {"unit": unit, "sampling_rate": data_config.sampling_rate or DEFAULT_FS[unit]}
        if unit == "window":
            settings["window_seconds"] = self.window_seconds(Path(source), data_config)
        return settings

    def window_seconds(self, source: Path, data_config: DataConfig) -> float:
        """``data.window_seconds``, or by default the median length of the records in ``source`` (floored
        to half a second, so most records hold one whole window) up to ``MAX_WINDOW_SECONDS``."""
        if data_config.window_seconds is not None:
            return data_config.window_seconds
        io = _io()
        if source.is_dir():
            items = io.labelled_records(source, data_config.labels)
            files = [file for file, _, _ in items] if items else io.list_signal_files(source)
        else:
            files = [source]
        if not files:
            return MAX_WINDOW_SECONDS
        median = float(np.median([io.record_seconds(f, data_config.record_sampling_rate) for f in files]))
        seconds = float(min(MAX_WINDOW_SECONDS, max(0.5, np.floor(median * 2) / 2)))
        if data_config.window_step_seconds and data_config.window_step_seconds > seconds:
            raise ConfigError(f"data.window_step_seconds ({data_config.window_step_seconds}) above the window ({seconds} s, the records' median length) would skip signal")
        return seconds

    def unit_of(self, path: Path) -> str:
        """``window`` for a folder of labelled records, else ``beat``."""
        return "window" if path.is_dir() and _io().labelled_records(path) is not None else "beat"

    def _read_beats(self, path: Path, data_config: DataConfig, with_target: bool) -> Records:
        io = _io()
        paths = io.list_records(path) if path.is_dir() else [path]
        if not paths:
            raise DataError(f"{path} holds no WFDB records (.hea files)")
        fs = data_config.sampling_rate or DEFAULT_FS["beat"]
        judge = with_target and data_config.ecg_quality is not False
        parts, quality, leads = [], [], None
        for record_path in paths:
            record = io.read_record(record_path, fs=data_config.record_sampling_rate)
            if with_target and record.annotation_samples is None:
                raise DataError(f"record {record.name} has no beat annotations (.atr), so its beats have no labels")
            if with_target and data_config.exclude_paced and PACED_SYMBOL in set(record.annotation_symbols.tolist()):
                continue
            leads = _check_leads(record, leads or data_config.leads or len(record.signal))
            peaks = None
            if record.annotation_samples is None:
                peaks = np.round(io.detect_r_peaks(record.signal, record.fs) * fs / record.fs).astype(int)
            parts.append(io.segment_beats(record, peaks, fs=fs, labelled=with_target, powerline=data_config.powerline, template=data_config.beat_template))
            if judge:  # each beat gets the verdict on the 10 s of the record it falls in
                quality.append(io.ecg_quality(record, np.floor(parts[-1].samples / fs / io.QUALITY_SECONDS) * io.QUALITY_SECONDS))
        beats = io.concatenate(parts)
        names = np.array([f"{r}@{s / fs:.3f}s" for r, s in zip(beats.record, beats.samples)], dtype=object)
        target = beats.labels if with_target else None
        return Records(inputs=beats.features, target=target, groups=beats.record, names=names, attributes=_quality_attribute(quality))

    def _read_windows(self, path: Path, data_config: DataConfig, with_target: bool) -> Records:
        io = _io()
        items = io.labelled_records(path, data_config.labels) if path.is_dir() else [(path, None, path.stem)]
        if items is None:
            if with_target:
                raise DataError(f"{path} has no record labels: add a REFERENCE.csv of record,label lines, data.labels, or class sub-folders")
            items = [(p, None, p.stem) for p in io.list_signal_files(path)]
        if not items:
            raise DataError(f"{path} holds no signal records (WFDB, EDF, .npy/.txt/.csv)")
        fs = data_config.sampling_rate or DEFAULT_FS["window"]
        seconds = self.window_seconds(path, data_config)
        judge = with_target and bool(data_config.ecg_quality)
        parts, quality, leads = [], [], None
        for file, label, name in items:
            record = io.read_record(file, fs=data_config.record_sampling_rate)
            record.name = name
            leads = _check_leads(record, leads or data_config.leads or len(record.signal))
            parts.append(
                io.segment_windows(
                    record, fs=fs, window_seconds=seconds, step_seconds=data_config.window_step_seconds, label=label, powerline=data_config.powerline
                )
            )
            if judge:
                quality.append(io.ecg_quality(record, parts[-1].starts / fs, seconds=seconds))
        windows = io.concatenate(parts)
        names = np.array([f"{r}@{s / fs:.1f}s" for r, s in zip(windows.record, windows.starts)], dtype=object)
        target = windows.labels if with_target else None
        return Records(inputs=windows.features, target=target, groups=windows.record, names=names, attributes=_quality_attribute(quality))

    def fingerprints(self, records: Records, preprocessor: Preprocessor) -> Fingerprints:
        import hashlib

        return Fingerprints(exact=np.array([hashlib.sha1(row.tobytes()).hexdigest() for row in records.inputs], dtype=object))

    def quality(self, records: Records, preprocessor: Preprocessor) -> Any:
        """Samples whose signal is flat (a lead off) or of extreme amplitude (movement, saturation),
        judged against the median spread of all samples (:func:`signal_io.quality_flags`)."""
        import pandas as pd

        flags = _io().quality_flags(np.asarray(records.inputs), preprocessor.n_extra, preprocessor.leads, preprocessor.channels)
        if records.attributes is not None and ECG_QUALITY in records.attributes:
            flags[UNACCEPTABLE_ECG] = (records.attributes[ECG_QUALITY] == "Unacceptable").to_numpy()
        return pd.DataFrame(flags)

    def preprocessor(self, data_config: DataConfig) -> SignalPreprocessor:
        unit = data_config.unit or (self.unit_of(Path(data_config.path)) if data_config.path else "beat")
        fs = data_config.sampling_rate or DEFAULT_FS[unit]
        template = data_config.beat_template and unit == "beat"
        step = data_config.window_step_seconds if unit == "window" else None
        seconds = data_config.window_seconds
        if unit == "window" and seconds is None:
            if not data_config.path:
                raise ConfigError("data.window_seconds is needed for a window preprocessor without data.path to measure the records")
            seconds = self.window_seconds(Path(data_config.path), data_config)
        return SignalPreprocessor(unit=unit, fs=fs, window_seconds=seconds, window_step_seconds=step, powerline=data_config.powerline, beat_template=template)

    def preprocessor_from_config(self, config: dict[str, Any]) -> SignalPreprocessor:
        return SignalPreprocessor.from_config(config)


def _quality_attribute(quality: list[np.ndarray]) -> Any:
    """The ECG quality verdicts as the records' one subgroup column, so metrics are also shown per verdict."""
    import pandas as pd

    return pd.DataFrame({ECG_QUALITY: np.concatenate(quality)}) if quality else None


def _check_leads(record: Any, leads: int) -> int:
    """Keep the first ``leads`` channels of ``record``; a record with fewer is refused."""
    if len(record.signal) < leads:
        raise DataError(f"record {record.name} has {len(record.signal)} leads; the model reads {leads}")
    record.signal = record.signal[:leads]
    return leads


class SignalPreprocessor(Preprocessor):
    """Beat or window samples scaled by the training samples' spread; the extra features (RR intervals,
    or spectral and rhythm features) standardised with training statistics."""

    def __init__(
        self,
        fs: float = DEFAULT_FS["beat"],
        leads: int | None = None,
        length: int | None = None,
        window_scale: float | None = None,
        extra_mean: list[float] | None = None,
        extra_std: list[float] | None = None,
        unit: str = "beat",
        window_seconds: float | None = None,
        window_step_seconds: float | None = None,
        powerline: float | None = None,
        beat_template: bool = False,
    ):
        self.fs, self.leads, self.length, self.unit, self.window_seconds = fs, leads, length, unit, window_seconds
        self.window_step_seconds = window_step_seconds
        self.powerline, self.beat_template = powerline, beat_template
        self.window_scale, self.extra_mean, self.extra_std = window_scale, extra_mean, extra_std

    @property
    def extra_features(self) -> tuple[str, ...]:
        """Names of the hand-made features after the samples: a beat's RR intervals (and its template
        features with a beat template), or a window's features."""
        io = _io()
        if self.unit == "beat":
            return io.RR_FEATURES + (io.TEMPLATE_FEATURES if self.beat_template else ())
        return io.WINDOW_FEATURES

    @property
    def n_extra(self) -> int:
        return len(self.extra_features)

    @property
    def channels_per_lead(self) -> int:
        """A lead alone, or a lead and its difference from the beat template."""
        return 2 if self.beat_template else 1

    @property
    def channels(self) -> int:
        """Channels per sample the model reads: the leads, then each lead less its beat template when asked."""
        return self.leads * self.channels_per_lead

    def fit(self, records: Records) -> SignalPreprocessor:
        io = _io()
        self.length = sum(io.beat_window(self.fs)) if self.unit == "beat" else io.window_length(self.fs, self.window_seconds)
        features = np.asarray(records.inputs, dtype=np.float32)
        self.leads = (features.shape[1] - self.n_extra) // self.length // self.channels_per_lead
        samples, extra = features[:, : -self.n_extra], features[:, -self.n_extra :]
        self.window_scale = float(np.std(samples)) or 1.0
        self.extra_mean, self.extra_std = extra.mean(axis=0).tolist(), np.maximum(extra.std(axis=0), 1e-6).tolist()
        return self

    def transform(self, inputs: Any) -> torch.Tensor:
        features = np.asarray(inputs, dtype=np.float32)
        expected = self.channels * self.length + self.n_extra
        if features.ndim != 2 or features.shape[1] != expected:
            template = ", each also less its beat template" if self.beat_template else ""
            raise DataError(
                f"{self.unit}s of shape {features.shape[1:]} given to a model that reads {self.channels} channel(s) "
                f"({self.leads} lead(s){template}) of {self.length} samples"
            )
        samples = features[:, : -self.n_extra] / self.window_scale
        extra = (features[:, -self.n_extra :] - np.asarray(self.extra_mean, dtype=np.float32)) / np.asarray(self.extra_std, dtype=np.float32)
        return torch.from_numpy(np.hstack([samples, extra]).astype(np.float32))

    def feature_matrix(self, inputs: Any) -> np.ndarray:
        """The standardised hand-made features alone, for scikit-learn models and baselines: samples
        are what networks learn from, while a tree or linear model on thousands of raw samples only overfits."""
        return self.transform(inputs)[:, -self.n_extra :].numpy()

    def model_kwargs(self) -> dict[str, Any]:
        return {"in_channels": self.channels, "length": self.length, "n_extra": self.n_extra}

    def reading_config(self) -> dict[str, Any]:
        config = {"sampling_rate": self.fs, "leads": self.leads, "unit": self.unit, "powerline": self.powerline}
        if self.unit == "beat":
            return config | {"beat_template": self.beat_template}
        return config | {"window_seconds": self.window_seconds} | ({"window_step_seconds": self.window_step_seconds} if self.window_step_seconds else {})

    def get_config(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "fs": self.fs,
            "window_seconds": self.window_seconds,
            "window_step_seconds": self.window_step_seconds,
            "powerline": self.powerline,
            "beat_template": self.beat_template,
            "leads": self.leads,
            "length": self.length,
            "window_scale": self.window_scale,
            "extra_mean": self.extra_mean,
            "extra_std": self.extra_std,
            "extra_features": list(self.extra_features),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SignalPreprocessor:
        if "fs" not in config:
            raise ConfigError("signal preprocessing state is incomplete")
        legacy = {"rr_mean": "extra_mean", "rr_std": "extra_std"}  # bundles written before windows existed
        config = {legacy.get(key, key): value for key, value in config.items()}
        stored = config.pop("extra_features", None)  # bundles before format 3 stored only the features' statistics
        preprocessor = cls(**config)
        written = len(stored) if stored is not None else len(preprocessor.extra_mean or preprocessor.extra_features)
        same_names = stored is None or tuple(stored) == preprocessor.extra_features
        if written != preprocessor.n_extra or not same_names:
            raise BundleError(
                f"this bundle's model reads {written} {preprocessor.unit} features, not the {preprocessor.n_extra} this medtorch computes "
                f"({', '.join(preprocessor.extra_features[:3])}, ...): {RETRAIN_HINT}"
            )
        return preprocessor
