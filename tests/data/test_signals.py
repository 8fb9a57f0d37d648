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
    features = dict(zip(signal_io.RR_FEATURES, rr[5]))
    assert features["post_pre_ratio"] == pytest.approx(1.4 / 0.6, rel=1e-3)  # the compensatory pause
    assert features["pre_local_ratio"] < 0.7


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
    config = DataConfig(beat_template=False)
    records = Signals().read(wfdb_folder, config)
    fitted = Signals().preprocessor(config).fit(records)
    loaded = Signals().preprocessor_from_config(json.loads(json.dumps(fitted.get_config())))
    torch.testing.assert_close(loaded.transform(records.inputs[:5]), fitted.transform(records.inputs[:5]))
    assert fitted.model_kwargs() == {"in_channels": 2, "length": 252, "n_extra": len(signal_io.RR_FEATURES)}
    with pytest.raises(DataError, match="lead"):
        fitted.transform(records.inputs[:5, 10:])


@pytest.mark.parametrize("name", list_models(modality="signal", kind="torch"))
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


# ---------------------------------------------------------------- fixed windows of labelled records
def _write_labelled_folder(folder, labels: dict[str, str], seconds: float = 25.0, fs: int = 300):
    """WFDB records (one lead) named after ``labels`` and a REFERENCE.csv, as in the PhysioNet/CinC 2017 challenge."""
    import neurokit2 as nk
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(labels):
        ecg = nk.ecg_simulate(duration=int(seconds), sampling_rate=fs, heart_rate=60 + 5 * index, random_state=index)
        wfdb.wrsamp(name, fs=fs, units=["mV"], sig_name=["ECG"], p_signal=ecg[:, None], fmt=["16"], write_dir=str(folder))
    (folder / "REFERENCE.csv").write_text("".join(f"{name},{label}\n" for name, label in labels.items()))
    return folder


def test_a_folder_with_a_reference_csv_reads_fixed_windows_labelled_by_their_record(tmp_path):
    folder = _write_labelled_folder(tmp_path, {"A001": "N", "A002": "AF", "A003": "N"})
    records = Signals().read(folder, DataConfig(window_seconds=10))
    assert len(records) == 6  # 25 s records give two 10-s windows each (the last 5 s are dropped)
    assert records.target.tolist() == ["N", "N", "AF", "AF", "N", "N"]
    assert records.groups.tolist() == ["A001", "A001", "A002", "A002", "A003", "A003"]
    assert records.names.tolist()[:2] == ["A001@0.0s", "A001@10.0s"]
    length = signal_io.window_length(128.0, 10.0)
    assert records.inputs.shape == (6, length + len(signal_io.WINDOW_FEATURES))


def test_scikit_learn_models_on_windows_read_the_hand_made_features_and_round_trip(tmp_path):
    import medtorch
    from medtorch.bundle import load_bundle

    labels = {f"A{i:03d}": ("AF" if i % 2 else "N") for i in range(12)}
    folder = _write_labelled_folder(tmp_path / "data", labels)
    overrides = {"model": {"name": "hist_gradient_boosting"}, "train": {"class_weights": "balanced"}, "evaluate": {"bootstrap": 0, "baselines": False}}
    run = medtorch.train(folder, out=tmp_path / "run", overrides=overrides, progress=False)
    records = Signals().read(folder, DataConfig())
    assert run.bundle.model.n_features_in_ == len(signal_io.WINDOW_FEATURES)  # fitted on the features, not the samples
    assert (tmp_path / "run" / "bundle" / "model.skops").exists()
    reloaded = load_bundle(tmp_path / "run" / "bundle")
    np.testing.assert_allclose(reloaded.predict_scores(records.inputs), run.bundle.predict_scores(records.inputs))


def test_a_scikit_learn_signal_bundle_of_an_older_format_is_refused(tmp_path):
    import medtorch
    from medtorch.bundle import load_bundle
    from medtorch.errors import BundleError

    folder = _write_labelled_folder(tmp_path / "data", {f"A{i:03d}": ("AF" if i % 2 else "N") for i in range(8)})
    overrides = {"model": {"name": "logistic_regression"}, "evaluate": {"bootstrap": 0, "baselines": False}}
    medtorch.train(folder, out=tmp_path / "run", overrides=overrides, progress=False)
    config_file = tmp_path / "run" / "bundle" / "medtorch.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "format_version": 3}))
    with pytest.raises(BundleError, match="features alone"):  # format 3 fitted it on samples and features
        load_bundle(tmp_path / "run" / "bundle")


@pytest.mark.parametrize("fs", [100.0, 128.0, 250.0, 500.0])
def test_window_features_stay_finite_at_any_rate_with_a_flat_lead_and_in_a_short_window(fs):
    lead, _ = _synthetic_lead(fs, 12, p_wave=True)
    two_leads = np.stack([lead, np.zeros_like(lead)])  # a lead off
    for window in (two_leads, two_leads[:, : int(1.5 * fs)]):
        features = signal_io.window_features(window, fs)
        assert features.shape == (len(signal_io.WINDOW_FEATURES),) and np.isfinite(features).all()
    by_name = dict(zip(signal_io.WINDOW_FEATURES, signal_io.window_features(two_leads, fs)))
    assert by_name["heart_rate"] == pytest.approx(75, abs=3) and by_name["beat_consistency"] > 0.9


