"""Bundles: a readable folder that reproduces the model's predictions, and refuses tampering."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from medtorch.bundle import CONFIG_FILE, Bundle, load_bundle, save_bundle
from medtorch.config import DataConfig
from medtorch.data.base import get_modality
from medtorch.errors import BundleError
from medtorch.registry import create_model
from medtorch.tasks import infer_task
from medtorch.version import BUNDLE_FORMAT_VERSION

TARGET = "outcome"


def _fitted_parts(frame: pd.DataFrame):
    tabular = get_modality("tabular")
    records = tabular.read(frame, DataConfig(target=TARGET))
    preprocessor = tabular.preprocessor(DataConfig()).fit(records)
    return tabular, records, preprocessor, infer_task(records.target)


@pytest.fixture
def torch_bundle(clinical_frame) -> Bundle:
    torch.manual_seed(0)
    tabular, _, preprocessor, task = _fitted_parts(clinical_frame)
    kwargs = {**preprocessor.model_kwargs(), "out_features": 1, "hidden": [16]}
    model = create_model("mlp", **kwargs).eval()
    return Bundle(model, "mlp", kwargs, task, tabular, preprocessor, threshold=0.42, metadata={"note": "test"})


@pytest.fixture
def sklearn_bundle(clinical_frame) -> Bundle:
    tabular, records, preprocessor, task = _fitted_parts(clinical_frame)
    model = create_model("logistic_regression", task_type="binary", seed=0)
    model.fit(preprocessor.feature_matrix(records.inputs), task.encode(records.target).astype(int))
    return Bundle(model, "logistic_regression", {"task_type": "binary", "seed": 0}, task, tabular, preprocessor, threshold=0.3)


def test_bundle_folder_holds_a_readable_config_and_safetensors_weights(torch_bundle, tmp_path):
    path = save_bundle(torch_bundle, tmp_path / "bundle")
    assert sorted(p.name for p in path.iterdir()) == [CONFIG_FILE, "model.safetensors"]
    config = json.loads((path / CONFIG_FILE).read_text())
    assert config["format_version"] == BUNDLE_FORMAT_VERSION
    assert config["modality"] == "tabular"
    assert config["model"]["name"] == "mlp" and config["model"]["kind"] == "torch"
    assert config["model"]["kwargs"]["hidden"] == [16]
    assert config["task"] == {"type": "binary", "classes": [0, 1], "positive": 1}
    assert config["threshold"] == 0.42
    assert config["preprocessing"]["feature_names"] == torch_bundle.preprocessor.feature_names
    assert len(config["model"]["sha256"]) == 64


def test_torch_bundle_round_trip_gives_identical_predictions(torch_bundle, clinical_frame, tmp_path):
    loaded = load_bundle(save_bundle(torch_bundle, tmp_path / "bundle"))
    features = clinical_frame.drop(columns=TARGET)
    np.testing.assert_array_equal(torch_bundle.predict(features), loaded.predict(features))
    assert loaded.threshold == 0.42
    assert loaded.task.positive == 1
    assert loaded.metadata == {"note": "test"}


def test_sklearn_bundle_round_trip_gives_identical_predictions(sklearn_bundle, clinical_frame, tmp_path):
    path = save_bundle(sklearn_bundle, tmp_path / "bundle")
    assert (path / "model.skops").is_file()
    loaded = load_bundle(path)
    features = clinical_frame.drop(columns=TARGET)
    pd.testing.assert_frame_equal(sklearn_bundle.predict(features), loaded.predict(features))
    assert loaded.kind == "sklearn"


def test_predict_reads_a_csv_and_gives_one_row_per_input(torch_bundle, make_frame, tmp_path):
    path = tmp_path / "new.csv"
    make_frame(n=25, seed=5, rows_per_patient=5).drop(columns=TARGET).to_csv(path, index=False)
    table = torch_bundle.predict(path)
    assert list(table.columns) == ["group", "probability_1", "prediction"]
    assert len(table) == 25
    assert table["group"].iloc[0] == "P0000"
    expected = np.where(table["probability_1"] >= 0.42, 1, 0)
    np.testing.assert_array_equal(table["prediction"].to_numpy(), expected)


def test_text_labels_survive_the_round_trip(clinical_frame, tmp_path):
    frame = clinical_frame.assign(**{TARGET: np.where(clinical_frame[TARGET] == 1, "malignant", "benign")})
    tabular, _, preprocessor, task = _fitted_parts(frame)
    kwargs = {**preprocessor.model_kwargs(), "out_features": 1}
    bundle = Bundle(create_model("mlp", **kwargs), "mlp", kwargs, task, tabular, preprocessor)
    loaded = load_bundle(save_bundle(bundle, tmp_path / "bundle"))
    assert loaded.task.classes == ["benign", "malignant"]
    table = loaded.predict(frame.drop(columns=TARGET))
    assert "probability_malignant" in table.columns
    assert set(table["prediction"]) <= {"benign", "malignant"}


def test_tampered_weights_are_refused(torch_bundle, tmp_path):
    path = save_bundle(torch_bundle, tmp_path / "bundle")
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match the hash .* the bundle was altered"):
        load_bundle(path)


def test_weights_named_for_another_version_of_the_model_are_refused_in_one_line(torch_bundle, tmp_path):
    from safetensors.torch import load_file, save_file

    from medtorch.bundle import _sha256

    path = save_bundle(torch_bundle, tmp_path / "bundle")
    weights = path / "model.safetensors"
    save_file({f"renamed.{name}": tensor for name, tensor in load_file(str(weights)).items()}, str(weights))
    config = json.loads((path / CONFIG_FILE).read_text())
    config["model"]["sha256"] = _sha256(weights)  # an intact file, written by a medtorch whose model named its layers otherwise
    (path / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(BundleError, match="weights do not fit this medtorch's .*retrain it") as refused:
        load_bundle(path)
    assert "\n" not in str(refused.value)


def test_tampered_sklearn_model_is_refused(sklearn_bundle, tmp_path):
    path = save_bundle(sklearn_bundle, tmp_path / "bundle")
    with (path / "model.skops").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match="altered"):
        load_bundle(path)


def test_folder_without_medtorch_json_is_refused(torch_bundle, tmp_path):
    path = save_bundle(torch_bundle, tmp_path / "bundle")
    (path / CONFIG_FILE).unlink()
    with pytest.raises(BundleError, match=f"is not a medtorch bundle \\(no {CONFIG_FILE}\\)"):
        load_bundle(path)


def test_nonexistent_folder_is_refused(tmp_path):
    with pytest.raises(BundleError, match="not a medtorch bundle"):
        load_bundle(tmp_path / "nowhere")


def test_missing_weights_file_is_refused(torch_bundle, tmp_path):
    path = save_bundle(torch_bundle, tmp_path / "bundle")
    (path / "model.safetensors").unlink()
    with pytest.raises(BundleError, match="model.safetensors is missing"):
        load_bundle(path)


def test_damaged_medtorch_json_is_refused(torch_bundle, tmp_path):
    path = save_bundle(torch_bundle, tmp_path / "bundle")
    (path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(BundleError, match="is damaged"):
        load_bundle(path)


def test_bundle_from_a_newer_medtorch_asks_for_an_upgrade(torch_bundle, tmp_path):
    path = save_bundle(torch_bundle, tmp_path / "bundle")
    config = json.loads((path / CONFIG_FILE).read_text())
    config["format_version"] = BUNDLE_FORMAT_VERSION + 1
    (path / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(BundleError, match="upgrade medtorch"):
        load_bundle(path)


@pytest.mark.parametrize(("smuggled", "name"), [(os.system, "system"), (eval, "builtins.eval"), (load_bundle, "medtorch.bundle.load_bundle")])
def test_skops_file_with_a_non_sklearn_type_is_refused(sklearn_bundle, tmp_path, smuggled, name):
    """A scikit-learn pipeline smuggling a function in: its hash is valid, its types are not (a builtin or
    a medtorch function no more than ``os.system``: only MiniRocket's two classes are trusted by name)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    sklearn_bundle.model = make_pipeline(FunctionTransformer(func=smuggled), sklearn_bundle.model)
    path = save_bundle(sklearn_bundle, tmp_path / "bundle")
    with pytest.raises(BundleError, match=rf"contains object types outside scikit-learn/numpy: .*{name}"):
        load_bundle(path)


def _bundle_for(frame: pd.DataFrame, data_config: DataConfig) -> Bundle:
    torch.manual_seed(0)
    tabular = get_modality("tabular")
    records = tabular.read(frame, data_config)
    preprocessor = tabular.preprocessor(data_config).fit(records)
    kwargs = {**preprocessor.model_kwargs(), "out_features": 1, "hidden": [8]}
    model = create_model("mlp", **kwargs).eval()
    return Bundle(model, "mlp", kwargs, infer_task(records.target), tabular, preprocessor)


def test_prediction_one_hot_matches_training_for_declared_categorical_codes(clinical_frame, tmp_path):
    """``stage`` holds integer codes declared categorical; a prediction file has no config, and
    must still get the one-hot columns the model was trained on (not all zeros)."""
    frame = clinical_frame.assign(stage=np.tile([1, 2, 3], 100))
    config = DataConfig(target=TARGET, categorical_columns=["stage"])
    bundle = load_bundle(save_bundle(_bundle_for(frame, config), tmp_path / "bundle"))
    training_matrix = bundle.preprocessor.feature_matrix(get_modality("tabular").read(frame, config).inputs)
    path = tmp_path / "new.csv"
    frame.drop(columns=TARGET).to_csv(path, index=False)
    new_inputs = get_modality("tabular").read(path, DataConfig(), with_target=False).inputs
    np.testing.assert_array_equal(bundle.preprocessor.feature_matrix(new_inputs), training_matrix)


def test_prediction_one_hot_matches_training_for_mostly_numeric_categories(clinical_frame, tmp_path):
    """``grade`` is inferred categorical in training (a quarter of its values are text); a new
    batch that happens to hold only the numeric codes must map to the same one-hot columns."""
    grades = np.tile(["1", "2", "3", "unknown"], 75)
    frame = clinical_frame.assign(grade=grades)
    config = DataConfig(target=TARGET)
    bundle = load_bundle(save_bundle(_bundle_for(frame, config), tmp_path / "bundle"))
    numeric_codes = frame[frame["grade"] != "unknown"].drop(columns=TARGET)
    path = tmp_path / "new.csv"
    numeric_codes.to_csv(path, index=False)
    expected = bundle.predict_scores(get_modality("tabular").read(frame, config).inputs)[(grades != "unknown")]
    np.testing.assert_allclose(bundle.predict(path)["probability_1"].to_numpy(), expected, rtol=1e-6)


def test_prediction_batch_whose_text_feature_is_all_different_is_still_predicted(clinical_frame, tmp_path):
    """Whether a column is a feature was decided in training; a new batch of 30 patients that
    happen to have 30 different ``ward`` values must not lose the column as an 'identifier'."""
    frame = clinical_frame.assign(ward=np.tile(["A", "B", "C"], 100))
    bundle = _bundle_for(frame, DataConfig(target=TARGET))
    new = frame.drop(columns=TARGET).head(30).assign(ward=[f"W{i:02d}" for i in range(30)])
    path = tmp_path / "new.csv"
    new.to_csv(path, index=False)
    assert len(bundle.predict(path)) == 30


def test_calibration_and_conformal_sets_travel_with_the_bundle(torch_bundle, clinical_frame, tmp_path):
    from medtorch.evaluation.calibration import Calibrator
    from medtorch.evaluation.conformal import ConformalPredictor

    torch_bundle.calibrator = Calibrator("temperature", "binary", {"temperature": 2.0})
    torch_bundle.conformal = ConformalPredictor(coverage=0.9, task_type="binary", quantile=0.3, n_calibration=100)
    features = clinical_frame.drop(columns=TARGET)
    loaded = load_bundle(save_bundle(torch_bundle, tmp_path / "bundle"))
    raw = loaded.predict_scores(features, calibrated=False)
    np.testing.assert_allclose(loaded.predict_scores(features), 1 / (1 + np.exp(-np.log(raw / (1 - raw)) / 2)), atol=1e-6)
    table = loaded.predict(features)
    p = table["probability_1"].to_numpy()
    expected_sets = [("0|" if 1 - p_ >= 0.7 else "") + ("1" if p_ >= 0.7 else "") for p_ in p]
    assert table["prediction_set"].tolist() == [s.rstrip("|") for s in expected_sets]
    np.testing.assert_array_equal(table["uncertain"], [len(s.rstrip("|").split("|")) != 1 or s == "" for s in expected_sets])


def test_a_bundle_without_calibration_predicts_the_model_probabilities(torch_bundle, clinical_frame):
    features = clinical_frame.drop(columns=TARGET)
    np.testing.assert_array_equal(torch_bundle.predict_scores(features), torch_bundle.predict_scores(features, calibrated=False))
    assert "prediction_set" not in torch_bundle.predict(features)
