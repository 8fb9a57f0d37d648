"""The pipeline end to end through the Python API, for every task type."""

import json

import numpy as np
import pandas as pd
import pytest

import medtorch

FAST = {"model": {"name": "mlp"}, "train": {"epochs": 4}, "evaluate": {"bootstrap": 30}}


def table(n: int = 240, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    frame["ward"] = rng.choice(["north", "south"], n)
    return frame


def test_multiclass_run_reports_macro_metrics_and_predicts_one_of_the_classes(tmp_path):
    frame = table()
    frame["stage"] = np.select([frame["a"] < -0.5, frame["a"] > 0.5], ["early", "late"], "middle")
    run = medtorch.train(frame, target="stage", out=tmp_path / "run", overrides=FAST, progress=False)
    assert run.metrics["task"] == "multiclass"
    assert {"auroc", "accuracy", "balanced_accuracy", "f1_macro"} <= set(run.metrics["metrics"])
    assert run.metrics["metrics"]["auroc"]["value"] > 0.8
    predictions = medtorch.load_bundle(tmp_path / "run" / "bundle").predict(frame.drop(columns="stage"))
    assert set(predictions["prediction"]) <= {"early", "middle", "late"}
    np.testing.assert_allclose(predictions.filter(like="probability_").sum(axis=1), 1, atol=1e-5)


def test_multilabel_run_from_several_target_columns(tmp_path):
    frame = table()
    frame["diabetes"] = (frame["a"] > 0).astype(int)
    frame["hypertension"] = (frame["b"] > 0).astype(int)
    run = medtorch.train(frame, target=["diabetes", "hypertension"], out=tmp_path / "run", overrides=FAST, progress=False)
    assert run.metrics["task"] == "multilabel"
    assert run.metrics["metrics"]["auroc"]["value"] > 0.8
    predictions = run.bundle.predict(frame.drop(columns=["diabetes", "hypertension"]))
    assert {"prediction_diabetes", "prediction_hypertension"} <= set(predictions.columns)


def test_regression_run_predicts_in_the_targets_units(tmp_path):
    frame = table()
    frame["systolic_bp"] = 120 + 15 * frame["a"] + np.random.default_rng(1).normal(scale=3, size=len(frame))
    run = medtorch.train(frame, target="systolic_bp", out=tmp_path / "run", overrides=FAST, progress=False)
    assert run.metrics["task"] == "regression"
    assert run.metrics["metrics"]["r2"]["value"] > 0.5
    predictions = medtorch.load_bundle(tmp_path / "run" / "bundle").predict(frame)
    assert predictions["prediction"].mean() == pytest.approx(120, abs=8)


def test_patient_ids_keep_each_patient_in_one_split_and_bootstrap_by_patient(tmp_path):
    frame = table(300)
    frame["patient_id"] = np.repeat([f"P{i:03d}" for i in range(100)], 3)
    frame["y"] = (frame["a"] > 0).astype(int)
    run = medtorch.train(frame, target="y", out=tmp_path / "run", overrides=FAST, progress=False)
    splits = run.metrics["splits"]
    assert splits["train"]["patients"] + splits["val"]["patients"] + splits["test"]["patients"] == 100
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["n"] == splits["test"]["n"]


def test_predefined_split_column_is_respected(tmp_path):
    frame = table(200)
    frame["y"] = (frame["b"] > 0).astype(int)
    frame["split"] = ["train"] * 120 + ["val"] * 40 + ["test"] * 40
    overrides = {**FAST, "data": {"split_column": "split"}}
    run = medtorch.train(frame, target="y", out=tmp_path / "run", overrides=overrides, progress=False)
    assert [run.metrics["splits"][k]["n"] for k in ("train", "val", "test")] == [120, 40, 40]


def test_predefined_split_stays_aligned_when_unlabeled_rows_use_a_column_missing_code(tmp_path):
    frame = table(200)
    frame["y"] = (frame["b"] > 0).astype(int)
    frame.loc[::10, "y"] = -1  # "not assessed": 20 rows, 12 of them in train
    frame["split"] = ["train"] * 120 + ["val"] * 40 + ["test"] * 40
    overrides = {**FAST, "data": {"split_column": "split", "column_missing_values": {"y": [-1]}}}
    run = medtorch.train(frame, target="y", out=tmp_path / "run", overrides=overrides, progress=False)
    assert [run.metrics["splits"][k]["n"] for k in ("train", "val", "test")] == [108, 36, 36]
