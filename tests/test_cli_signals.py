"""`medtorch train` / `evaluate` / `predict` on ECG records (excerpts of real MIT-BIH records, cut at test time)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

TRAIN_RECORDS = ("101", "106", "119", "208", "209", "215")
OTHER_RECORDS = ("203",)
EXCERPT_SECONDS = 180
FAST_CONFIG = "train: {epochs: 2}\nevaluate: {bootstrap: 20, baselines: false}\n"


def _excerpt(shared_data, names, folder, seconds=EXCERPT_SECONDS):
    """The first minutes of real MIT-BIH records, written as WFDB records with their annotations."""
    import wfdb

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        base = str(shared_data / "mitbih_arrhythmia" / name)
        end = int(seconds * 360)
        record = wfdb.rdrecord(base, sampto=end)
        annotation = wfdb.rdann(base, "atr", sampto=end)
        wfdb.wrsamp(name, fs=record.fs, units=record.units, sig_name=record.sig_name, p_signal=record.p_signal, fmt=["212"] * 2, write_dir=str(folder))
        wfdb.wrann(name, "atr", annotation.sample, annotation.symbol, write_dir=str(folder))
    return folder


@pytest.fixture(scope="module")
def ecg_run(tmp_path_factory, shared_data, run_cli):
    root = tmp_path_factory.mktemp("ecg")
    data = _excerpt(shared_data, TRAIN_RECORDS, root / "ds1")
    (root / "fast.yaml").write_text(FAST_CONFIG)
    process = run_cli("train", "--data", data, "--out", root / "run", "--config", root / "fast.yaml", "--quiet")
    assert process.returncode == 0, process.stderr
    return root, process


@pytest.mark.slow
@pytest.mark.shared_data
def test_train_on_a_wfdb_folder_classifies_beats_into_aami_classes(ecg_run):
    root, _ = ecg_run
    metrics = json.loads((root / "run" / "metrics.json").read_text())
    assert metrics["task"] == "multiclass" and metrics["model"] == "rr_linear"  # the default beat model, chosen on MIT-BIH DS1
    config = yaml.safe_load((root / "run" / "config.yaml").read_text())
    assert config["model"] == {"name": "rr_linear", "shape_points": 0} and config["data"]["beat_template"] is True
    assert set(metrics["classes"]) <= {"N", "S", "V", "F", "Q"} and "V" in metrics["classes"]
    assert {"sensitivity", "ppv", "f1"} <= set(metrics["per_class"]["V"])  # AAMI Se and +P
    assert len(metrics["operating_point"]["matrix"]) == len(metrics["classes"])
    assert metrics["checks"]["quality"]["ECG quality unacceptable (NeuroKit2, Zhao 2018)"]["train"] > 0  # 106 and 208 hold noisy stretches


@pytest.mark.slow
@pytest.mark.shared_data
def test_every_record_stays_on_one_side_of_the_split(ecg_run):
    root, _ = ecg_run
    splits = json.loads((root / "run" / "metrics.json").read_text())["splits"]
    assert sum(splits[part]["patients"] for part in ("train", "val", "test")) == len(TRAIN_RECORDS)
    assert json.loads((root / "run" / "metrics.json").read_text())["checks"]["patient_overlap"] == {"val-train": 0, "test-train": 0, "test-val": 0}


@pytest.mark.slow
@pytest.mark.shared_data
def test_evaluate_on_other_records_maps_their_symbols_to_aami_classes(ecg_run, shared_data, run_cli):
    root, _ = ecg_run
    other = _excerpt(shared_data, OTHER_RECORDS, root / "other")
    process = run_cli("evaluate", root / "run" / "bundle", "--data", other, "--out", root / "evaluation", "--bootstrap", 20, "-q")
    assert process.returncode == 0, process.stderr
    summary = json.loads((root / "evaluation" / "metrics.json").read_text())
    assert summary["evaluated_on"] == "external" and summary["n"] > 300
    assert summary["splits"]["external"]["patients"] == 1


@pytest.mark.slow
@pytest.mark.shared_data
def test_predict_on_a_record_gives_one_row_per_beat(ecg_run, shared_data, run_cli):
    root, _ = ecg_run
    other = _excerpt(shared_data, OTHER_RECORDS, root / "predict")
    process = run_cli("predict", root / "run" / "bundle", other / "203.hea", "--out", root / "beats.csv")
    assert process.returncode == 0, process.stderr
    table = pd.read_csv(root / "beats.csv")
    assert set(table["prediction"]) <= {"N", "S", "V", "F", "Q"}
    np.testing.assert_allclose(table.filter(like="probability_").sum(axis=1), 1, atol=1e-5)
    assert (table["group"] == 203).all()


@pytest.mark.slow
@pytest.mark.shared_data
def test_streaming_a_real_record_gives_the_labels_of_predict(ecg_run, shared_data, run_cli):
    root, _ = ecg_run
    other = _excerpt(shared_data, OTHER_RECORDS, root / "stream", seconds=60)
    (other / "203.atr").unlink()  # as a monitor sees it: no annotations, R-peaks detected
    predicted = run_cli("predict", root / "run" / "bundle", other / "203.hea", "--out", root / "offline.csv")
    streamed = run_cli("stream", root / "run" / "bundle", other / "203.hea", "--chunk-seconds", "0.25", "--out", root / "streamed.csv", "-q")
    assert predicted.returncode == 0 and streamed.returncode == 0, predicted.stderr + streamed.stderr
    offline, online = pd.read_csv(root / "offline.csv"), pd.read_csv(root / "streamed.csv")
    assert len(online) == len(offline) > 60
    assert online["label"].tolist() == offline["prediction"].tolist()
    np.testing.assert_allclose(online["time"], offline["input"].str.split("@").str[1].str.rstrip("s").astype(float), atol=1e-3)
    assert "faster than real time" in streamed.stdout


def _cinc_subset(shared_data, folder, n=48):
    """The first ``n`` CinC 2017 records (links) with their v3 labels in a REFERENCE.csv."""
    source = shared_data / "cinc2017_af_subset" / "training2017"
    lines = (source / "REFERENCE-v3.csv").read_text().split()[:n]
    folder.mkdir(parents=True, exist_ok=True)
    for line in lines:
        name = line.split(",")[0]
        for suffix in (".hea", ".mat"):
            (folder / f"{name}{suffix}").symlink_to(source / f"{name}{suffix}")
    (folder / "REFERENCE.csv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.slow
@pytest.mark.shared_data
def test_train_on_labelled_af_records_classifies_fixed_windows(tmp_path, shared_data, run_cli):
    import yaml

    data = _cinc_subset(shared_data, tmp_path / "cinc")
    (tmp_path / "fast.yaml").write_text(FAST_CONFIG)
    process = run_cli("train", "--data", data, "--out", tmp_path / "run", "--config", tmp_path / "fast.yaml", "-q")
    assert process.returncode == 0, process.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["task"] == "multiclass" and set(metrics["classes"]) <= {"N", "A", "O", "~"}
    assert sum(metrics["splits"][part]["patients"] for part in ("train", "val", "test")) == 48  # the record is the group
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["data"]["unit"] == "window" and config["data"]["sampling_rate"] == 128.0 and config["data"]["window_seconds"] == 30
    assert config["model"]["name"] == metrics["training"]["model_selection"]["chosen"] in ("hist_gradient_boosting", "extra_trees", "minirocket", "cnn_rr")
    process = run_cli("predict", tmp_path / "run" / "bundle", data / "A00001.hea", "--out", tmp_path / "windows.csv")
    assert process.returncode == 0, process.stderr
    assert pd.read_csv(tmp_path / "windows.csv")["input"].tolist() == ["A00001@0.0s"]  # a 30-s record, one 30-s window


@pytest.mark.shared_data
def test_bonn_eeg_class_folders_read_as_labelled_windows(tmp_path, shared_data):
    import zipfile

    from medtorch.config import DataConfig
    from medtorch.data.signals import Signals

    with zipfile.ZipFile(shared_data / "bonn_eeg" / "Bonn_EEG_dataset.zip") as archive:
        for member in [m for m in archive.namelist() if m[-7:-4] in ("001", "002")]:  # two segments of each set
            archive.extract(member, tmp_path)
    records = Signals().read(tmp_path, DataConfig(record_sampling_rate=173.61))
    assert sorted(set(records.target)) == ["A_Z", "B_O", "C_N", "D_F", "E_S"]
    assert len(records) == 10 and len(set(records.groups)) == 10  # 23.6-s segments: one 23.5-s window each (their median length)