def test_window_seconds_and_sampling_rate_set_the_window_shape(tmp_path):
    folder = _write_labelled_folder(tmp_path, {"A001": "N", "A002": "AF"})
    records = Signals().read(folder, DataConfig(window_seconds=5, sampling_rate=100))
    assert len(records) == 10 and records.inputs.shape[1] == 500 + len(signal_io.WINDOW_FEATURES)


def test_window_step_seconds_gives_overlapping_windows_that_share_their_samples(tmp_path):
    folder = _write_labelled_folder(tmp_path, {"A001": "N"})
    records = Signals().read(folder, DataConfig(window_seconds=10, window_step_seconds=2.5))
    assert records.names.tolist() == [f"A001@{t:.1f}s" for t in (0, 2.5, 5, 7.5, 10, 12.5, 15)]  # 25 s: starts 0 ... 15 s
    length = signal_io.window_length(128.0, 10.0)
    first, second = records.inputs[0, :length], records.inputs[1, :length]
    shift = int(2.5 * 128)
    np.testing.assert_allclose(first[shift:] - first[shift], second[: length - shift] - second[0], atol=1e-5)  # equal up to each window's median


def test_a_record_shorter_than_a_window_is_padded_to_one_window(tmp_path):
    folder = _write_labelled_folder(tmp_path, {"S1": "N"}, seconds=6)
    records = Signals().read(folder, DataConfig(window_seconds=10))
    assert len(records) == 1
    window = records.inputs[0, : signal_io.window_length(128.0, 10.0)]
    assert np.all(window[-3 * 128 :] == window[-1])  # the padding: a constant tail (zero less the window's median)


