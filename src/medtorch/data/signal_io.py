"""Reading biosignals and cutting ECG records into beats.

>>> record = read_record("mitdb/101")                  # WFDB: .hea + .dat (+ .atr annotations)
>>> beats = segment_beats(record)                       # windows around R-peaks, RR features, AAMI labels

>>> windows = segment_windows(record, fs=128.0, window_seconds=10.0, label="AF")  # fixed windows

Every step that shapes a beat or a window is causal (filters and resampling use only the signal
up to the end of the window, RR intervals only up to the next beat, R-peaks come from a causal
detector), so a record processed as it arrives, chunk by chunk, gives exactly the beats and
windows of the record processed whole (see :mod:`medtorch.serving.stream`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields
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
TEMPLATE_WEIGHT = 0.02  # the record's typical beat: an exponential average over about the last 50 beats
PREMATURE_RATIO = 0.9  # a beat whose pre-RR is under this share of the local RR is premature: it stays out of the template
RR_FEATURES = ("pre_rr", "post_rr", "local_rr", "average_rr", "pre_ratio", "post_ratio", "local_ratio", "post_pre_ratio", "pre_local_ratio")
# a beat against the record's typical beat so far (beat_template); averaged over leads
TEMPLATE_FEATURES = ("qrs_energy_ratio", "p_energy_ratio", "t_energy_ratio", "qrs_correlation", "p_correlation", "beat_correlation")
BEAT_WAVES = {"p": (-0.25, -0.07), "qrs": (-0.05, 0.05), "t": (0.10, 0.45)}  # seconds around the R-peak, inside the beat window
BANDS = ((0.5, 4.0), (4.0, 8.0), (8.0, 13.0), (13.0, 30.0), (30.0, 45.0))  # delta, theta, alpha, beta, gamma
BAND_NAMES = ("delta", "theta", "alpha", "beta", "gamma")
SPECTRAL_FEATURES = (*BAND_NAMES, "log_power", "edge_frequency", "line_length", "zero_crossings")
WAVEFORM_FEATURES = ("hjorth_mobility", "hjorth_complexity", "skewness", "log_kurtosis", "crest_factor", "petrosian_fd", "higuchi_fd")
SPIKE_FEATURES = ("spike_share", "steep_share", "peak_mads", "peak_steepness")
SPIKE_MADS = 6.0  # a sample this many median absolute deviations out (or a step this many median steps steep) is spike-like
BAND_FEATURES = tuple(f"{band}_{measure}" for measure in ("log_power", "log_line_length", "log_kurtosis") for band in BAND_NAMES)
RHYTHM_FEATURES = ("heart_rate", "mean_rr", "sdnn", "rmssd", "pnn50", "cv_rr", "irregularity", "rr_range")
# the shape of the RR sequence, each interval measure over the median RR (the rhythm's own scale)
RR_SHAPE_FEATURES = (
    "poincare_sd1", "poincare_sd2", "poincare_ratio", "rr_sample_entropy", "rr_entropy_log_rr", "median_successive_change",
    "premature_share", "compensatory_share", "longest_rr", "shortest_rr",
)
# the window's median beat and how its beats vary around it (first channel)
BEAT_SHAPE_FEATURES = (
    "p_wave_energy", "t_wave_energy", "p_wave_consistency", "beat_consistency", "qrs_consistency",
    "qrs_width", "beat_snr", "r_amplitude_variation", "log_r_amplitude", "beat_rate",
)
PREMATURE_WINDOW_RATIO = 0.85  # in a window: an interval under this share of the median of the ones before it is premature
PRECEDING_INTERVALS = 8  # how many intervals that median looks back over
PAUSE_RATIO = 1.3  # an interval this much longer than the premature one before it is a compensatory pause
QRS_SLOPE_SHARE = 0.2  # the QRS spans where the median beat's slope exceeds this share of its steepest
WINDOW_FEATURES = SPECTRAL_FEATURES + WAVEFORM_FEATURES + SPIKE_FEATURES + BAND_FEATURES + RHYTHM_FEATURES + RR_SHAPE_FEATURES + BEAT_SHAPE_FEATURES
QUALITY_SECONDS = 10.0  # the segment length Zhao & Zhang (2018) judged ECG quality on
LABEL_FILES = ("REFERENCE.csv", "REFERENCE-v3.csv", "REFERENCE-v2.csv", "REFERENCE-v1.csv", "labels.csv")


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


def record_seconds(path: str | Path, fs: float | None = None) -> float:
    """A record's duration, from its header where it has one (WFDB, EDF), else from its samples (needs ``fs``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in ("", ".hea", ".dat", ".atr", ".mat"):
        import wfdb

        try:
            header = wfdb.rdheader(str(path.with_suffix("")))
        except (FileNotFoundError, ValueError, OSError) as error:
            raise DataError(f"cannot read WFDB record {path.with_suffix('')}: {error}") from None
        return header.sig_len / header.fs
    if suffix == ".edf":
        import pyedflib

        try:
            with pyedflib.EdfReader(str(path)) as reader:
                return float(reader.getFileDuration())
        except OSError as error:
            raise DataError(f"cannot read EDF file {path}: {error}") from None
    record = read_record(path, fs)
    return record.signal.shape[1] / record.fs


