"""Streaming R-peak detection: neurokit's clean peaks, any chunking = offline, flat signals, MIT-BIH, speed."""

from __future__ import annotations

import time
import warnings
from functools import lru_cache

import numpy as np
import pytest

from medtorch.data.rpeaks import StreamingRPeakDetector, detect_r_peaks

BEAT_SYMBOLS = set("NLRejAaJSVEFfQ/")


@lru_cache(maxsize=None)
def simulated_ecg(fs: int, noise: float = 0.01, duration: int = 60) -> np.ndarray:
    import neurokit2 as nk

    return np.asarray(nk.ecg_simulate(duration=duration, sampling_rate=fs, heart_rate=70, noise=noise, random_state=0))


def neurokit_peaks(clean: np.ndarray, fs: int) -> np.ndarray:
    import neurokit2 as nk

    _, info = nk.ecg_peaks(clean, sampling_rate=fs)
    return np.asarray(info["ECG_R_Peaks"])


def streamed(signal: np.ndarray, fs: float, sizes) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Feed ``signal`` in chunks of ``sizes`` (an iterator of ints); returns the peaks and (samples seen, new peaks) per call."""
    detector, seen, calls = StreamingRPeakDetector(fs), 0, []
    while seen < len(signal):
        chunk = signal[seen : seen + next(sizes)]
        seen += len(chunk)
        calls.append((seen, detector.update(chunk)))
    calls.append((seen, detector.flush()))
    return np.concatenate([new for _, new in calls]), calls


def every(n: int):
    while True:
        yield n


def random_sizes(seed: int = 0, high: int = 900):
    rng = np.random.default_rng(seed)
    while True:
        yield int(rng.integers(1, high))


def hard_ecg(fs: int = 250) -> np.ndarray:
    """A minute of simulated ECG with baseline wander, a 10x amplitude drop (20-30 s), a 3 s pause and a gap of NaNs."""
    ecg = simulated_ecg(fs).copy()
    t = np.arange(len(ecg)) / fs
    ecg += 0.3 * np.sin(2 * np.pi * 0.2 * t)
    ecg[(t >= 20) & (t < 30)] *= 0.1
    pause = (t >= 40) & (t < 43)
    ecg[pause] = ecg[pause][0]
    ecg[(t >= 50) & (t < 50.5)] = np.nan
    return ecg


def sensitivity_and_ppv(detected: np.ndarray, annotated: np.ndarray, tolerance: int) -> tuple[float, float, np.ndarray]:
    """Se and +P with each annotation matched to at most one detection (the nearest unused within ``tolerance``)."""
    used, offsets = np.zeros(len(detected), bool), []
    for beat in annotated:
        near = np.flatnonzero((np.abs(detected - beat) <= tolerance) & ~used)
        if near.size:
            best = near[np.argmin(np.abs(detected[near] - beat))]
            used[best] = True
            offsets.append(detected[best] - beat)
    found = len(offsets)
    return found / len(annotated), found / max(len(detected), 1), np.asarray(offsets)


# ---------------------------------------------------------------- simulated ECG
@pytest.mark.parametrize("fs", [125, 250, 500, 1000])
def test_simulated_beats_are_all_found_within_30_ms_of_neurokits_peaks(fs):
    expected = neurokit_peaks(simulated_ecg(fs, noise=0.0), fs)
    peaks = detect_r_peaks(simulated_ecg(fs), fs)
    assert abs(len(peaks) - len(expected)) <= 1  # neurokit skips the beat the simulation starts on
    distance = np.abs(peaks[None, :] - expected[:, None]).min(axis=1)
    assert distance.max() <= 0.030 * fs


def test_peaks_come_back_as_sorted_int64_sample_indices():
    peaks = detect_r_peaks(simulated_ecg(250), 250)
    assert peaks.dtype == np.int64 and np.all(np.diff(peaks) > 0)
    assert 0 <= peaks[0] and peaks[-1] < len(simulated_ecg(250))


# ---------------------------------------------------------------- chunk invariance
@pytest.mark.parametrize(
    "sizes",
    [lambda: every(250), lambda: every(125), lambda: every(7), random_sizes, lambda: random_sizes(1, high=40)],
    ids=["1s", "0.5s", "7-samples", "random", "small-random"],
)
def test_any_chunking_gives_exactly_the_offline_peaks(sizes):
    ecg = hard_ecg()
    peaks, _ = streamed(ecg, 250, sizes())
    np.testing.assert_array_equal(peaks, detect_r_peaks(ecg, 250))


def test_one_sample_at_a_time_gives_exactly_the_offline_peaks():
    excerpt = hard_ecg()[: 12 * 250]  # covers the learning phase and its re-scan
    peaks, _ = streamed(excerpt, 250, every(1))
    offline = detect_r_peaks(excerpt, 250)
    assert len(offline) >= 12
    np.testing.assert_array_equal(peaks, offline)


def test_every_peak_is_decided_within_the_delay_bound():
    fs = 250
    _, calls = streamed(hard_ecg(fs), fs, every(5))
    detector = StreamingRPeakDetector(fs)
    delays = [(seen - 1 - peak) / fs for seen, new in calls[:-1] for peak in new]  # flush() is not bound by it
    assert len(delays) > 50
    assert max(delays) <= detector.delay_seconds + 5 / fs
    assert np.median(delays) < 0.6  # steady state: the 200 ms lookahead plus the integration window


def test_beats_are_found_again_after_a_tenfold_amplitude_drop_and_a_pause():
    fs = 250
    expected = neurokit_peaks(simulated_ecg(fs, noise=0.0), fs)
    peaks = detect_r_peaks(hard_ecg(fs), fs)
    for start, stop in [(24, 30), (45, 50)]:  # a few seconds after the drop, after the pause
        wanted = expected[(expected >= start * fs) & (expected < stop * fs)]
        distance = np.abs(peaks[None, :] - wanted[:, None]).min(axis=1)
        assert np.all(distance <= 0.030 * fs)
    in_pause = peaks[(peaks > 40.3 * fs) & (peaks < 43 * fs)]
    assert in_pause.size == 0


# ---------------------------------------------------------------- degenerate input
@pytest.mark.parametrize("level", [0.0, -0.7])
def test_a_flat_signal_gives_no_peaks_and_no_warnings(level):
    flat = np.full(30 * 360, level)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        assert detect_r_peaks(flat, 360).size == 0
        peaks, _ = streamed(flat, 360, every(360))
    assert peaks.size == 0


def test_an_empty_or_very_short_record_gives_an_empty_result():
    assert detect_r_peaks(np.zeros(0), 360).size == 0
    detector = StreamingRPeakDetector(360)
    assert detector.update(np.zeros(0)).size == 0
    assert detector.update(np.zeros(5)).size == 0 and detector.flush().size == 0


def test_several_channels_at_once_are_refused_and_so_is_data_after_flush():
    detector = StreamingRPeakDetector(360)
    with pytest.raises(ValueError, match="one ECG channel"):
        detector.update(np.zeros((100, 2)))
    detector.update(np.zeros((100, 1)))
    detector.flush()
    with pytest.raises(RuntimeError, match="flushed"):
        detector.update(np.zeros(10))


def test_a_non_positive_sampling_rate_is_refused():
    with pytest.raises(ValueError, match="sampling rate"):
        StreamingRPeakDetector(0)


# ---------------------------------------------------------------- speed
def test_ten_minutes_at_360_hz_in_one_second_chunks_take_under_two_seconds():
    fs = 360
    ecg = np.tile(simulated_ecg(fs), 10)
    detector = StreamingRPeakDetector(fs)
    start = time.perf_counter()
    peaks = [detector.update(ecg[i : i + fs]) for i in range(0, len(ecg), fs)] + [detector.flush()]
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0
    assert abs(sum(len(p) for p in peaks) - 700) < 15  # 70 beats a minute


# ---------------------------------------------------------------- real MIT-BIH records
@pytest.mark.shared_data
@pytest.mark.parametrize("record, floor", [("101", 0.99), ("119", 0.99), ("208", 0.97)])
def test_mitbih_beats_are_detected_with_high_sensitivity_and_positive_predictivity(shared_data, record, floor):
    import wfdb

    path = str(shared_data / "mitbih_arrhythmia" / record)
    fs = 360
    samples = 5 * 60 * fs
    ecg = wfdb.rdrecord(path, channels=[0], sampto=samples).p_signal[:, 0]  # MLII
    annotation = wfdb.rdann(path, "atr", sampto=samples)
    beats = np.array([s for s, symbol in zip(annotation.sample, annotation.symbol) if symbol in BEAT_SYMBOLS])
    peaks, _ = streamed(ecg, fs, random_sizes(2, high=2 * fs))
    np.testing.assert_array_equal(peaks, detect_r_peaks(ecg, fs))
    sensitivity, ppv, offsets = sensitivity_and_ppv(peaks, beats, tolerance=round(0.150 * fs))
    assert sensitivity >= floor and ppv >= floor
    assert np.mean(np.abs(offsets)) < 0.020 * fs  # on the annotated R-peak, not just near it