def test_class_subfolders_of_text_arrays_are_labelled_records_at_the_given_rate(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("seizure", "normal"):
        (tmp_path / label).mkdir()
        for index in range(3):
            np.savetxt(tmp_path / label / f"{label[0]}{index}.txt", rng.normal(size=2000))
    records = Signals().read(tmp_path, DataConfig(record_sampling_rate=100.0))
    assert sorted(set(records.target)) == ["normal", "seizure"]
    assert set(records.groups) == {f"{label}/{label[0]}{i}" for label in ("seizure", "normal") for i in range(3)}
    with pytest.raises(DataError, match="sampling rate"):
        Signals().read(tmp_path, DataConfig())


def test_a_labels_file_naming_a_missing_record_is_an_error(tmp_path):
    folder = _write_labelled_folder(tmp_path, {"A001": "N"})
    (folder / "REFERENCE.csv").write_text("A001,N\nA404,AF\n")
    with pytest.raises(DataError, match="A404"):
        Signals().read(folder, DataConfig())


def test_beats_are_read_from_labelled_records_when_asked(tmp_path):
    folder = tmp_path / "wfdb"
    folder.mkdir()
    _write_wfdb(folder, "r1")
    (folder / "REFERENCE.csv").write_text("r1,AF\n")
    assert Signals().unit_of(folder) == "window"
    beats = Signals().read(folder, DataConfig(unit="beat"))
    assert set(beats.target) == {"N", "V"}


def test_window_features_tell_an_irregular_rhythm_from_a_regular_one():
    fs, rng = 128.0, np.random.default_rng(0)
    regular = np.arange(0.5, 10, 0.8)
    irregular = np.cumsum(rng.uniform(0.4, 1.2, 14))
    features = {}
    for name, times in (("regular", regular), ("irregular", irregular[irregular < 9.8])):
        window = np.zeros((1, int(10 * fs)), dtype=np.float32)
        for t in times:  # narrow QRS-like spikes
            window[0, int(t * fs) - 2 : int(t * fs) + 3] = [0.2, 0.6, 1.0, 0.6, 0.2]
        features[name] = dict(zip(signal_io.WINDOW_FEATURES, signal_io.window_features(window, fs)))
    assert features["regular"]["heart_rate"] == pytest.approx(75, abs=2)
    assert features["regular"]["cv_rr"] < 0.02 < 0.15 < features["irregular"]["cv_rr"]
    assert features["irregular"]["irregularity"] > 0.3 > features["regular"]["irregularity"]


def _rr_shape(rr: np.ndarray, fs: float = 128.0) -> dict[str, float]:
    peaks = np.round(np.concatenate([[0.5], 0.5 + np.cumsum(rr)]) * fs).astype(int)
    return dict(zip(signal_io.RR_SHAPE_FEATURES, signal_io.rr_shape_features(peaks, fs)))


def test_rr_shape_features_tell_patternless_irregularity_from_a_repeating_ectopic_pattern():
    random_rr = np.random.default_rng(0).uniform(0.4, 1.2, 40)  # atrial fibrillation: irregular without pattern
    bigeminy = np.tile([0.5, 1.0], 20)  # a premature beat, then a compensatory pause, over and over
    regular = np.full(40, 0.75)  # 96 samples at 128 Hz: no rounding jitter
    af, ectopic, sinus = _rr_shape(random_rr), _rr_shape(bigeminy), _rr_shape(regular)
    assert ectopic["rr_sample_entropy"] < 0.5 < 1.0 < af["rr_sample_entropy"]
    assert ectopic["compensatory_share"] > 0.4 > 0.25 > af["compensatory_share"]
    assert af["rr_entropy_log_rr"] > sinus["rr_entropy_log_rr"] + 2
    assert 0.4 < af["poincare_ratio"] < 0.6 < 0.99 < ectopic["poincare_ratio"]  # SD1 ≈ SD2 for random intervals; SD2 ≈ 0 for bigeminy
    assert sinus["poincare_sd1"] == sinus["premature_share"] == sinus["compensatory_share"] == 0
    assert sinus["longest_rr"] == sinus["shortest_rr"] == 1
    assert not signal_io.rr_shape_features(np.array([10, 110, 210]), 128.0).any()  # under four beats: zeros


def _synthetic_lead(fs: float, seconds: float, *, p_wave: bool = True, qrs_width: float = 0.01, fibrillation: float = 0.0):
    """R peaks every 0.8 s with a Gaussian QRS (sd ``qrs_width`` s), a T wave and, when asked, a P wave
    0.16 s before; ``fibrillation`` adds that amplitude of irregular 5-8 Hz atrial waves."""
    t, rng = np.arange(0, seconds, 1 / fs), np.random.default_rng(0)
    peaks = np.arange(0.6, seconds - 0.6, 0.8)
    bump = lambda centre, width, height: height * np.exp(-0.5 * ((t - centre) / width) ** 2)  # noqa: E731
    lead = sum(bump(r, qrs_width, 1.0) + bump(r + 0.25, 0.04, 0.3) + (bump(r - 0.16, 0.02, 0.15) if p_wave else 0) for r in peaks)
    if fibrillation:
        lead = lead + fibrillation * np.sin(2 * np.pi * np.cumsum(rng.uniform(5, 8, len(t))) / fs)
    return lead.astype(np.float32), np.round(peaks * fs).astype(int)


def test_beat_shape_features_see_a_consistent_p_wave_and_lose_it_to_fibrillatory_waves():
    fs = 128.0
    sinus = dict(zip(signal_io.BEAT_SHAPE_FEATURES, signal_io.beat_shape_features(*_synthetic_lead(fs, 30), fs)))
    af = dict(zip(signal_io.BEAT_SHAPE_FEATURES, signal_io.beat_shape_features(*_synthetic_lead(fs, 30, p_wave=False, fibrillation=0.1), fs)))
    assert sinus["p_wave_consistency"] > 0.95 and af["p_wave_consistency"] < 0.5
    assert sinus["beat_consistency"] > 0.99 and sinus["beat_snr"] > af["beat_snr"]
    assert sinus["beat_rate"] == pytest.approx(36 / 30)  # 36 whole beats in 30 s
    assert sinus["p_wave_energy"] > 0.03


def test_qrs_width_grows_with_the_qrs():
    fs = 128.0
    width = {sd: signal_io.beat_shape_features(*_synthetic_lead(fs, 20, qrs_width=sd), fs)[signal_io.BEAT_SHAPE_FEATURES.index("qrs_width")] for sd in (0.008, 0.025)}
    assert 0 < width[0.008] < width[0.025]


def test_spectral_features_put_a_10_hz_rhythm_in_the_alpha_band():
    fs = 128.0
    alpha = np.sin(2 * np.pi * 10 * np.arange(0, 10, 1 / fs))[None].astype(np.float32)
    features = dict(zip(signal_io.SPECTRAL_FEATURES, signal_io.spectral_features(alpha, fs)))
    assert features["alpha"] > 0.95 and features["delta"] < 0.02


def test_linear_resampling_in_chunks_equals_the_whole_record():
    signal = np.random.default_rng(2).normal(size=(2, 3001)).astype(np.float32)
    whole = signal_io.LinearResampler(300.0, 128.0)(signal)
    chunked = signal_io.LinearResampler(300.0, 128.0)
    parts = np.concatenate([chunked(part) for part in np.array_split(signal, [1, 2, 300, 1777], axis=1)], axis=1)
    assert whole.shape == (2, 1281)  # samples 0..3000 at 300 Hz span 10 s: 1281 samples at 128 Hz
    np.testing.assert_array_equal(parts, whole)


def test_by_default_a_window_is_the_records_median_length(tmp_path):
    folder = _write_labelled_folder(tmp_path, {"A001": "N", "A002": "AF", "A003": "N"}, seconds=25)
    config = DataConfig(path=str(folder))
    assert Signals().data_settings(folder, config)["window_seconds"] == 25.0
    records = Signals().read(folder, config)
    assert records.names.tolist() == ["A001@0.0s", "A002@0.0s", "A003@0.0s"]  # each record one whole window
    fitted = Signals().preprocessor(config).fit(records)
    assert fitted.reading_config()["window_seconds"] == 25.0 and fitted.model_kwargs()["length"] == 25 * 128


def test_a_default_window_is_at_most_30_seconds(tmp_path):
    folder = _write_labelled_folder(tmp_path, {"A001": "N", "A002": "AF"}, seconds=65)
    from medtorch.data.signals import MAX_WINDOW_SECONDS

    assert Signals().data_settings(folder, DataConfig())["window_seconds"] == MAX_WINDOW_SECONDS == 30
    assert Signals().read(folder, DataConfig()).names.tolist() == ["A001@0.0s", "A001@30.0s", "A002@0.0s", "A002@30.0s"]


def test_a_step_longer_than_the_default_window_is_refused(tmp_path):
    from medtorch.errors import ConfigError

    folder = _write_labelled_folder(tmp_path, {"A001": "N", "A002": "AF"}, seconds=12)
    with pytest.raises(ConfigError, match=r"window_step_seconds \(20.0\) above the window \(12.0 s"):
        Signals().data_settings(folder, DataConfig(window_step_seconds=20))


def test_linear_resampling_keeps_a_slow_sine():
    fs_in, fs_out = 360.0, 128.0
    t_in, t_out = np.arange(0, 5, 1 / fs_in), np.arange(0, 5 - 1 / fs_in, 1 / fs_out)
    resampled = signal_io.LinearResampler(fs_in, fs_out)(np.sin(2 * np.pi * 5 * t_in)[None].astype(np.float32))[0]
    np.testing.assert_allclose(resampled[: len(t_out)], np.sin(2 * np.pi * 5 * t_out), atol=2e-3)


def test_window_preprocessor_reports_the_window_shape_and_round_trips(tmp_path):
    folder = _write_labelled_folder(tmp_path, {"A001": "N", "A002": "AF"})
    records = Signals().read(folder, DataConfig(window_seconds=10))
    fitted = Signals().preprocessor(DataConfig(path=str(folder), window_seconds=10)).fit(records)
    assert fitted.model_kwargs() == {"in_channels": 1, "length": 1280, "n_extra": len(signal_io.WINDOW_FEATURES)}
    assert fitted.reading_config() == {"sampling_rate": 128.0, "leads": 1, "unit": "window", "powerline": None, "window_seconds": 10.0}
    loaded = Signals().preprocessor_from_config(json.loads(json.dumps(fitted.get_config())))
    torch.testing.assert_close(loaded.transform(records.inputs), fitted.transform(records.inputs))


def test_beat_bundles_written_before_the_ratio_and_template_features_are_refused_with_a_clear_message():
    from medtorch.errors import BundleError

    legacy = {"fs": 360.0, "leads": 2, "length": 252, "window_scale": 1.0, "rr_mean": [0.0] * 7, "rr_std": [1.0] * 7}
    with pytest.raises(BundleError, match="reads 7 beat features.*retrain"):
        Signals().preprocessor_from_config(legacy)


def test_a_window_bundle_written_with_another_feature_set_is_refused_with_a_clear_message(tmp_path):
    from medtorch.errors import BundleError

    folder = _write_labelled_folder(tmp_path, {"A001": "N", "A002": "AF"})
    config = Signals().preprocessor(DataConfig(path=str(folder))).fit(Signals().read(folder, DataConfig())).get_config()
    older = config | {"extra_mean": [0.0] * 17, "extra_std": [1.0] * 17}
    del older["extra_features"]  # bundles written before the feature names were stored had 17 window features
    with pytest.raises(BundleError, match="reads 17 window features.*retrain"):
        Signals().preprocessor_from_config(older)
    with pytest.raises(BundleError, match="retrain"):
        Signals().preprocessor_from_config(config | {"extra_features": ["delta"] + config["extra_features"][1:][::-1]})


def test_waveform_features_tell_sharp_spikes_from_a_sine():
    fs = 128.0
    t = np.arange(0, 10, 1 / fs)
    sine = np.sin(2 * np.pi * 5 * t)[None]
    spiky = 0.1 * np.random.default_rng(0).normal(size=(1, len(t)))
    spiky[0, ::128] += 5.0  # one sharp spike a second, as in interictal epileptiform activity
    sine_features, spiky_features = (dict(zip(signal_io.WAVEFORM_FEATURES, signal_io.waveform_features(x))) for x in (sine, spiky))
    assert sine_features["log_kurtosis"] == pytest.approx(np.log(1.5), abs=0.01)  # a sine's kurtosis is 1.5
    assert spiky_features["log_kurtosis"] > np.log(20) and spiky_features["crest_factor"] > 5 > sine_features["crest_factor"]
    assert sine_features["hjorth_mobility"] == pytest.approx(2 * np.pi * 5 / fs, rel=0.02)  # mobility is the mean frequency, in radians per sample


def test_higuchi_dimension_is_about_two_for_white_noise_and_one_for_a_smooth_wave():
    t = np.arange(0, 10, 1 / 128.0)
    noise = np.random.default_rng(0).normal(size=len(t))
    assert signal_io.higuchi_dimension(noise) == pytest.approx(2.0, abs=0.05)
    assert signal_io.higuchi_dimension(np.sin(2 * np.pi * 2 * t)) == pytest.approx(1.0, abs=0.05)
    assert signal_io.petrosian_dimension(noise) > signal_io.petrosian_dimension(np.sin(2 * np.pi * 2 * t))


def test_spike_features_count_the_spikes_of_a_window():
    x = np.random.default_rng(0).normal(size=(1, 1280))
    quiet = dict(zip(signal_io.SPIKE_FEATURES, signal_io.spike_features(x)))
    x[0, ::128] += 20.0  # ten spikes in 1280 samples
    spiky = dict(zip(signal_io.SPIKE_FEATURES, signal_io.spike_features(x)))
    assert quiet["spike_share"] == 0.0 and spiky["spike_share"] == pytest.approx(10 / 1280)
    assert spiky["steep_share"] > quiet["steep_share"]


def test_a_window_mostly_padding_keeps_its_spike_features_bounded():
    x = np.zeros((1, 3840))
    x[0, :1536] = np.random.default_rng(0).normal(size=1536)  # a 12-s record padded to a 30-s window
    features = dict(zip(signal_io.SPIKE_FEATURES, signal_io.spike_features(x)))
    assert features["peak_mads"] < 100 and features["peak_steepness"] < 100  # a median spread of 0 gave about 1e9


@pytest.mark.parametrize("features", [signal_io.waveform_features, signal_io.spike_features, lambda w: signal_io.band_features(w, 128.0)])
def test_a_flat_lead_leaves_the_other_lead_s_features_as_they_are(features):
    lead = np.random.default_rng(1).normal(size=(1, 1280))
    with_flat_lead = np.vstack([lead, np.zeros((1, 1280))])
    np.testing.assert_allclose(features(with_flat_lead), features(lead))


def test_band_features_put_a_10_hz_rhythm_s_power_in_the_alpha_band_and_skip_bands_above_nyquist():
    fs = 128.0
    alpha = np.sin(2 * np.pi * 10 * np.arange(0, 10, 1 / fs))[None]
    features = dict(zip(signal_io.BAND_FEATURES, signal_io.band_features(alpha, fs)))
    powers = {band: features[f"{band}_log_power"] for band in signal_io.BAND_NAMES}
    assert max(powers, key=powers.get) == "alpha" and powers["alpha"] > powers["delta"] + 2  # over 100 times the power
    slow = dict(zip(signal_io.BAND_FEATURES, signal_io.band_features(alpha, 50.0)))
    assert slow["gamma_log_power"] == 0.0 and slow["beta_log_power"] != 0.0  # 30-45 Hz lies above 50 Hz's Nyquist


def test_rr_linear_without_any_input_feature_is_refused():
    from medtorch.errors import ConfigError

    with pytest.raises(ConfigError, match="rr_linear"):
        create_model("rr_linear", in_channels=1, length=64, n_extra=0, out_features=2, shape_points=0)


def test_rr_linear_tells_premature_beats_by_their_rr_ratio_alone():
    """Same shape, earlier beat: the RR ratio decides, as in de Chazal et al. (2004)."""
    torch.manual_seed(0)
    n, length = 400, 64
    premature = torch.rand(n) < 0.3
    ratio = torch.where(premature, 0.7, 1.0) + 0.05 * torch.randn(n)
    x = torch.cat([torch.randn(n, length) * 0.1, ratio[:, None]], dim=1)
    model = create_model("rr_linear", in_channels=1, length=length, n_extra=1, out_features=2)
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-2)
    for _ in range(300):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(x), premature.long()).backward()
        optimiser.step()
    assert (model(x).argmax(dim=1) == premature.long()).float().mean() > 0.97