def _read_edf(path: Path) -> SignalRecord:
    """An EDF/EDF+ file's signals (its annotation channel left out), every channel at the file's
    highest sampling rate: channels sampled slower (respiration, SpO2 beside EEG in a
    polysomnogram) are linearly interpolated up (MNE's ``read_raw_edf`` resamples them by FFT
    instead; linear keeps a slow trend's shape without ringing, and is all these channels need)."""
    import pyedflib

    try:
        with pyedflib.EdfReader(str(path)) as reader:
            channels = [reader.readSignal(i) for i in range(reader.signals_in_file)]
            rates = [float(reader.getSampleFrequency(i)) for i in range(reader.signals_in_file)]
            labels = reader.getSignalLabels()
    except OSError as error:
        raise DataError(f"cannot read EDF file {path}: {error}") from None
    if not channels:
        raise DataError(f"{path.name}: an EDF file without signals")
    fs = max(rates)
    length = max(len(channel) for channel, rate in zip(channels, rates) if rate == fs)
    signal = np.stack([_at_rate(channel, rate, fs, length) for channel, rate in zip(channels, rates)]).astype(np.float32)
    return SignalRecord(path.stem, signal, fs, labels)


def _at_rate(channel: np.ndarray, rate: float, fs: float, length: int) -> np.ndarray:
    """``channel`` sampled at ``rate`` as ``length`` samples at ``fs`` (linear interpolation; unchanged at ``fs``)."""
    if rate == fs:
        return channel[:length]
    return np.interp(np.arange(length) / fs, np.arange(len(channel)) / rate, channel)


class LinearResampler:
    """Linear interpolation from ``fs_in`` to ``fs_out``, chunk by chunk with its state kept.

    Written by hand because scipy's polyphase resampling looks ahead (it is not causal), so a
    streamed record would not match the record resampled whole. Applied after the 40 Hz
    low-pass, linear interpolation loses nothing that matters at 128 Hz or more.
    """

    def __init__(self, fs_in: float, fs_out: float):
        self.step = fs_in / fs_out  # input samples per output sample
        self.identity = abs(fs_in - fs_out) < 1e-9
        self.received = 0  # input samples seen so far
        self.emitted = 0  # output samples produced so far
        self.tail: np.ndarray | None = None  # input samples still needed, starting at absolute index tail_start
        self.tail_start = 0

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        if self.identity:
            return chunk.astype(np.float32)
        buffer = chunk if self.tail is None else np.concatenate([self.tail, chunk], axis=1)
        self.received += chunk.shape[1]
        last = self._last_ready()
        positions = np.arange(self.emitted, last + 1, dtype=np.int64) * self.step
        left = np.floor(positions).astype(np.int64)
        weight = (positions - left).astype(np.float32)
        right = np.minimum(left + 1, self.received - 1)
        out = buffer[:, left - self.tail_start] * (1 - weight) + buffer[:, right - self.tail_start] * weight
        self.emitted = last + 1
        keep_from = min(int(np.floor(self.emitted * self.step)), self.received)  # the next output may need samples not yet here
        self.tail, self.tail_start = buffer[:, keep_from - self.tail_start :], keep_from
        return out.astype(np.float32)

    def _last_ready(self) -> int:
        """The last output index whose input position lies within the samples received."""
        newest = self.received - 1
        last = int(np.floor(newest / self.step))
        while (last + 1) * self.step <= newest:
            last += 1
        while last >= 0 and last * self.step > newest:
            last -= 1
        return last


class Conditioner:
    """Band-pass at the recording's rate, then resample to the model's rate; causal, chunk by chunk.

    >>> conditioned = Conditioner(record.fs, 128.0, channels=1)(record.signal)
    """

    def __init__(self, fs_in: float, fs_out: float, channels: int, powerline: float | None = None):
        self.bandpass = CausalBandpass(fs_in, channels=channels, powerline=powerline)
        self.resampler = LinearResampler(fs_in, fs_out)

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        return self.resampler(self.bandpass(np.asarray(chunk, dtype=np.float32)))


