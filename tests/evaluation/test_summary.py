"""The clinical summary of a bundle on labelled records, and the run folder's metrics.json."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score

import medtorch
from medtorch.evaluation.summary import CURVE_POINTS, calibration_numbers, clinical_summary, conformal_summary, operating_point, roc_pr_curves
from medtorch.tasks import BinaryTask, MulticlassTask, MultilabelTask

# a linear model keeps the three runs to a second or two each
FAST = {"model": {"name": "logistic_regression"}, "train": {"epochs": 3}, "evaluate": {"bootstrap": 50, "baselines": False}}


def _frame(n: int, seed: int, task: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    noise = rng.normal(scale=0.7, size=n)
    if task == "binary":
        frame["sex"] = rng.choice(["F", "M"], n)
        frame["y"] = (frame["a"] + 0.5 * frame["b"] + noise > 0).astype(int)
    elif task == "multiclass":
        frame["y"] = np.select([frame["a"] + noise < -0.5, frame["a"] + noise > 0.5], ["early", "late"], "middle")
    else:
        frame["y"] = 120 + 15 * frame["a"] + 5 * noise
    return frame


def _train(tmp_path_factory, task: str, **data):
    out = tmp_path_factory.mktemp(task) / "run"
    overrides = {**FAST, "data": data} if data else FAST
    run = medtorch.train(_frame(240, 0, task), target="y", out=out, overrides=overrides, progress=False)
    records = run.bundle.read_labeled(_frame(150, 1, task))
    summary = clinical_summary(run.bundle, records, n_bootstrap=100)
    return run, records, summary


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    return _train(tmp_path_factory, "binary", attribute_columns=["sex"])


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory):
    return _train(tmp_path_factory, "multiclass")


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    return _train(tmp_path_factory, "regression")


def _labels(bundle, records) -> np.ndarray:
    return bundle.task.encode(records.target)


# --------------------------------------------------------------------------- binary
def test_binary_summary_has_every_section(binary):
    run, records, summary = binary
    sections = {"n", "threshold", "metrics", "curves", "operating_point", "calibration", "conformal", "subgroups", "decision_curve"}
    assert sections <= set(summary)
    assert "per_class" not in summary
    assert summary["n"] == len(records) == 150
    assert summary["threshold"] == run.bundle.threshold
    auroc = summary["metrics"]["auroc"]
    low, high = auroc["ci"]
    assert low <= auroc["value"] <= high
    assert auroc["value"] > 0.8


def test_binary_metrics_are_computed_on_the_recalibrated_scores(binary):
    run, records, summary = binary
    y = _labels(run.bundle, records)
    scores = run.bundle.predict_scores(records.inputs)
    assert summary["metrics"]["auroc"]["value"] == pytest.approx(roc_auc_score(y, scores))
    called = scores >= run.bundle.threshold
    assert summary["metrics"]["sensitivity"]["value"] == pytest.approx(np.mean(called[y == 1]))
    assert summary["metrics"]["brier"]["value"] == pytest.approx(np.mean((scores - y) ** 2))


def test_binary_operating_point_is_sklearns_confusion_matrix_at_the_bundle_threshold(binary):
    run, records, summary = binary
    point = summary["operating_point"]
    y = _labels(run.bundle, records)
    scores = run.bundle.predict_scores(records.inputs)
    expected = confusion_matrix(y, (scores >= run.bundle.threshold).astype(int), labels=[0, 1])
    assert point["matrix"] == expected.tolist()
    assert np.array(point["matrix"]).shape == (2, 2)
    assert np.sum(point["matrix"]) == summary["n"]
    assert np.sum(point["matrix"][1]) == y.sum()  # rows are the truth
    assert point["labels"] == ["0", "1"]
    assert point["threshold"] == run.bundle.threshold


def test_binary_calibration_before_and_after(binary):
    run, records, summary = binary
    calibration = summary["calibration"]
    assert calibration["method"] == run.bundle.calibrator.method
    for stage in ("before", "after"):
        assert set(calibration[stage]) == {"ece", "brier", "slope", "intercept"}
        for entry in calibration[stage].values():
            low, high = entry["ci"]
            assert low < high  # (ECE is biased upwards under resampling, so its value may sit below its interval)
        brier = calibration[stage]["brier"]
        assert brier["ci"][0] <= brier["value"] <= brier["ci"][1]
        assert 0 <= calibration[stage]["ece"]["value"] <= 1
    y = _labels(run.bundle, records)
    raw = run.bundle.predict_scores(records.inputs, calibrated=False)
    calibrated = run.bundle.predict_scores(records.inputs)
    assert calibration["before"]["brier"]["value"] == pytest.approx(np.mean((raw - y) ** 2))
    assert calibration["after"]["brier"]["value"] == pytest.approx(np.mean((calibrated - y) ** 2))
    assert set(calibration["reliability"]) == {"before", "after"}


def test_binary_conformal_coverage_against_its_target(binary):
    run, records, summary = binary
    conformal = summary["conformal"]
    assert conformal["target"] == 0.9
    assert 0 <= conformal["coverage"] <= 1
    assert conformal["coverage"] > 0.75  # a 90% set on a fresh sample of 150
    assert sum(conformal["sizes"].values()) == pytest.approx(1)
    assert set(conformal["sizes"]) == {"0", "1", "2"}
    assert 0 <= conformal["mean_size"] <= 2
    # the same numbers, straight from the bundle's conformal sets
    y = _labels(run.bundle, records)
    sets = run.bundle.conformal.prediction_sets(run.bundle.predict_scores(records.inputs))
    assert conformal["coverage"] == pytest.approx(np.mean(np.asarray(sets, dtype=bool)[np.arange(len(y)), y.astype(int)]))
    assert conformal_summary(run.bundle, y, run.bundle.predict_scores(records.inputs)) == conformal


def test_binary_curves_and_decision_curve(binary):
    _, _, summary = binary
    roc = summary["curves"]["roc"]
    assert roc["fpr"][0] == 0 and roc["tpr"][0] == 0
    assert roc["fpr"][-1] == 1 and roc["tpr"][-1] == 1
    assert np.all(np.diff(roc["fpr"]) >= 0)
    pr = summary["curves"]["pr"]
    assert len(pr["recall"]) == len(pr["precision"])
    assert all(0 <= v <= 1 for v in pr["precision"] + pr["recall"])
    assert isinstance(summary["decision_curve"], dict) and summary["decision_curve"]


def test_binary_subgroups_follow_the_records_attributes(binary):
    _, records, summary = binary
    entries = summary["subgroups"]["sex"]
    assert {e["group"] for e in entries} == {"F", "M"}
    assert sum(e["n"] for e in entries) == len(records)


# --------------------------------------------------------------------------- multiclass
def test_multiclass_summary_has_per_class_metrics_for_every_class(multiclass):
    run, records, summary = multiclass
    assert set(summary["per_class"]) == {"early", "late", "middle"}
    y = _labels(run.bundle, records)
    for k, name in enumerate(run.bundle.task.classes):
        entry = summary["per_class"][name]
        assert {"auroc", "sensitivity", "specificity", "ppv", "f1", "support"} <= set(entry)
        assert entry["support"]["value"] == np.sum(y == k)
    assert sum(e["support"]["value"] for e in summary["per_class"].values()) == summary["n"]
    assert "decision_curve" not in summary


def test_multiclass_curves_are_one_per_class_against_the_rest(multiclass):
    run, records, summary = multiclass
    y = _labels(run.bundle, records)
    scores = run.bundle.predict_scores(records.inputs)
    curves = summary["curves"]["per_class"]
    assert list(curves) == [str(c) for c in run.bundle.task.classes]
    for k, name in enumerate(run.bundle.task.classes):
        roc = curves[name]["roc"]
        assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0, 0, 1, 1)
        # 150 samples: no thinning, so the area under the stored points is the class's AUROC
        assert np.trapezoid(roc["tpr"], roc["fpr"]) == pytest.approx(roc_auc_score(y == k, scores[:, k]), abs=1e-3)
        assert summary["per_class"][name]["auroc"]["value"] == pytest.approx(roc_auc_score(y == k, scores[:, k]), abs=1e-3)


def test_per_class_curves_leave_out_a_label_the_set_lacks_and_thin_long_curves():
    task = MultilabelTask(["flu", "covid", "none_seen"])
    rng = np.random.default_rng(0)
    y = np.column_stack([rng.integers(0, 2, 5000), rng.integers(0, 2, 5000), np.zeros(5000, int)])
    curves = roc_pr_curves(task, y, rng.random((5000, 3)))["per_class"]
    assert list(curves) == ["flu", "covid"]
    assert all(len(curve["roc"]["fpr"]) == CURVE_POINTS and len(curve["pr"]["recall"]) == CURVE_POINTS for curve in curves.values())
    assert roc_pr_curves(MulticlassTask(["a", "b", "c"]), np.zeros(10), rng.random((10, 3))) == {}


def test_multiclass_operating_point_is_the_argmax_confusion_matrix(multiclass):
    run, records, summary = multiclass
    point = summary["operating_point"]
    y = _labels(run.bundle, records)
    scores = run.bundle.predict_scores(records.inputs)
    assert point["labels"] == [str(c) for c in run.bundle.task.classes]
    assert point["matrix"] == confusion_matrix(y, scores.argmax(axis=1), labels=[0, 1, 2]).tolist()
    assert np.array(point["matrix"]).shape == (3, 3)
    assert np.sum(point["matrix"]) == summary["n"]
    assert np.trace(point["matrix"]) / summary["n"] == pytest.approx(summary["metrics"]["accuracy"]["value"])


def test_multiclass_calibration_has_no_slope(multiclass):
    _, _, summary = multiclass
    for stage in ("before", "after"):
        assert set(summary["calibration"][stage]) == {"ece", "brier"}
    assert 0 <= summary["conformal"]["coverage"] <= 1
    assert summary["conformal"]["target"] == 0.9
    assert set(summary["conformal"]["sizes"]) == {"0", "1", "2", "3"}


# --------------------------------------------------------------------------- regression
def test_regression_summary_has_intervals_and_no_calibration(regression):
    run, records, summary = regression
    assert "calibration" not in summary
    assert "operating_point" not in summary
    assert "per_class" not in summary
    assert {"mae", "rmse", "r2"} <= set(summary["metrics"])
    conformal = summary["conformal"]
    assert set(conformal) == {"target", "coverage", "mean_width"}
    assert conformal["target"] == 0.9
    assert 0 <= conformal["coverage"] <= 1
    scores = run.bundle.predict_scores(records.inputs)
    low, high = run.bundle.conformal.intervals(scores)
    y = np.asarray(records.target, dtype=float)
    assert conformal["mean_width"] == pytest.approx(np.mean(high - low))
    assert conformal["mean_width"] > 0
    assert conformal["coverage"] == pytest.approx(np.mean((low <= y) & (y <= high)))
    assert summary["metrics"]["mae"]["value"] == pytest.approx(np.mean(np.abs(scores - y)))


# --------------------------------------------------------------------------- the helpers on hand-made numbers
def test_operating_point_on_hand_made_scores():
    task = BinaryTask(["healthy", "sick"], "sick")
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    p = np.array([0.9, 0.45, 0.3, 0.5, 0.41, 0.2, 0.1])
    at_040 = operating_point(task, y, p, 0.4)
    assert at_040["labels"] == ["healthy", "sick"]
    assert at_040["matrix"] == [[2, 2], [1, 2]]  # TN FP / FN TP
    assert operating_point(task, y, p, None)["matrix"] == [[3, 1], [2, 1]]  # 0.5 when no threshold


def test_multiclass_operating_point_on_hand_made_scores():
    task = MulticlassTask(["a", "b", "c"])
    y = np.array([0, 1, 2, 2])
    p = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.5, 0.3, 0.2]])
    assert operating_point(task, y, p, None)["matrix"] == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]


def test_calibration_numbers_on_hand_made_scores():
    task = BinaryTask([0, 1], 1)
    y = np.array([1, 0, 1, 0])
    p = np.array([0.8, 0.2, 0.6, 0.4])
    numbers = calibration_numbers(task, y, p)
    assert numbers["brier"] == pytest.approx((0.04 + 0.04 + 0.16 + 0.16) / 4)
    assert {"ece", "slope", "intercept"} <= set(numbers)
    multi = calibration_numbers(MulticlassTask(["a", "b"]), np.array([0, 1]), np.array([[0.9, 0.1], [0.3, 0.7]]))
    assert set(multi) == {"ece", "brier"}
    assert multi["brier"] == pytest.approx((0.01 + 0.01 + 0.09 + 0.09) / 2)


# --------------------------------------------------------------------------- the run folder
def test_run_metrics_json_has_checks_model_card_and_subgroups(binary):
    run, _, _ = binary
    written = json.loads((run.out_dir / "metrics.json").read_text())
    assert {"checks", "model_card", "subgroups"} <= set(written)
    assert list(written["subgroups"]) == ["sex"]
    assert sum(e["n"] for e in written["subgroups"]["sex"]) == written["n"]
    assert written["checks"]["warnings"] == []
    assert written["checks"]["exact_duplicates"]["test-train"] == 0
    card = written["model_card"]
    assert card["task"] == "binary"
    assert card["data"]["n"] == written["n"]
    assert any("external validation" in line for line in card["limitations"])
    operating = written["operating_point"]
    assert np.sum(operating["matrix"]) == written["n"] == written["splits"]["test"]["n"]


def test_run_without_attribute_columns_has_no_subgroups(multiclass):
    run, _, _ = multiclass
    written = json.loads((run.out_dir / "metrics.json").read_text())
    assert "subgroups" not in written
    assert {"checks", "model_card"} <= set(written)
    assert any("No subgroup columns" in line for line in written["model_card"]["limitations"])