def test_rr_linear_keeps_the_weight_names_its_bundles_were_written_with():
    model = create_model("rr_linear", in_channels=2, length=252, n_extra=15, out_features=5, shape_points=0)
    assert set(model.state_dict()) == {"linear.weight", "linear.bias"}  # bundles before rr_mlp existed hold these


def test_rr_mlp_tells_beats_off_the_rhythm_either_way_where_a_linear_model_cannot():
    """Early (premature) and late (escape) beats are both abnormal: not one side of a line."""
    torch.manual_seed(0)
    n = 600
    ratio = 0.5 + torch.rand(n)  # pre-RR over the patient's average, 0.5-1.5
    abnormal = ((ratio - 1).abs() > 0.25).long()
    x = torch.cat([torch.zeros(n, 8), ratio[:, None]], dim=1)

    def accuracy(name: str) -> float:
        model = create_model(name, in_channels=1, length=8, n_extra=1, out_features=2, shape_points=0)
        optimiser = torch.optim.Adam(model.parameters(), lr=2e-2)
        for _ in range(400):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x), abnormal).backward()
            optimiser.step()
        return (model.eval()(x).argmax(dim=1) == abnormal).float().mean().item()

    assert accuracy("rr_mlp") > 0.95 and accuracy("rr_linear") < 0.8


