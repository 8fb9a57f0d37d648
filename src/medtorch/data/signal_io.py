"""Reading biosignals and cutting ECG records into beats.

>>> record = read_record("mitdb/101")                  # WFDB: .hea + .dat (+ .atr annotations)
>>> beats = segment_beats(record)                       # windows around R-peaks, RR features, AAMI labels

Every step that shapes a beat is causal (it uses only the signal up to the end of the beat's
window, and RR intervals up to the next beat), so a record processed as it arrives, chunk by
chunk, gives exactly the beats of the record processed whole (see :mod:`medtorch.streaming`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medtorch.errors import DataError

# AAMI EC57 classes of the MIT-BIH beat symbols (de Chazal et al. 2004); other symbols are not beats
AAMI_CLASSES = ("N", "S", "V", "F", "Q")
AAMI_OF_SYMBOL = {
    **dict.fromkeys("NLRej", "N"),
    **dict.fromkeys("AaJS", "S"),
    **dict.fromkeys("VE", "V"),
    "F": "F",
    **dict.fromkeys("/fQ", "Q"),
}
SIGNAL_SUFFIXES = {".hea", ".edf", ".npy", ".csv", ".txt"}
BEFORE_SECONDS, AFTER_SECONDS = 0.25, 0.45  # beat window around the R-peak
LOCAL_BEATS = 10  # RR average over the last beats
AVERAGE_SECONDS = 300.0  # RR average over the last five minutes
RR_FEATURES = ("pre_rr", "post_rr", "local_rr", "average_rr", "pre_ratio", "post_ratio", "local_ratio")


@dataclass
class SignalRecord:
    """One recording: ``signal`` (channels, samples) in physical units, sampling rate ``fs``,
    and optional beat annotations (sample indices and MIT-BIH symbols)."""

    name: str
    signal: np.ndarray
    fs: float
    channels: list[str] = field(default_factory=list)
    annotation_samples: np.ndarray | None = None
    annotation_symbols: np.ndarray | None = None


def aami_class(symbol: str) -> str | None:
    """The AAMI class of a MIT-BIH beat symbol, or ``None`` for a non-beat annotation ('+', '~', '|', ...)."""
    return AAMI_OF_SYMBOL.get(symbol)


def read_record(path: str | Path, fs: float | None = None, annotator: str = "atr") -> SignalRecord:
    """A WFDB record (``path`` with or without ``.hea``), an EDF file, or a ``.npy``/``.csv``/``.txt``
    array (one column per channel; needs ``fs``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in ("", ".hea", ".dat", ".atr", ".mat"):
        return _read_wfdb(path.with_suffix(""), annotator)
    if suffix == ".edf":
        return _read_edf(path)
    if suffix in (".npy", ".csv", ".txt"):
        if fs is None:
            raise DataError(f"{path.name}: a raw array needs its sampling rate (data.sampling_rate)")
        array = np.load(path) if suffix == ".npy" else np.loadtxt(path, delimiter="," if suffix == ".csv" else None, ndmin=2)
        array = np.asarray(array, dtype=np.float32)
        array = array[None] if array.ndim == 1 else (array.T if array.shape[0] > array.shape[1] else array)
        return SignalRecord(path.stem, array, float(fs), [f"ch{i}" for i in range(len(array))])
    raise DataError(f"{path}: not a signal file (WFDB .hea, EDF, .npy, .csv or .txt)")


def _read_wfdb(base: Path, annotator: str) -> SignalRecord:
    import wfdb

    try:
        record = wfdb.rdrecord(str(base))
    except (FileNotFoundError, ValueError, OSError) as error:
        raise DataError(f"cannot read WFDB record {base}: {error}") from None
    samples = symbols = None
    if base.with_suffix(f".{annotator}").exists():
        annotation = wfdb.rdann(str(base), annotator)
        samples, symbols = np.asarray(annotation.sample), np.asarray(annotation.symbol, dtype=object)
    signal = np.nan_to_num(record.p_signal.T.astype(np.float32))
    return SignalRecord(base.name, signal, float(record.fs), list(record.sig_name or []), samples, symbols)


def _read_edf(path: Path) -> SignalRecord:
    import pyedflib

    try:
        with pyedflib.EdfReader(str(path)) as reader:
            rates = {reader.getSampleFrequency(i) for i in range(reader.signals_in_file)}
            if len(rates) > 1:
                raise DataError(f"{path.name}: channels have different sampling rates {sorted(rates)}")
            signal = np.stack([reader.readSignal(i) for i in range(reader.signals_in_file)]).astype(np.float32)
            return SignalRecord(path.stem, signal, float(rates.pop()), reader.getSignalLabels())
    except OSError as error:
        raise DataError(f"cannot read EDF file {path}: {error}") from None


def resample(signal: np.ndarray, fs: float, target_fs: float) -> np.ndarray:
    """Polyphase resampling along the last axis (exact for rational ratios such as 360 -> 250)."""
    if abs(fs - target_fs) < 1e-9:
        return signal
    from fractions import Fraction

    from scipy.signal import resample_poly

    ratio = Fraction(target_fs / fs).limit_denominator(1000)
    return resample_poly(signal, ratio.numerator, ratio.denominator, axis=-1).astype(np.float32)


class CausalBandpass:
    """A Butterworth band-pass (and optional notch) applied causally, chunk by chunk, with its state kept.

    Causal so that streaming equals offline: filtering a record in chunks gives exactly the
    samples of filtering it whole.
    """

    def __init__(self, fs: float, low: float = 0.5, high: float = 40.0, channels: int = 1, powerline: float | None = None):
        from scipy.signal import butter, iirnotch, tf2sos

        sections = [butter(2, [low, min(high, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")]
        if powerline and powerline < fs / 2:
            sections.append(tf2sos(*iirnotch(powerline, 30.0, fs=fs)))
        self.sos = np.concatenate(sections)
        self.state = np.zeros((len(self.sos), channels, 2))  # at rest: a record starts from silence, whole or streamed

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        from scipy.signal import sosfilt

        out, self.state = sosfilt(self.sos, chunk, axis=-1, zi=self.state)
        return out.astype(np.float32)


@dataclass
class Beats:
    """Beats of one or more records: ``windows`` (n, channels, length), ``rr`` (n, 7) features
    (seconds and ratios, see ``RR_FEATURES``), R-peak ``samples``, ``labels`` (AAMI or None), ``record`` names."""

    windows: np.ndarray
    rr: np.ndarray
    samples: np.ndarray
    labels: np.ndarray
    record: np.ndarray

    @property
    def features(self) -> np.ndarray:
        """One row per beat: the flattened window, then the RR features (the modality's input)."""
        return np.hstack([self.windows.reshape(len(self.windows), -1), self.rr]).astype(np.float32)


def beat_window(fs: float) -> tuple[int, int]:
    return int(round(BEFORE_SECONDS * fs)), int(round(AFTER_SECONDS * fs))


def rr_features(peaks: np.ndarray, fs: float) -> np.ndarray:
    """Causal RR features per beat (the first and last beat of a record have no neighbour: they get
    the neighbouring interval instead)."""
    times = peaks / fs
    pre = np.diff(times, prepend=times[0] - (times[1] - times[0] if len(times) > 1 else 1.0))
    post = np.append(pre[1:], pre[-1])
    local = np.array([pre[max(0, i - LOCAL_BEATS + 1) : i + 1].mean() for i in range(len(pre))])
    start = np.searchsorted(times, times - AVERAGE_SECONDS)
    cumulative = np.concatenate([[0.0], np.cumsum(pre)])
    average = (cumulative[np.arange(1, len(pre) + 1)] - cumulative[start]) / (np.arange(1, len(pre) + 1) - start)
    return np.column_stack([pre, post, local, average, pre / average, post / average, local / average]).astype(np.float32)


def segment_beats(record: SignalRecord, peaks: np.ndarray | None = None, *, fs: float = 360.0, labelled: bool = True) -> Beats:
    """Band-passed beat windows around R-peaks (the annotated ones, else ``peaks``), resampled to ``fs``.

    With annotations, non-beat symbols are dropped and each beat gets its AAMI class (``labelled``).
    Beats whose window runs past either end of the record are dropped.
    """
    signal = resample(record.signal, record.fs, fs)
    scale = fs / record.fs
    symbols = None
    if peaks is None:
        if record.annotation_samples is None:
            raise DataError(f"record {record.name} has no beat annotations; detect R-peaks first (detect_r_peaks)")
        classes = np.array([aami_class(s) for s in record.annotation_symbols], dtype=object)
        keep = np.array([c is not None for c in classes], dtype=bool)
        peaks, symbols = np.round(record.annotation_samples[keep] * scale).astype(int), classes[keep]
    filtered = CausalBandpass(fs, channels=len(signal))(signal)
    before, after = beat_window(fs)
    inside = (peaks - before >= 0) & (peaks + after <= filtered.shape[1])
    rr = rr_features(peaks, fs)[inside]
    peaks = peaks[inside]
    windows = np.stack([filtered[:, p - before : p + after] for p in peaks]) if len(peaks) else np.zeros((0, len(signal), before + after))
    windows = windows - np.median(windows, axis=2, keepdims=True)
    labels = symbols[inside] if symbols is not None and labelled else np.full(len(peaks), None, dtype=object)
    return Beats(windows.astype(np.float32), rr, peaks, labels, np.full(len(peaks), record.name, dtype=object))


def detect_r_peaks(signal: np.ndarray, fs: float) -> np.ndarray:
    """R-peaks of the first channel, with NeuroKit2's default detector."""
    import neurokit2 as nk

    _, info = nk.ecg_peaks(nk.ecg_clean(signal[0], sampling_rate=int(fs)), sampling_rate=int(fs))
    return np.asarray(info["ECG_R_Peaks"], dtype=int)


def concatenate(parts: list[Beats]) -> Beats:
    if not parts:
        raise DataError("no beats found")
    return Beats(*(np.concatenate([getattr(p, name) for p in parts]) for name in ("windows", "rr", "samples", "labels", "record")))


def list_records(folder: Path) -> list[Path]:
    """The WFDB records of a folder (``RECORDS`` file if present, else every ``.hea``), sorted."""
    listing = folder / "RECORDS"
    if listing.is_file():
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        return [folder / name for name in names if (folder / f"{name}.hea").exists()]
    return sorted(p.with_suffix("") for p in folder.glob("*.hea"))
