"""Biosignals: AAMI mapping, RR features, causal filtering, beat segmentation, WFDB folders, models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medtorch.config import DataConfig
from medtorch.data import signal_io
from medtorch.data.signal_io import AAMI_CLASSES, CausalBandpass, SignalRecord, aami_class, rr_features, segment_beats
from medtorch.data.signals import Signals
from medtorch.errors import DataError
from medtorch.registry import create_model, list_models

MITBIH_EXCERPT = ("100", "106", "119", "208", "233")  # records in the shared DS1 folder; 106/119/208 hold many V beats
SHARED_DS1 = ("101", "106", "119", "208", "209")


@pytest.mark.parametrize(
    "symbols, expected",
    [("NLRej", "N"), ("AaJS", "S"), ("VE", "V"), ("F", "F"), ("/fQ", "Q")],
)
def test_mitbih_beat_symbols_map_to_their_aami_class(symbols, expected):
    assert [aami_class(s) for s in symbols] == [expected] * len(symbols)


@pytest.mark.parametrize("symbol", ["+", "~", "|", "x", "!", "[", "]", '"'])
def test_non_beat_annotations_have_no_aami_class(symbol):
    assert aami_class(symbol) is None


def test_rr_features_of_a_regular_rhythm_are_one_second_and_ratios_one():
    peaks = np.arange(1, 21) * 360
    rr = rr_features(peaks, 360.0)
    np.testing.assert_allclose(rr[:, :4], 1.0, atol=1e-6)
    np.testing.assert_allclose(rr[:, 4:], 1.0, atol=1e-6)


def test_a_premature_beat_has_a_short_pre_rr_and_a_long_post_rr():
    times = np.array([0, 1, 2, 3, 4, 4.6, 6, 7, 8, 9], dtype=float)  # beat 5 comes 0.4 s early
    rr = rr_features(np.round(times * 250).astype(int), 250.0)
    pre_ratio, post_ratio = rr[5, 4], rr[5, 5]
    assert rr[5, 0] == pytest.approx(0.6) and rr[5, 1] == pytest.approx(1.4)
    assert pre_ratio < 0.7 and post_ratio > 1.3


def test_rr_features_only_look_back_so_a_later_beat_changes_no_earlier_feature():
    peaks = np.cumsum(np.random.default_rng(0).integers(250, 400, 40))
    whole, cut = rr_features(peaks, 360.0), rr_features(peaks[:30], 360.0)
    np.testing.assert_allclose(whole[:29], cut[:29])  # the 30th beat of the cut record lacks its next beat


def test_causal_bandpass_in_chunks_equals_the_whole_record():
    signal = np.random.default_rng(1).normal(size=(2, 5000)).astype(np.float32)
    whole = CausalBandpass(360.0, channels=2)(signal)
    chunked_filter = CausalBandpass(360.0, channels=2)
    chunks = np.concatenate([chunked_filter(part) for part in np.array_split(signal, [700, 701, 2500, 4999], axis=1)], axis=1)
    np.testing.assert_allclose(chunks, whole, atol=1e-5)


def test_bandpass_removes_baseline_wander_and_keeps_the_qrs_band():
    fs, t = 360.0, np.arange(0, 20, 1 / 360.0)
    wander, qrs_band = np.sin(2 * np.pi * 0.1 * t), np.sin(2 * np.pi * 10 * t)
    settled = slice(3600, None)  # after the filter's first 10 s
    assert np.std(CausalBandpass(fs)(wander[None].astype(np.float32))[0, settled]) < 0.1 * np.std(wander)
    assert np.std(CausalBandpass(fs)(qrs_band[None].astype(np.float32))[0, settled]) == pytest.approx(np.std(qrs_band), rel=0.05)


def _synthetic_record(name: str = "r1", symbols: str = "NNVN+NANN") -> SignalRecord:
    fs = 360.0
    peaks = np.arange(1, len(symbols) + 1) * 360
    signal = np.zeros((2, peaks[-1] + 360), dtype=np.float32)
    signal[:, peaks] = 5.0
    return SignalRecord(name, signal, fs, ["MLII", "V1"], peaks, np.array(list(symbols), dtype=object))


def test_segment_beats_keeps_beat_annotations_with_their_aami_labels():
    beats = segment_beats(_synthetic_record())
    before, after = signal_io.beat_window(360.0)
    assert beats.windows.shape == (8, 2, before + after)  # '+' is a rhythm annotation, not a beat
    assert beats.labels.tolist() == ["N", "N", "V", "N", "N", "S", "N", "N"]
    assert beats.features.shape == (8, 2 * (before + after) + len(signal_io.RR_FEATURES))
    assert set(beats.record) == {"r1"}


def test_segment_beats_drops_beats_whose_window_leaves_the_record():
    record = _synthetic_record(symbols="NNN")
    record.annotation_samples = np.array([10, 360, record.signal.shape[1] - 5])
    assert segment_beats(record).samples.tolist() == [360]


def test_segment_beats_resamples_to_the_requested_rate():
    record = _synthetic_record()
    beats = segment_beats(record, fs=250.0)
    before, after = signal_io.beat_window(250.0)
    assert beats.windows.shape[2] == before + after
    np.testing.assert_array_equal(beats.samples, np.round(record.annotation_samples[[0, 1, 2, 3, 5, 6, 7, 8]] * 250 / 360))


# ---------------------------------------------------------------- WFDB folders
def _write_wfdb(folder, name: str, seconds: int = 60, paced: bool = False, annotate: bool = True, seed: int = 0):
    import neurokit2 as nk
    import wfdb

    fs = 360
    ecg = nk.ecg_simulate(duration=int(seconds), sampling_rate=fs, heart_rate=70, random_state=seed)
    _, info = nk.ecg_peaks(ecg, sampling_rate=fs)
    peaks = np.asarray(info["ECG_R_Peaks"])
    signal = np.stack([ecg, 0.5 * ecg], axis=1)
    wfdb.wrsamp(name, fs=fs, units=["mV", "mV"], sig_name=["MLII", "V1"], p_signal=signal, fmt=["212", "212"], write_dir=str(folder))
    if annotate:
        symbols = ["/" if paced else ("V" if i % 7 == 3 else "N") for i in range(len(peaks))]
        wfdb.wrann(name, "atr", peaks, symbols, write_dir=str(folder))
    return peaks


@pytest.fixture
def wfdb_folder(tmp_path):
    for index, name in enumerate(("r1", "r2", "r3")):
        _write_wfdb(tmp_path, name, seed=index)
    _write_wfdb(tmp_path, "paced", paced=True, seed=9)
    return tmp_path


def test_a_wfdb_folder_reads_every_beat_with_the_record_as_its_group(wfdb_folder):
    records = Signals().read(wfdb_folder, DataConfig())
    assert set(records.groups) == {"r1", "r2", "r3"}  # the paced record is left out, as the AAMI protocol does
    assert set(records.target) == {"N", "V"}
    assert len(records.inputs) == len(records.target) > 150


def test_paced_records_are_kept_when_asked(wfdb_folder):
    records = Signals().read(wfdb_folder, DataConfig(exclude_paced=False))
    assert "paced" in set(records.groups) and "Q" in set(records.target)


def test_training_on_records_without_annotations_is_refused(tmp_path):
    _write_wfdb(tmp_path, "bare", annotate=False)
    with pytest.raises(DataError, match="no beat annotations"):
        Signals().read(tmp_path, DataConfig())


def test_prediction_on_an_unannotated_record_detects_its_beats(tmp_path):
    peaks = _write_wfdb(tmp_path, "bare", annotate=False)
    records = Signals().read(tmp_path / "bare.hea", DataConfig(), with_target=False)
    assert records.target is None
    assert abs(len(records.inputs) - len(peaks)) <= 2


def test_signals_modality_is_detected_for_a_wfdb_folder(wfdb_folder):
    from medtorch.data.base import detect_modality

    assert detect_modality(wfdb_folder).name == "signal"


def test_preprocessor_round_trips_through_json_and_refuses_a_wrong_shape(wfdb_folder):
    records = Signals().read(wfdb_folder, DataConfig())
    fitted = Signals().preprocessor(DataConfig()).fit(records)
    loaded = Signals().preprocessor_from_config(json.loads(json.dumps(fitted.get_config())))
    torch.testing.assert_close(loaded.transform(records.inputs[:5]), fitted.transform(records.inputs[:5]))
    assert fitted.model_kwargs() == {"in_channels": 2, "length": 252, "n_extra": 7}
    with pytest.raises(DataError, match="lead"):
        fitted.transform(records.inputs[:5, 10:])


@pytest.mark.parametrize("name", list_models(modality="signal"))
def test_every_signal_model_maps_flat_beats_to_class_logits_and_learns(name):
    torch.manual_seed(0)
    model = create_model(name, in_channels=2, length=252, n_extra=7, out_features=5)
    x = torch.randn(16, 2 * 252 + 7)
    assert model(x).shape == (16, 5)
    y = torch.randint(0, 5, (16,))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# ---------------------------------------------------------------- real MIT-BIH records
@pytest.mark.shared_data
def test_detected_r_peaks_match_the_annotated_beats_of_a_mitbih_record(shared_data):
    record = signal_io.read_record(shared_data / "mitbih_arrhythmia" / "101")
    minute = int(60 * record.fs)
    detected = signal_io.detect_r_peaks(record.signal[:, :minute], record.fs)
    annotated = np.array([s for s, sym in zip(record.annotation_samples, record.annotation_symbols) if aami_class(sym) and s < minute])
    tolerance = int(0.05 * record.fs)
    found = np.array([np.min(np.abs(detected - a)) <= tolerance for a in annotated])
    assert found.mean() > 0.98
    assert len(detected) <= 1.05 * len(annotated)


@pytest.mark.shared_data
def test_mitbih_beats_get_the_aami_classes_of_their_symbols(shared_data):
    record = signal_io.read_record(shared_data / "mitbih_arrhythmia" / "208")
    beats = segment_beats(record)
    counts = {c: int(np.sum(beats.labels == c)) for c in AAMI_CLASSES}
    assert counts["V"] > 900 and counts["F"] > 300  # record 208: 992 V and 373 F beats
    assert sum(counts.values()) == len(beats.labels)