@pytest.mark.parametrize("name", list_models(modality="signal", kind="torch"))
def test_every_signal_model_reads_ten_second_windows(name):
    model = create_model(name, in_channels=1, length=1280, n_extra=len(signal_io.WINDOW_FEATURES), out_features=4)
    assert model(torch.randn(3, 1280 + len(signal_io.WINDOW_FEATURES))).shape == (3, 4)


def test_the_powerline_notch_removes_mains_hum_and_travels_with_the_bundle(tmp_path):
    fs, t = 500.0, np.arange(0, 20, 1 / 500.0)
    hum = np.sin(2 * np.pi * 50 * t)[None].astype(np.float32)
    settled = slice(5000, None)
    plain = signal_io.Conditioner(fs, fs, channels=1)(hum)[0, settled]
    notched = signal_io.Conditioner(fs, fs, channels=1, powerline=50.0)(hum)[0, settled]
    assert np.std(notched) < 0.05 * np.std(plain)
    folder = _write_labelled_folder(tmp_path, {"A001": "N", "A002": "AF"})
    records = Signals().read(folder, DataConfig(powerline=60.0))
    fitted = Signals().preprocessor(DataConfig(path=str(folder), powerline=60.0)).fit(records)
    assert fitted.reading_config()["powerline"] == 60.0
    assert Signals().preprocessor_from_config(fitted.get_config()).powerline == 60.0


