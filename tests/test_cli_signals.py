"""`medtorch train` / `evaluate` / `predict` on ECG records (excerpts of real MIT-BIH records, cut at test time)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

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
    assert metrics["task"] == "multiclass" and metrics["model"] == "cnn_rr"
    assert set(metrics["classes"]) <= {"N", "S", "V", "F", "Q"} and "V" in metrics["classes"]
    assert {"sensitivity", "ppv", "f1"} <= set(metrics["per_class"]["V"])  # AAMI Se and +P
    assert len(metrics["operating_point"]["matrix"]) == len(metrics["classes"])


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
