"""Signal examples in the report: which cases are shown, and the network's attribution along time."""

from __future__ import annotations

import re

import numpy as np
import pytest

import medtorch
from medtorch.explain.signals import MAX_EXAMPLES, chosen_examples, signal_attribution, signal_examples

FAST = {"train": {"epochs": 1}, "evaluate": {"bootstrap": 0, "baselines": False}}

pytestmark = pytest.mark.slow  # each test trains a small run or two (10 s)


def _write_record(folder, name: str, heart_rate: int, seed: int, *, annotate: bool) -> None:
    import neurokit2 as nk
    import wfdb

    ecg = nk.ecg_simulate(duration=30, sampling_rate=250, heart_rate=heart_rate, random_state=seed)
    wfdb.wrsamp(name, fs=250, units=["mV", "mV"], sig_name=["MLII", "V1"], p_signal=np.stack([ecg, 0.5 * ecg], axis=1), fmt=["212", "212"], write_dir=str(folder))
    if annotate:
        peaks = np.asarray(nk.ecg_peaks(ecg, sampling_rate=250)[1]["ECG_R_Peaks"])
        wfdb.wrann(name, "atr", peaks, ["V" if i % 6 == 2 else "N" for i in range(len(peaks))], write_dir=str(folder))


@pytest.fixture(scope="module")
def window_runs(tmp_path_factory):
    """Slow against fast rhythm in 10-s windows, by the CNN and by gradient boosting on the window features."""
    folder = tmp_path_factory.mktemp("windows")
    for index in range(6):
        _write_record(folder, f"w{index}", 55 if index % 2 else 110, index, annotate=False)
    (folder / "REFERENCE.csv").write_text("".join(f"w{i},{'slow' if i % 2 else 'fast'}\n" for i in range(6)))
    settings = lambda model: {**FAST, "model": {"name": model}, "data": {"window_seconds": 10}}  # noqa: E731
    runs = {model: medtorch.train(folder / ".", out=tmp_path_factory.mktemp(model), overrides=settings(model), progress=False) for model in ("cnn_rr", "hist_gradient_boosting")}
    return folder, runs


def test_each_class_shows_its_first_wrong_then_its_first_right_case():
    truth = np.array(["N", "N", "V", "N", "V", "S"])
    called = np.array(["N", "V", "V", "N", "N", "N"])
    assert chosen_examples(truth, called, ["N", "S", "V"]) == [1, 0, 5, 4, 2]
    many = np.repeat([f"c{k}" for k in range(6)], 2)
    assert len(chosen_examples(many, np.roll(many, 1), sorted(set(many)))) == MAX_EXAMPLES


def test_a_networks_attribution_covers_the_window_and_peaks_at_one(window_runs):
    folder, runs = window_runs
    bundle = runs["cnn_rr"].bundle
    records = bundle.read_labeled(folder)
    attribution = signal_attribution(bundle, np.asarray(records.inputs[0], dtype=np.float32))
    assert attribution.shape == (bundle.preprocessor.length,)
    assert attribution.min() >= 0 and attribution.max() == pytest.approx(1.0)
    assert np.std(attribution) > 0  # the evidence lies somewhere in particular


def test_features_only_models_show_the_signal_without_attribution(window_runs):
    folder, runs = window_runs
    bundle = runs["hist_gradient_boosting"].bundle
    records = bundle.read_labeled(folder)
    assert signal_attribution(bundle, np.asarray(records.inputs[0], dtype=np.float32)) is None
    figures = signal_examples(bundle, records)
    assert figures and all(png.startswith(b"\x89PNG") for png, _ in figures)


@pytest.mark.parametrize("model", ["cnn_rr", "hist_gradient_boosting"])
def test_the_report_captions_say_right_or_wrong_with_truth_and_prediction(window_runs, model):
    page = (window_runs[1][model].out_dir / "report.html").read_text()
    captions = re.findall(r"<figcaption>((?:right|wrong): true \w+, predicted \w+ \(p [0-9.]+\), w\d@[0-9.]+s)</figcaption>", page)
    truths = {c.split("true ")[1].split(",")[0] for c in captions}
    assert truths == {"fast", "slow"}  # every class has its example


def test_beats_with_their_template_channels_are_explained_per_beat(tmp_path):
    for index in range(3):
        _write_record(tmp_path, f"r{index}", 65 + 8 * index, index, annotate=True)
    overrides = {**FAST, "model": {"name": "cnn_rr"}, "data": {"beat_template": True}}
    run = medtorch.train(tmp_path / ".", out=tmp_path / "run", overrides=overrides, progress=False)
    records = run.bundle.read_labeled(tmp_path)
    attribution = signal_attribution(run.bundle, np.asarray(records.inputs[0], dtype=np.float32))
    assert attribution.shape == (run.bundle.preprocessor.length,)
    captions = [caption for _, caption in signal_examples(run.bundle, records)]
    assert {c.split("true ")[1].split(",")[0] for c in captions} == {"N", "V"}


def test_the_beat_default_on_rr_features_alone_has_no_shading(tmp_path):
    for index in range(3):
        _write_record(tmp_path, f"r{index}", 65 + 8 * index, index, annotate=True)
    run = medtorch.train(tmp_path / ".", out=tmp_path / "run", overrides=FAST, progress=False)
    assert run.bundle.model_name == "rr_linear"
    records = run.bundle.read_labeled(tmp_path)
    assert signal_attribution(run.bundle, np.asarray(records.inputs[0], dtype=np.float32)) is None