# ---------------------------------------------------------------- ECG quality (NeuroKit2, Zhao & Zhang 2018)
def _record_of(lead: np.ndarray, fs: float = 360.0) -> SignalRecord:
    return SignalRecord("q", lead[None].astype(np.float32), fs)


def _motion_artefact(samples: int, seed: int) -> np.ndarray:
    """Brown noise: the slow, large excursions of a moving electrode."""
    return 0.1 * np.cumsum(np.random.default_rng(seed).normal(size=samples))


def test_ecg_quality_accepts_a_clean_ecg_and_rejects_artefact_flat_and_short_stretches():
    import neurokit2 as nk

    clean = nk.ecg_simulate(duration=10, sampling_rate=360, heart_rate=70, noise=0.01, random_state=0)
    stretches = (clean, _motion_artefact(3600, 0), np.zeros(3600), clean[:360])
    verdicts = [signal_io.ecg_quality(_record_of(lead), np.array([0.0]))[0] for lead in stretches]
    assert verdicts[0] in {"Excellent", "Barely acceptable"}
    assert verdicts[1:] == ["Unacceptable"] * 3


def test_each_beat_gets_the_verdict_on_the_ten_seconds_it_falls_in(tmp_path):
    import neurokit2 as nk
    import wfdb

    fs = 360
    ecg = nk.ecg_simulate(duration=40, sampling_rate=fs, heart_rate=70, noise=0.01, random_state=1)
    peaks = np.asarray(nk.ecg_peaks(ecg, sampling_rate=fs)[1]["ECG_R_Peaks"])
    ecg[20 * fs : 30 * fs] = _motion_artefact(10 * fs, 1)  # seconds 20-30: a moving electrode
    wfdb.wrsamp("noisy", fs=fs, units=["mV"], sig_name=["MLII"], p_signal=ecg[:, None], fmt=["16"], write_dir=str(tmp_path))
    wfdb.wrann("noisy", "atr", peaks, ["N"] * len(peaks), write_dir=str(tmp_path))
    records = Signals().read(tmp_path, DataConfig())
    seconds = np.array([float(name.split("@")[1][:-1]) for name in records.names])
    verdicts = records.attributes["ECG quality"].to_numpy()
    assert set(verdicts[(seconds >= 20) & (seconds < 30)]) == {"Unacceptable"}
    assert "Unacceptable" not in set(verdicts[seconds < 20])
    flags = Signals().quality(records, Signals().preprocessor(DataConfig()).fit(records))
    np.testing.assert_array_equal(flags["ECG quality unacceptable (NeuroKit2, Zhao 2018)"].to_numpy(), verdicts == "Unacceptable")


def test_ecg_quality_is_judged_for_beats_but_not_for_windows_unless_asked(wfdb_folder, tmp_path):
    assert Signals().read(wfdb_folder, DataConfig(ecg_quality=False)).attributes is None
    assert Signals().read(wfdb_folder / "r1.hea", DataConfig(), with_target=False).attributes is None  # prediction needs no verdict
    folder = _write_labelled_folder(tmp_path / "windows", {"A001": "N", "A002": "AF"})
    assert Signals().read(folder, DataConfig()).attributes is None  # a window may be an EEG
    judged = Signals().read(folder, DataConfig(ecg_quality=True, window_seconds=10)).attributes["ECG quality"]
    assert len(judged) == 4 and set(judged) <= {"Excellent", "Barely acceptable", "Unacceptable"}