class CausalBandpass:
    """A Butterworth band-pass (and an optional notch at the mains frequency, ``powerline``) applied causally, chunk by chunk, with its state kept.

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
    """Beats of one or more records: ``windows`` (n, channels, length), ``extra`` features (``RR_FEATURES``,
    then ``TEMPLATE_FEATURES`` with a beat template), R-peak ``samples``, ``labels`` (AAMI or None), ``record`` names."""

    windows: np.ndarray
    extra: np.ndarray
    samples: np.ndarray
    labels: np.ndarray
    record: np.ndarray

    @property
    def features(self) -> np.ndarray:
        """One row per beat: the flattened window, then its extra features (the modality's input)."""
        return flat_features(self.windows, self.extra)


def flat_features(windows: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """The modality's input rows: each (channels, length) window flattened lead after lead, then its extra features."""
    return np.hstack([windows.reshape(len(windows), -1), extra]).astype(np.float32)


def beat_window(fs: float) -> tuple[int, int]:
    return int(round(BEFORE_SECONDS * fs)), int(round(AFTER_SECONDS * fs))


def rr_features(peaks: np.ndarray, fs: float) -> np.ndarray:
    """Causal ``RR_FEATURES`` per beat (the first and last beat of a record have no neighbour: they get
    the neighbouring interval instead). A premature beat has a short ``pre_rr`` against the local and
    five-minute averages and, before a compensatory pause, a high ``post_pre_ratio``."""
    times = peaks / fs
    pre = np.diff(times, prepend=times[0] - (times[1] - times[0] if len(times) > 1 else 1.0))
    post = np.append(pre[1:], pre[-1])
    local = np.array([pre[max(0, i - LOCAL_BEATS + 1) : i + 1].mean() for i in range(len(pre))])
    start = np.searchsorted(times, times - AVERAGE_SECONDS)
    cumulative = np.concatenate([[0.0], np.cumsum(pre)])
    average = (cumulative[np.arange(1, len(pre) + 1)] - cumulative[start]) / (np.arange(1, len(pre) + 1) - start)
    return np.column_stack([pre, post, local, average, pre / average, post / average, local / average, post / pre, pre / local]).astype(np.float32)


def segment_beats(
    record: SignalRecord,
    peaks: np.ndarray | None = None,
    *,
    fs: float = 360.0,
    labelled: bool = True,
    powerline: float | None = None,
    template: bool = False,
) -> Beats:
    """Band-passed beat windows around R-peaks (the annotated ones, else ``peaks``), resampled to ``fs``.

    With annotations, non-beat symbols are dropped and each beat gets its AAMI class (``labelled``).
    Beats whose window runs past either end of the record are dropped. With ``template`` each
    window also carries itself less the record's typical beat so far (:func:`with_template_channels`),
    and the extra features add the beat's ``TEMPLATE_FEATURES``.
    """
    scale = fs / record.fs
    symbols = None
    if peaks is None:
        if record.annotation_samples is None:
            raise DataError(f"record {record.name} has no beat annotations; detect R-peaks first (detect_r_peaks)")
        classes = np.array([aami_class(s) for s in record.annotation_symbols], dtype=object)
        keep = np.array([c is not None for c in classes], dtype=bool)
        peaks, symbols = np.round(record.annotation_samples[keep] * scale).astype(int), classes[keep]
    filtered = Conditioner(record.fs, fs, channels=len(record.signal), powerline=powerline)(record.signal)
    before, after = beat_window(fs)
    inside = (peaks - before >= 0) & (peaks + after <= filtered.shape[1])
    rr = rr_features(peaks, fs)[inside]
    peaks = peaks[inside]
    labels = symbols[inside] if symbols is not None and labelled else np.full(len(peaks), None, dtype=object)
    windows = beat_windows(filtered, peaks, fs)
    if template:
        windows, _ = with_template_channels(windows, premature=premature_beats(rr))
    return Beats(windows, beat_extra(windows, rr, fs, template), peaks, labels, np.full(len(peaks), record.name, dtype=object))


def beat_extra(windows: np.ndarray, rr: np.ndarray, fs: float, template: bool) -> np.ndarray:
    """A beat's extra features: its RR features, then (with template channels) its ``TEMPLATE_FEATURES``."""
    return np.hstack([rr, template_features(windows, fs)]).astype(np.float32) if template else rr


def template_features(windows: np.ndarray, fs: float) -> np.ndarray:
    """``TEMPLATE_FEATURES`` of beat windows that carry template channels (:func:`with_template_channels`):
    the energy of the beat's difference from the template in its P, QRS and T stretches, relative to
    the template's QRS energy, and the beat's correlation with the template over its P wave, its QRS
    and the whole window; each averaged over leads. An ectopic beat differs from the patient's own
    beats where the rhythm features cannot see it: its P wave (S beats) and its QRS (V beats)."""
    leads = windows.shape[1] // 2
    beat, relative = windows[:, :leads].astype(np.float64), windows[:, leads:].astype(np.float64)
    template = beat - relative
    stretch = {wave: _stretch(fs, *bounds) for wave, bounds in BEAT_WAVES.items()}
    qrs_energy = _rms(template[:, :, stretch["qrs"]]) + 1e-3 * _rms(template) + 1e-12  # a floor for a flat lead
    energy = [_rms(relative[:, :, stretch[wave]]) / qrs_energy for wave in ("qrs", "p", "t")]
    correlation = [_correlation(beat[:, :, part], template[:, :, part]) for part in (stretch["qrs"], stretch["p"], slice(None))]
    return np.stack([value.mean(axis=1) for value in energy + correlation], axis=1).astype(np.float32)


def _rms(x: np.ndarray) -> np.ndarray:
    return np.sqrt((x**2).mean(axis=2))


def _stretch(fs: float, start: float, end: float) -> slice:
    before = beat_window(fs)[0]
    return slice(before + int(round(start * fs)), before + int(round(end * fs)))


def _correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation along the last axis (0 where either side is flat)."""
    a, b = a - a.mean(axis=2, keepdims=True), b - b.mean(axis=2, keepdims=True)
    return (a * b).sum(axis=2) / (np.sqrt((a**2).sum(axis=2) * (b**2).sum(axis=2)) + 1e-12)


def premature_beats(rr: np.ndarray) -> np.ndarray:
    """Beats whose pre-RR is under ``PREMATURE_RATIO`` of the local RR (``rr``: their ``RR_FEATURES``)."""
    return rr[:, RR_FEATURES.index("pre_local_ratio")] < PREMATURE_RATIO


def with_template_channels(
    windows: np.ndarray, template: np.ndarray | None = None, premature: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Each beat window followed by itself less the record's typical beat before it: the morphology
    relative to this patient's own beats (a bundle-branch-block patient's normal beats are wide
    too, so only the difference tells a V beat). The typical beat is an exponential average of the
    earlier windows (weight ``TEMPLATE_WEIGHT``), started at the first beat that is not premature, that leaves out the
    ``premature`` ones (:func:`premature_beats`): most ectopic beats come early, and in bigeminy or
    frequent V beats an average over every beat would be half ectopic. Causal, so a stream that
    passes the returned ``template`` on gets the same channels. Returns (windows with twice the
    channels, the template after the last beat)."""
    relative = np.empty_like(windows)
    state = None if template is None else template.astype(np.float64)
    skip = np.zeros(len(windows), dtype=bool) if premature is None else np.asarray(premature, dtype=bool)
    if len(skip) != len(windows):
        raise ValueError(f"{len(skip)} premature flags for {len(windows)} beats")
    for index, window in enumerate(windows):
        relative[index] = 0.0 if state is None else window - state  # zero until a non-premature beat starts the template
        if not skip[index]:
            state = window.astype(np.float64) if state is None else (1 - TEMPLATE_WEIGHT) * state + TEMPLATE_WEIGHT * window
    return np.concatenate([windows, relative], axis=1), state


def ecg_quality(record: SignalRecord, starts: np.ndarray, seconds: float = QUALITY_SECONDS) -> np.ndarray:
    """NeuroKit2's verdict on the first lead's ECG quality (Zhao & Zhang 2018: ``Excellent``,
    ``Barely acceptable`` or ``Unacceptable``) over the ``seconds`` from each of ``starts`` (seconds).

    A stretch too short or too broken for NeuroKit2 to find beats in is ``Unacceptable``.
    """
    import warnings

    import neurokit2 as nk

    lead = np.nan_to_num(np.asarray(record.signal[0], dtype=float))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cleaned = nk.ecg_clean(lead, sampling_rate=record.fs) if len(lead) > 3 * record.fs else lead
        verdicts: dict[float, str] = {}
        for start in np.unique(starts):
            stretch = cleaned[int(start * record.fs) : int((start + seconds) * record.fs)]
            verdicts[start] = _zhao_verdict(nk, stretch, record.fs)
    return np.array([verdicts[s] for s in starts], dtype=object)


def _zhao_verdict(nk, stretch: np.ndarray, fs: float) -> str:
    if len(stretch) < 3 * fs or np.ptp(stretch) == 0:
        return "Unacceptable"
    try:
        return str(nk.ecg_quality(stretch, sampling_rate=fs, method="zhao2018", approach="simple"))
    except (ValueError, IndexError, ZeroDivisionError):  # NeuroKit2 raises on stretches without detectable beats
        return "Unacceptable"


def beat_windows(conditioned: np.ndarray, peaks: np.ndarray, fs: float) -> np.ndarray:
    """(beats, channels, length) windows of a conditioned signal around ``peaks``, each less its median."""
    before, after = beat_window(fs)
    if not len(peaks):
        return np.zeros((0, len(conditioned), before + after), dtype=np.float32)
    windows = np.stack([conditioned[:, p - before : p + after] for p in peaks])
    return (windows - np.median(windows, axis=2, keepdims=True)).astype(np.float32)


def detect_r_peaks(signal: np.ndarray, fs: float) -> np.ndarray:
    """R-peaks of the first channel, with the causal detector streaming uses (:mod:`medtorch.data.rpeaks`)."""
    from medtorch.data.rpeaks import detect_r_peaks as detect

    return np.asarray(detect(np.asarray(signal[0], dtype=np.float64), fs), dtype=int)


def concatenate(parts: list[Beats] | list[Windows]) -> Beats | Windows:
    """The beats (or windows) of several records as one."""
    if not parts:
        raise DataError("no beats or windows found")
    return type(parts[0])(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(parts[0])))


def list_records(folder: Path) -> list[Path]:
    """The WFDB records of a folder (``RECORDS`` file if present, else every ``.hea``), sorted."""
    listing = folder / "RECORDS"
    if listing.is_file():
        names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        return [folder / name for name in names if (folder / f"{name}.hea").exists()]
    return sorted(p.with_suffix("") for p in folder.glob("*.hea"))


# ---------------------------------------------------------------- fixed windows (record / rhythm labels)
@dataclass
class Windows:
    """Fixed windows of one or more records: ``windows`` (n, channels, length), ``extra`` (n, len(WINDOW_FEATURES)),
    ``starts`` (first sample of each window at the model's rate), ``labels`` (the record's label or None), ``record`` names."""

    windows: np.ndarray
    extra: np.ndarray
    starts: np.ndarray
    labels: np.ndarray
    record: np.ndarray

    @property
    def features(self) -> np.ndarray:
        """One row per window: the flattened samples, then the spectral and rhythm features."""
        return flat_features(self.windows, self.extra)


def segment_windows(
    record: SignalRecord, *, fs: float, window_seconds: float, step_seconds: float | None = None, label: object = None, powerline: float | None = None
) -> Windows:
    """Windows of the conditioned record, one starting every ``step_seconds`` (default: back to back;
    a record shorter than one window is zero-padded to one; a last partial window is dropped), each with its features."""
    conditioned = Conditioner(record.fs, fs, channels=len(record.signal), powerline=powerline)(record.signal)
    return windows_of(conditioned, record.name, fs=fs, window_seconds=window_seconds, step_seconds=step_seconds, label=label)


def windows_of(
    conditioned: np.ndarray,
    name: str,
    *,
    fs: float,
    window_seconds: float,
    step_seconds: float | None = None,
    label: object = None,
    first: int = 0,
    pad: bool = True,
) -> Windows:
    """Windows of an already conditioned signal; ``first`` is the absolute sample of ``conditioned[:, 0]``."""
    length, step = window_length(fs, window_seconds), window_step(fs, window_seconds, step_seconds)
    count = window_count(conditioned.shape[1], length, step)
    if count == 0 and pad:
        conditioned, count = np.pad(conditioned, ((0, 0), (0, length - conditioned.shape[1]))), 1
    starts = np.arange(count) * step
    windows = np.stack([conditioned[:, s : s + length] for s in starts]) if count else np.zeros((0, len(conditioned), length), np.float32)
    windows = (windows - np.median(windows, axis=2, keepdims=True)).astype(np.float32)
    extra = np.stack([window_features(w, fs) for w in windows]) if count else np.zeros((0, len(WINDOW_FEATURES)), np.float32)
    return Windows(windows, extra, first + starts, np.full(count, label, dtype=object), np.full(count, name, dtype=object))


def window_length(fs: float, window_seconds: float) -> int:
    return int(round(fs * window_seconds))


def window_step(fs: float, window_seconds: float, step_seconds: float | None) -> int:
    """Samples between window starts: ``step_seconds`` at ``fs``, or the window's length."""
    return max(1, int(round(fs * step_seconds))) if step_seconds else window_length(fs, window_seconds)


def window_count(samples: int, length: int, step: int) -> int:
    """Whole windows of ``length`` that fit in ``samples`` when one starts every ``step``."""
    return 0 if samples < length else (samples - length) // step + 1


def window_features(window: np.ndarray, fs: float) -> np.ndarray:
    """``WINDOW_FEATURES``, all local to the window: spectral features (relative band powers, log power,
    90% spectral edge, line length, zero crossings), waveform features (Hjorth, skewness, kurtosis,
    crest factor, fractal dimensions), spike features and per-band power, line length and kurtosis,
    each averaged over channels (:func:`channel_mean`); then features of the first channel's
    R-peaks: rhythm (heart rate, RR mean/SDNN/RMSSD/pNN50, irregularity), the RR sequence's shape
    (:func:`rr_shape_features`) and the beats' shape (:func:`beat_shape_features`)."""
    peaks = detect_r_peaks(window, fs)
    parts = [
        spectral_features(window, fs), waveform_features(window), spike_features(window), band_features(window, fs),
        rhythm_features(peaks, fs), rr_shape_features(peaks, fs), beat_shape_features(window[0], peaks, fs),
    ]
    return np.concatenate(parts).astype(np.float32)


def spectral_features(window: np.ndarray, fs: float) -> np.ndarray:
    from scipy.signal import welch

    freqs, power = welch(window.astype(np.float64), fs=fs, nperseg=min(window.shape[1], int(2 * fs)), axis=-1)
    total = power.sum(axis=-1) + 1e-12
    relative = [power[:, (freqs >= low) & (freqs < high)].sum(axis=-1) / total for low, high in BANDS]
    edge = freqs[np.minimum(np.argmax(np.cumsum(power, axis=-1) >= 0.9 * total[:, None], axis=-1), len(freqs) - 1)] / (fs / 2)
    spread = window.std(axis=-1) + 1e-9
    line_length = np.abs(np.diff(window, axis=-1)).mean(axis=-1) / spread
    crossings = np.mean(np.diff(np.signbit(window), axis=-1), axis=-1)
    per_channel = np.stack([*relative, np.log10(total), edge, line_length, crossings], axis=1)
    return channel_mean(per_channel)


def waveform_features(window: np.ndarray) -> np.ndarray:
    """Hjorth mobility and complexity, skewness, log kurtosis, crest factor (peak over RMS) and the
    Petrosian and Higuchi fractal dimensions, averaged over channels: the shape and irregularity
    of EEG activity (sharp waves, spikes) that band powers miss."""
    from scipy.stats import kurtosis, skew

    x = window.astype(np.float64)
    d1, d2 = np.diff(x, axis=-1), np.diff(x, n=2, axis=-1)
    var0, var1, var2 = x.var(axis=-1), d1.var(axis=-1), d2.var(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):  # a flat channel gives 0/0: NaN, which channel_mean leaves out
        mobility = np.sqrt(var1 / var0)
        complexity = np.sqrt(var2 / var1) / mobility
        crest = np.abs(x - x.mean(axis=-1, keepdims=True)).max(axis=-1) / np.sqrt(var0)
        shape = [skew(x, axis=-1), np.log(kurtosis(x, axis=-1) + 3.0 + 1e-6)]
    fractal = np.array([[petrosian_dimension(channel), higuchi_dimension(channel)] for channel in x])
    return channel_mean(np.column_stack([mobility, complexity, *shape, crest, fractal]))


def channel_mean(per_channel: np.ndarray) -> np.ndarray:
    """Features ``(channels, n)`` averaged over the channels where each is defined (finite), 0 where
    none is: a flat lead (0/0, the log of 0) neither erases nor dilutes the others' features."""
    defined = np.isfinite(per_channel)
    total = np.where(defined, per_channel, 0.0).sum(axis=0)
    return np.divide(total, defined.sum(axis=0), out=np.zeros(per_channel.shape[1]), where=defined.any(axis=0))


def petrosian_dimension(x: np.ndarray) -> float:
    """Petrosian (1995) fractal dimension, from the sign changes of the first difference.
    Written here (a few lines) rather than imported from NeuroKit2, whose version adds a pandas round trip per call."""
    n, changes = len(x), np.count_nonzero(np.diff(np.signbit(np.diff(x))))
    if n > 2 and np.ptp(x) == 0:
        return float("nan")  # a flat signal has no dimension to speak of
    return float(np.log10(n) / (np.log10(n) + np.log10(n / (n + 0.4 * changes)))) if n > 2 else 0.0


def higuchi_dimension(x: np.ndarray, k_max: int = 8) -> float:
    """Higuchi (1988) fractal dimension: the slope of log curve length against log scale, scales 1 to ``k_max``."""
    n = len(x)
    scales = np.arange(1, min(k_max, n // 4) + 1)
    if len(scales) < 2:
        return 0.0
    if np.ptp(x) == 0:
        return float("nan")
    lengths = []
    for k in scales:
        per_offset = [np.abs(np.diff(x[m::k])).sum() * (n - 1) / ((len(x[m::k]) - 1) * k * k) for m in range(k)]
        lengths.append(np.mean(per_offset) + 1e-12)
    return float(-np.polyfit(np.log(scales), np.log(lengths), 1)[0])


def spike_features(window: np.ndarray) -> np.ndarray:
    """Spike-like activity against the window's own robust spread, averaged over channels: the share
    of samples over ``SPIKE_MADS`` median absolute deviations out, the share of steps over
    ``SPIKE_MADS`` median steps steep, and the 99th percentiles of both ratios (interictal spikes
    and sharp waves mark the epileptogenic zone)."""
    x = window.astype(np.float64)
    if x.shape[-1] < 3:
        return np.zeros(len(SPIKE_FEATURES))
    deviation = np.abs(x - np.median(x, axis=-1, keepdims=True))
    deviation /= robust_spread(deviation)
    steps = np.abs(np.diff(x, axis=-1))
    steps /= robust_spread(steps)
    per_channel = np.stack(
        [np.mean(deviation > SPIKE_MADS, axis=-1), np.mean(steps > SPIKE_MADS, axis=-1), np.percentile(deviation, 99, axis=-1), np.percentile(steps, 99, axis=-1)],
        axis=1,
    )
    per_channel[np.ptp(x, axis=-1) == 0] = np.nan  # a flat channel has no spikes to count, nor a spread to count them by
    return channel_mean(per_channel)


def robust_spread(magnitudes: np.ndarray) -> np.ndarray:
    """The median of ``magnitudes`` per channel, floored at a twentieth of their RMS: a window more than
    half flat (a short record padded to a window, a lead off) would otherwise have a spread of 0."""
    floor = 0.05 * np.sqrt(np.mean(magnitudes**2, axis=-1, keepdims=True))
    return np.maximum(np.median(magnitudes, axis=-1, keepdims=True), floor) + np.finfo(np.float64).tiny


def band_features(window: np.ndarray, fs: float) -> np.ndarray:
    """Per band of ``BANDS`` (order-4 Butterworth, causal): log power, log line length and log
    kurtosis, averaged over channels; zeros for a band with less than 1 Hz below 0.45 ``fs``."""
    from scipy.signal import sosfilt
    from scipy.stats import kurtosis

    x = window.astype(np.float64) - window.mean(axis=-1, keepdims=True)
    power, line, peaked = (np.zeros(len(BANDS)) for _ in range(3))
    for i, (low, high) in enumerate(BANDS):
        top = min(high, 0.45 * fs)
        if top - low < 1.0:
            continue
        band = sosfilt(_band_pass(low, top, fs), x, axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):  # a flat channel's log of 0 is left out of the mean
            per_channel = [np.log10(np.mean(band**2, axis=-1)), np.log10(np.abs(np.diff(band, axis=-1)).mean(axis=-1)), np.log(kurtosis(band, axis=-1) + 3.0 + 1e-6)]
        power[i], line[i], peaked[i] = channel_mean(np.stack(per_channel, axis=1))
    return np.concatenate([power, line, peaked])


@functools.lru_cache(maxsize=64)
def _band_pass(low: float, high: float, fs: float) -> np.ndarray:
    """An order-4 Butterworth band-pass as second-order sections, designed once per band and rate."""
    from scipy.signal import butter

    return butter(4, [low, high], btype="band", fs=fs, output="sos")


def rhythm_features(peaks: np.ndarray, fs: float) -> np.ndarray:
    """Heart-rate variability of the R-peaks in a window; zeros when fewer than three beats."""
    if len(peaks) < 3:
        return np.zeros(len(RHYTHM_FEATURES))
    rr = np.diff(peaks) / fs
    successive = np.abs(np.diff(rr))
    mean, median = rr.mean(), np.median(rr)
    return np.array(
        [
            60.0 / mean,
            mean,
            rr.std(),
            np.sqrt(np.mean(successive**2)),
            np.mean(successive > 0.05),
            rr.std() / mean,
            np.mean(np.abs(rr - median) > 0.15 * median),  # share of beats off the median rhythm (AF is irregularly irregular)
            (rr.max() - rr.min()) / mean,
        ]
    )


def rr_shape_features(peaks: np.ndarray, fs: float) -> np.ndarray:
    """``RR_SHAPE_FEATURES``: Poincaré SD1, SD2 and SD1 / (SD1 + SD2), the sample entropy of the RR
    intervals and that plus the log median RR (a rate-adjusted entropy; Lake & Moorman's COSEn,
    SampEn + ln(2r) - ln(mean RR), scored lower on CinC 2017 validation), the median successive change, the share of intervals that are
    premature and the share that are premature and followed by a compensatory pause (both over all
    intervals), and the longest and shortest interval; zeros with fewer than four beats. AF is
    irregular without pattern (high entropy, SD1 near SD2); ectopic beats ("other rhythm") are
    premature with a pause after."""
    if len(peaks) < 4:
        return np.zeros(len(RR_SHAPE_FEATURES))
    rr = np.diff(peaks) / fs
    median, successive = np.median(rr), np.diff(rr)
    sd1, sd2 = np.std(successive / np.sqrt(2)), np.std((rr[1:] + rr[:-1]) / np.sqrt(2))
    preceding_median = np.array([np.median(rr[max(0, i - PRECEDING_INTERVALS) : i]) for i in range(1, len(rr))])
    premature = rr[1:] / preceding_median < PREMATURE_WINDOW_RATIO
    compensated = premature[:-1] & (rr[2:] / rr[1:-1] > PAUSE_RATIO)
    entropy = sample_entropy(rr)
    return np.array(
        [
            sd1 / median, sd2 / median, sd1 / (sd1 + sd2 + 1e-9), entropy, entropy + np.log(median),
            np.median(np.abs(successive)) / median, premature.mean(), compensated.mean() if len(compensated) else 0.0,
            rr.max() / median, rr.min() / median,
        ]
    )


def sample_entropy(x: np.ndarray, m: int = 2, r: float = 0.2) -> float:
    """Sample entropy (Richman & Moorman 2000) with tolerance ``r`` standard deviations, +1 in both
    counts so a short sequence stays finite. Written here (a few lines over the tens of RR intervals
    of a window) rather than NeuroKit2's, which adds a pandas round trip per call."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < m + 3 or x.std() == 0:
        return 0.0
    tolerance = r * x.std()

    def matching_pairs(length: int) -> float:
        embedded = np.stack([x[i : len(x) - length + i + 1] for i in range(length)], axis=1)[: len(x) - m]
        distance = np.abs(embedded[:, None] - embedded[None]).max(axis=2)
        return (np.count_nonzero(distance <= tolerance) - len(embedded)) / 2

    return float(-np.log((matching_pairs(m + 1) + 1) / (matching_pairs(m) + 1)))


def beat_shape_features(signal: np.ndarray, peaks: np.ndarray, fs: float) -> np.ndarray:
    """``BEAT_SHAPE_FEATURES`` of one channel: the median beat's P- and T-wave RMS over its R amplitude,
    the beats' median correlation with it over the P wave, the whole beat and the QRS, its QRS width
    (where its slope exceeds ``QRS_SLOPE_SHARE`` of the QRS's steepest, within 0.1 s of the R peak), the median beat over the beats' spread
    around it (log), the R amplitude's variation, the log R amplitude and the beats per second; zeros
    with fewer than three whole beats. AF has no consistent P wave; noise has no consistent beat."""
    before, after = beat_window(fs)
    inside = peaks[(peaks >= before) & (peaks + after < len(signal))]
    if len(inside) < 3:
        return np.zeros(len(BEAT_SHAPE_FEATURES))
    beats = beat_windows(signal[None], inside, fs)[:, 0].astype(np.float64)
    median = np.median(beats, axis=0)
    r_amplitude = abs(median[before]) + 1e-9
    p, qrs, t = (_stretch(fs, *BEAT_WAVES[wave]) for wave in ("p", "qrs", "t"))
    consistency = [float(np.median(_correlation(beats[:, None, part], median[None, None, part]))) for part in (p, slice(None), qrs)]
    slope = np.abs(np.diff(median))
    near = slice(before - int(0.1 * fs), before + int(0.1 * fs))
    steep = np.flatnonzero(slope[near] > QRS_SLOPE_SHARE * slope[qrs].max())
    width = (steep.max() - steep.min()) / fs if len(steep) else 0.0
    return np.array(
        [
            np.std(median[p]) / r_amplitude, np.std(median[t]) / r_amplitude, *consistency, width,
            np.log(np.std(median) / (np.std(beats - median) + 1e-9) + 1e-9), np.std(beats[:, before]) / r_amplitude,
            np.log(r_amplitude), len(inside) / (len(signal) / fs),
        ]
    )


def list_signal_files(folder: Path) -> list[Path]:
    """Signal files of a folder: WFDB records (as paths without suffix), EDF files and raw arrays (.npy/.txt/.csv),
    leaving out label files; sorted."""
    ignored = {name.lower() for name in LABEL_FILES} | {"records"}
    records = list_records(folder) if any(folder.glob("*.hea")) else []
    others = [
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in (".edf", ".npy", ".txt", ".csv") and p.name.lower() not in ignored and not p.name.startswith((".", "REFERENCE"))
    ]
    return sorted(records + others)


def labelled_records(folder: Path, labels_file: str | Path | None = None) -> list[tuple[Path, str, str]] | None:
    """``(file, label, name)`` for every labelled record of a folder, or ``None`` when it has no record labels.

    Labels come from ``labels_file`` (or the folder's ``REFERENCE.csv``, the PhysioNet challenge
    convention: ``record,label`` lines), else from class sub-folders (``folder/<label>/<record>``).
    """
    table = Path(labels_file) if labels_file else next((folder / n for n in LABEL_FILES if (folder / n).is_file()), None)
    if labels_file and not table.is_file():
        table = folder / labels_file
        if not table.is_file():
            raise DataError(f"labels file not found: {labels_file}")
    if table is not None:
        files = {p.stem: p for p in list_signal_files(folder)}  # WFDB records are listed without a suffix
        labelled = []
        for number, line in enumerate(table.read_text().splitlines(), start=1):
            fields = [f.strip() for f in line.split(",")]
            if len(fields) < 2 or not fields[0]:
                continue
            if fields[0] not in files:
                if number == 1:
                    continue  # a header row
                raise DataError(f"{table.name} line {number}: no record {fields[0]!r} in {folder}")
            labelled.append((files[fields[0]], fields[1], fields[0]))
        return labelled or None
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and list_signal_files(p))
    if not classes:
        return None
    return [(f, c.name, f"{c.name}/{f.stem}") for c in classes for f in list_signal_files(c)]


FLAT_SPREAD, EXTREME_SPREAD = 0.05, 10.0  # of the median sample's spread


def quality_flags(features: np.ndarray, n_extra: int, leads: int, channels: int | None = None) -> dict[str, np.ndarray]:
    """Per sample (rows of modality features): any lead flat (spread under 5% of the median lead's,
    a lead off or a dead channel), or any lead of extreme amplitude (over 10x: movement, saturation).

    Judged against the data itself, so it holds for ECG in mV and EEG in uV alike. Of ``channels``
    per sample (derived ones, e.g. beat-template differences, after the leads) only the leads count.
    """
    samples = features[:, : features.shape[1] - n_extra].reshape(len(features), channels or leads, -1)[:, :leads]
    spread = samples.std(axis=2)
    typical = np.median(spread, axis=0, keepdims=True) + 1e-12
    return {"flat signal (lead off)": np.any(spread < FLAT_SPREAD * typical, axis=1), "extreme amplitude (artefact)": np.any(spread > EXTREME_SPREAD * typical, axis=1)}
