"""Streaming a biosignal bundle: chunk by chunk gives exactly the offline labels, faster than real time."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

import medtorch
from medtorch.data import signal_io
from medtorch.errors import DataError
from medtorch.serving.stream import SignalStream, stream, stream_record

FAST = {"train": {"epochs": 1}, "evaluate": {"bootstrap": 0, "baselines": False}}


def _simulate(seconds: float, fs: int, seed: int, heart_rate: int = 75) -> np.ndarray:
    import neurokit2 as nk

    return nk.ecg_simulate(duration=int(seconds), sampling_rate=fs, heart_rate=heart_rate, random_state=seed)


def _write_record(folder, name: str, ecg: np.ndarray, fs: int, *, annotate: bool) -> None:
    import neurokit2 as nk
    import wfdb

    wfdb.wrsamp(name, fs=fs, units=["mV", "mV"], sig_name=["MLII", "V1"], p_signal=np.stack([ecg, 0.5 * ecg], axis=1), fmt=["212", "212"], write_dir=str(folder))
    if annotate:
        peaks = np.asarray(nk.ecg_peaks(ecg, sampling_rate=fs)[1]["ECG_R_Peaks"])
        wfdb.wrann(name, "atr", peaks, ["V" if i % 6 == 2 else "N" for i in range(len(peaks))], write_dir=str(folder))


@pytest.fixture(scope="module")
def beat_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("beats")
    for index in range(3):
        _write_record(folder, f"r{index}", _simulate(60, 360, index, 65 + 8 * index), 360, annotate=True)
    return folder


@pytest.fixture(scope="module")
def beat_bundle(beat_folder, tmp_path_factory):
    return medtorch.train(beat_folder / ".", out=tmp_path_factory.mktemp("run"), overrides=FAST, progress=False, overwrite=True).bundle


@pytest.fixture(scope="module")
def template_bundle(beat_folder, tmp_path_factory):
    """Beats that also carry their difference from the record's typical beat so far (a state the stream must keep)."""
    overrides = {**FAST, "data": {"beat_template": True}}
    return medtorch.train(beat_folder / ".", out=tmp_path_factory.mktemp("template_run"), overrides=overrides, progress=False, overwrite=True).bundle


@pytest.fixture(scope="module")
def window_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("windows")
    labels = {}
    for index in range(6):
        rate = 55 if index % 2 else 110  # slow vs fast rhythm: learnable from one window
        _write_record(folder, f"w{index}", _simulate(30, 250, index, rate), 250, annotate=False)
        labels[f"w{index}"] = "slow" if index % 2 else "fast"
    (folder / "REFERENCE.csv").write_text("".join(f"{k},{v}\n" for k, v in labels.items()))
    return folder


@pytest.fixture(scope="module")
def window_bundle(window_folder, tmp_path_factory):
    overrides = {**FAST, "data": {"window_seconds": 10}}
    return medtorch.train(window_folder / ".", out=tmp_path_factory.mktemp("window_run"), overrides=overrides, progress=False).bundle


@pytest.fixture(scope="module")
def network_window_bundle(window_folder, tmp_path_factory):
    """The CNN on windows, which the defaults may pass over for boosting on the window features."""
    overrides = {**FAST, "model": {"name": "cnn_rr"}, "data": {"window_seconds": 10}}
    return medtorch.train(window_folder / ".", out=tmp_path_factory.mktemp("network_run"), overrides=overrides, progress=False).bundle


@pytest.fixture(scope="module")
def overlapping_window_bundle(window_folder, tmp_path_factory):
    """Windows of 10 s starting every 3 s: the stream must keep the overlap it has already used."""
    overrides = {**FAST, "data": {"window_seconds": 10, "window_step_seconds": 3}}
    return medtorch.train(window_folder / ".", out=tmp_path_factory.mktemp("overlap_run"), overrides=overrides, progress=False).bundle