# ---------------------------------------------------------------- beats relative to the record's typical beat
def test_template_channels_are_zero_for_a_repeated_beat_and_show_how_an_odd_beat_differs():
    beat = np.sin(np.linspace(0, np.pi, 30, dtype=np.float32))[None, None].repeat(2, axis=1)  # (1, 2 leads, 30)
    odd = 3 * beat
    windows = np.concatenate([beat.repeat(20, axis=0), odd, beat], axis=0)
    channels, template = signal_io.with_template_channels(windows)
    assert channels.shape == (22, 4, 30)
    np.testing.assert_array_equal(channels[:, :2], windows)  # the leads come first, untouched
    np.testing.assert_allclose(channels[:20, 2:], 0, atol=1e-6)
    np.testing.assert_allclose(channels[20, 2:], 2 * beat[0], atol=1e-6)  # the odd beat less the typical one
    np.testing.assert_allclose(channels[21, 2:], -0.04 * beat[0], atol=1e-6)  # the odd beat raised the template by 0.02 x 2


def test_a_premature_beat_stays_out_of_the_template_so_bigeminy_does_not_blur_it():
    beat = np.sin(np.linspace(0, np.pi, 30, dtype=np.float32))[None, None]  # (1, 1 lead, 30)
    windows = np.concatenate([beat] * 3 + [-beat, beat] * 100, axis=0)  # then inverted (ectopic) and normal beats alternate
    peaks = np.cumsum([0, 360, 360] + [280, 440] * 100)  # each ectopic beat comes early, then a pause
    premature = signal_io.premature_beats(signal_io.rr_features(peaks, 360.0))
    np.testing.assert_array_equal(premature, [False] * 3 + [True, False] * 100)
    channels, template = signal_io.with_template_channels(windows, premature=premature)
    np.testing.assert_allclose(template, beat[0], atol=1e-6)  # the normal beat, not their average
    np.testing.assert_allclose(channels[-2, 1], -2 * beat[0, 0], atol=1e-6)  # the last ectopic beat stands out in full
    blurred = signal_io.with_template_channels(windows)[1]
    assert np.abs(blurred).max() < 0.1  # over every beat, the typical beat averages out


def test_template_channels_in_chunks_equal_the_whole_sequence():
    rng = np.random.default_rng(0)
    windows = rng.normal(size=(50, 2, 30)).astype(np.float32)
    premature = rng.random(50) < 0.3
    premature[:3] = True, False, False  # the template starts at the first beat that is not premature
    whole, _ = signal_io.with_template_channels(windows, premature=premature)
    first, state = signal_io.with_template_channels(windows[:17], premature=premature[:17])
    second, _ = signal_io.with_template_channels(windows[17:], state, premature=premature[17:])
    np.testing.assert_array_equal(np.concatenate([first, second]), whole)
    np.testing.assert_array_equal(whole[0, 2:], 0)
    np.testing.assert_array_equal(whole[1, 2:], 0)  # beat 1 starts the template
    np.testing.assert_allclose(whole[2, 2:], windows[2] - windows[1], atol=1e-6)
    with pytest.raises(ValueError, match="premature flags"):
        signal_io.with_template_channels(windows, premature=premature[:10])


def _beats_with_template(odd: np.ndarray, fs: float = 360.0) -> tuple[dict[str, float], dict[str, float]]:
    """Template features of a typical beat after 30 like it, and of ``odd`` after those 30."""
    before, after = signal_io.beat_window(fs)
    t = (np.arange(before + after) - before) / fs
    typical = np.exp(-((t + 0.16) / 0.02) ** 2) * 0.15 + np.exp(-(t / 0.012) ** 2) + np.exp(-((t - 0.25) / 0.05) ** 2) * 0.3  # P, QRS, T
    windows = np.stack([typical] * 30 + [odd])[:, None].repeat(2, axis=1).astype(np.float32)
    features = signal_io.template_features(signal_io.with_template_channels(windows)[0], fs)
    return dict(zip(signal_io.TEMPLATE_FEATURES, features[29])), dict(zip(signal_io.TEMPLATE_FEATURES, features[30]))


def test_a_beat_like_the_template_has_no_difference_energy_and_full_correlation():
    typical, _ = _beats_with_template(np.zeros(252))
    for wave in ("p", "qrs", "t"):
        assert typical[f"{wave}_energy_ratio"] == pytest.approx(0.0, abs=1e-6)
    for part in ("p", "qrs", "beat"):
        assert typical[f"{part}_correlation"] == pytest.approx(1.0, abs=1e-6)


def test_template_features_tell_an_inverted_p_wave_from_an_inverted_qrs():
    fs = 360.0
    before, after = signal_io.beat_window(fs)
    t = (np.arange(before + after) - before) / fs
    p_wave, qrs, t_wave = np.exp(-((t + 0.16) / 0.02) ** 2) * 0.15, np.exp(-(t / 0.012) ** 2), np.exp(-((t - 0.25) / 0.05) ** 2) * 0.3
    _, atrial = _beats_with_template(-p_wave + qrs + t_wave)  # an ectopic atrial focus: the P wave turns over (S beat)
    _, ventricular = _beats_with_template(p_wave - 1.5 * np.exp(-(t / 0.04) ** 2) + t_wave)  # a wide, inverted QRS (V beat)
    assert atrial["p_correlation"] < -0.9 and atrial["qrs_correlation"] > 0.99 and atrial["qrs_energy_ratio"] < 0.01
    assert ventricular["qrs_correlation"] < 0 and ventricular["qrs_energy_ratio"] > 1 and ventricular["p_correlation"] > 0.9
    assert atrial["p_energy_ratio"] > 0.05


def test_beat_template_doubles_the_channels_the_model_reads_and_travels_with_the_preprocessor(wfdb_folder):
    config = DataConfig()  # on by default for beats
    records = Signals().read(wfdb_folder, config)
    preprocessor = Signals().preprocessor(config).fit(records)
    assert preprocessor.leads == 2 and preprocessor.channels == 4
    assert preprocessor.model_kwargs()["in_channels"] == 4
    assert preprocessor.extra_features == signal_io.RR_FEATURES + signal_io.TEMPLATE_FEATURES
    assert preprocessor.reading_config()["beat_template"] is True
    again = Signals().preprocessor_from_config(json.loads(json.dumps(preprocessor.get_config())))
    torch.testing.assert_close(again.transform(records.inputs[:5]), preprocessor.transform(records.inputs[:5]))
    plain = Signals().read(wfdb_folder, DataConfig(ecg_quality=False, beat_template=False))
    with pytest.raises(DataError, match="4 channel"):
        preprocessor.transform(plain.inputs[:5])
    flags = Signals().quality(records, preprocessor)
    assert not flags["flat signal (lead off)"].any()  # a template difference near zero is no lead off


# --------------------------------------------------------------------------- EDF
def _write_edf(path, channels: dict[str, tuple[np.ndarray, float]]) -> None:
    import pyedflib.highlevel as edf

    headers = [
        edf.make_signal_header(name, dimension="uV", sample_frequency=rate, physical_min=-500, physical_max=500)
        for name, (_, rate) in channels.items()
    ]
    edf.write_edf(str(path), [signal for signal, _ in channels.values()], headers)


def test_an_edf_file_reads_as_its_channels_at_its_rate(tmp_path):
    t = np.arange(0, 12, 1 / 256)
    alpha, beta = 50 * np.sin(2 * np.pi * 10 * t), 20 * np.sin(2 * np.pi * 20 * t)
    _write_edf(tmp_path / "eeg.edf", {"Fp1": (alpha, 256), "Fp2": (beta, 256)})
    record = signal_io.read_record(tmp_path / "eeg.edf")
    assert (record.name, record.fs, record.channels) == ("eeg", 256.0, ["Fp1", "Fp2"])
    np.testing.assert_allclose(record.signal, np.stack([alpha, beta]), atol=0.05)  # 16-bit samples over ±500 µV
    assert signal_io.record_seconds(tmp_path / "eeg.edf") == 12.0


def test_an_edf_channel_sampled_slower_is_interpolated_to_the_fastest_rate(tmp_path):
    slow = np.linspace(-100, 100, 12 * 4)  # a 4-Hz ramp beside 256-Hz EEG, as respiration beside EEG in a polysomnogram
    _write_edf(tmp_path / "psg.edf", {"C3": (np.zeros(12 * 256), 256), "Resp": (slow, 4)})
    record = signal_io.read_record(tmp_path / "psg.edf")
    assert record.fs == 256.0 and record.signal.shape == (2, 12 * 256)
    np.testing.assert_allclose(record.signal[1, ::64], slow, atol=0.05)  # every 64th sample is one of the ramp's
    assert record.signal[1, 32] == pytest.approx((slow[0] + slow[1]) / 2, abs=0.05)  # half-way between two: a line, not a step


def test_a_folder_of_edf_files_in_class_subfolders_trains_end_to_end(tmp_path):
    import medtorch

    rng = np.random.default_rng(0)
    t = np.arange(0, 10, 1 / 128)
    for label, frequency in (("seizure", 3.0), ("normal", 10.0)):
        (tmp_path / label).mkdir()
        for index in range(5):
            wave = 80 * np.sin(2 * np.pi * frequency * t + index) + rng.normal(scale=10, size=len(t))
            _write_edf(tmp_path / label / f"{label}{index}.edf", {"Cz": (wave, 128)})
    overrides = {"model": {"name": "extra_trees"}, "evaluate": {"bootstrap": 0, "baselines": False}}  # trees that split on six records
    run = medtorch.train(tmp_path / ".", out=tmp_path / "run", overrides=overrides, progress=False)
    assert run.config.data.window_seconds == 10.0  # the records' median length, read from the EDF headers
    assert sum(split["patients"] for split in run.metrics["splits"].values()) == 10  # each record on one side of the split
    for label in ("seizure", "normal"):  # one right call of each class: no constant guess passes
        assert list(run.bundle.predict(tmp_path / label / f"{label}0.edf")["prediction"]) == [label]