@pytest.fixture(scope="module")
def unannotated_record(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bare")
    _write_record(folder, "bare", _simulate(45, 360, 11, 80), 360, annotate=False)
    return folder / "bare.hea"


@pytest.fixture(scope="module")
def record_with_early_beats(tmp_path_factory):
    """Every fifth beat comes 35% early, then a pause: premature beats stay out of the template, in the stream too."""
    fs = 360
    ecg = _simulate(12, fs, 5, 60)  # one beat a second: a cycle is one second of signal
    cycle = ecg[4 * fs : 5 * fs]
    lengths = [fs if i % 5 != 3 else int(0.65 * fs) for i in range(44)]  # a short cycle brings the next beat early
    lengths = [length if i % 5 != 4 else fs + fs - lengths[i - 1] for i, length in enumerate(lengths)]  # compensatory pause
    signal = np.concatenate([np.resize(cycle, length) for length in lengths])
    folder = tmp_path_factory.mktemp("early")
    _write_record(folder, "early", signal, fs, annotate=False)
    return folder / "early.hea"


def _offline(bundle, record):
    table = bundle.predict(record)
    times = np.array([float(name.split("@")[1].rstrip("s")) for name in table["input"]])
    return table, times


@pytest.mark.parametrize("bundle_name", ["beat_bundle", "template_bundle"])
@pytest.mark.parametrize("chunk_seconds", [0.05, 0.37, 5.0])
def test_streamed_beats_equal_offline_prediction_of_the_whole_record(bundle_name, unannotated_record, chunk_seconds, request):
    beat_bundle = request.getfixturevalue(bundle_name)
    table, times = _offline(beat_bundle, unannotated_record)
    decisions = stream_record(beat_bundle, unannotated_record, chunk_seconds=chunk_seconds).decisions
    assert len(decisions) == len(table) > 40
    np.testing.assert_allclose([d.time for d in decisions], times, atol=1e-3)
    assert [d.label for d in decisions] == table["prediction"].tolist()
    scores = np.array([d.scores for d in decisions]).reshape(len(decisions), -1)
    np.testing.assert_allclose(scores[:, -1], table.filter(like="probability_").to_numpy()[:, -1], atol=1e-4)


@pytest.mark.parametrize(
    ("bundle_name", "windows_of_47_s"), [("window_bundle", 4), ("network_window_bundle", 4), ("overlapping_window_bundle", 13)]
)
def test_streamed_windows_equal_offline_prediction_including_a_padded_short_record(bundle_name, windows_of_47_s, tmp_path, request):
    window_bundle = request.getfixturevalue(bundle_name)
    for name, seconds in (("long", 47), ("short", 6)):
        _write_record(tmp_path, name, _simulate(seconds, 250, 3, 100), 250, annotate=False)
        table, times = _offline(window_bundle, tmp_path / f"{name}.hea")
        decisions = stream_record(window_bundle, tmp_path / f"{name}.hea", chunk_seconds=0.8).decisions
        assert len(decisions) == len(table) == (windows_of_47_s if name == "long" else 1)
        np.testing.assert_allclose([d.time for d in decisions], times, atol=0.05)
        assert [d.label for d in decisions] == table["prediction"].tolist()
        scores = np.array([d.scores for d in decisions]).reshape(len(decisions), -1)
        np.testing.assert_allclose(scores[:, -1], table.filter(like="probability_").to_numpy()[:, -1], atol=1e-4)


@pytest.mark.parametrize("chunk_seconds", [0.37, 5.0])
def test_streamed_beats_equal_offline_when_premature_beats_stay_out_of_the_template(template_bundle, record_with_early_beats, chunk_seconds):
    record = signal_io.read_record(record_with_early_beats)
    peaks = signal_io.detect_r_peaks(record.signal, record.fs)
    assert signal_io.premature_beats(signal_io.rr_features(peaks, record.fs)).sum() >= 5  # the case this test is about
    table, times = _offline(template_bundle, record_with_early_beats)
    decisions = stream_record(template_bundle, record_with_early_beats, chunk_seconds=chunk_seconds).decisions
    np.testing.assert_allclose([d.time for d in decisions], times, atol=1e-3)
    scores = np.array([d.scores for d in decisions]).reshape(len(decisions), -1)
    np.testing.assert_allclose(scores, table.filter(like="probability_").to_numpy(), atol=1e-4)


def test_a_window_is_decided_as_soon_as_its_last_sample_arrives(window_bundle):
    engine = SignalStream(window_bundle, fs=250.0)
    ecg = _simulate(25, 250, 5, 100)
    signal = np.stack([ecg, 0.5 * ecg])
    first = engine.push(signal[:, : 9 * 250])
    second = engine.push(signal[:, 9 * 250 : 11 * 250])
    assert first == [] and len(second) == 1 and second[0].decided_at == pytest.approx(11.0)


def test_each_beat_is_decided_within_a_beat_and_the_detector_delay(beat_bundle, unannotated_record):
    from medtorch.data.rpeaks import StreamingRPeakDetector

    decisions = stream_record(beat_bundle, unannotated_record, chunk_seconds=0.1).decisions
    bound = 60 / 80 * 1.5 + StreamingRPeakDetector(360.0).delay_seconds + 0.1  # next beat + its detection + one chunk
    assert max(d.delay for d in decisions) < bound


def test_streaming_keeps_up_many_times_faster_than_real_time(beat_bundle, tmp_path, one_torch_thread):
    _write_record(tmp_path, "long", _simulate(300, 360, 4, 75), 360, annotate=False)
    report = stream_record(beat_bundle, tmp_path / "long.hea", chunk_seconds=1.0)
    assert len(report.decisions) > 300
    assert report.speed > 20, f"only {report.speed:.1f}x real time"


def test_the_generator_api_yields_the_decisions_of_chunks_from_memory(beat_bundle, unannotated_record):
    source = signal_io.read_record(unannotated_record)
    chunks = (source.signal[:, start : start + 500] for start in range(0, source.signal.shape[1], 500))
    decisions = list(stream(beat_bundle, chunks, fs=source.fs))
    assert [d.label for d in decisions] == [d.label for d in stream_record(beat_bundle, unannotated_record).decisions]


def test_a_chunk_with_too_few_leads_is_refused(beat_bundle):
    with pytest.raises(DataError, match="lead"):
        SignalStream(beat_bundle, fs=360.0).push(np.zeros(360))


def test_a_bundle_of_another_modality_is_refused(tmp_path, make_frame):
    bundle = medtorch.train(make_frame(n=120), target="outcome", out=tmp_path / "run", overrides={**FAST, "model": {"name": "logistic_regression"}}, progress=False).bundle
    with pytest.raises(DataError, match="biosignal"):
        SignalStream(bundle, fs=360.0)


@pytest.mark.slow
def test_stream_command_prints_each_beat_the_speed_and_writes_the_decisions(beat_bundle, unannotated_record, tmp_path, run_cli):
    beat_bundle.save(tmp_path / "bundle")
    process = run_cli("stream", tmp_path / "bundle", unannotated_record, "--chunk-seconds", "0.5", "--out", tmp_path / "decisions.csv")
    assert process.returncode == 0, process.stderr
    assert "faster than real time" in process.stdout and "latency per chunk" in process.stdout
    table = pd.read_csv(tmp_path / "decisions.csv")
    assert len(table) > 40 and set(table.columns) == {"time", "label", "probability", "decided_at", "delay"}
    assert process.stdout.count(" s  ") >= len(table)  # one printed line per decision


@pytest.mark.slow
def test_stream_command_on_a_missing_record_is_one_line_and_exit_2(beat_bundle, tmp_path, run_cli):
    beat_bundle.save(tmp_path / "bundle")
    process = run_cli("stream", tmp_path / "bundle", tmp_path / "nothing.hea")
    assert process.returncode == 2
    assert process.stderr.count("\n") == 1 and "Traceback" not in process.stderr
