"""Integrated gradients for tabular bundles, on tables whose answer is known."""

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import medtorch
from medtorch.errors import ConfigError
from medtorch.explain.attributions import feature_attributions, global_importance, importance_figure, patient_figure

FAST = {"model": {"name": "mlp"}, "train": {"epochs": 5}, "evaluate": {"bootstrap": 0, "baselines": False}}
COLUMNS = ["signal", "noise1", "noise2", "site"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def signal_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """y depends on ``signal`` only; ``noise1`` (10% missing), ``noise2`` and ``site`` are unrelated to it."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "signal": rng.normal(size=n),
            "noise1": rng.normal(size=n),
            "noise2": rng.normal(size=n),
            "site": rng.choice(["north", "south", "east"], n),
        }
    )
    frame.loc[rng.random(n) < 0.1, "noise1"] = np.nan
    frame["y"] = (3 * frame["signal"] + rng.normal(scale=0.5, size=n) > 0).astype(int)
    return frame


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return signal_table()


@pytest.fixture(scope="module")
def bundle(frame, tmp_path_factory):
    out = tmp_path_factory.mktemp("signal") / "run"
    return medtorch.train(frame, target="y", out=out, overrides=FAST, progress=False).bundle


@pytest.fixture(scope="module")
def attributions(bundle, frame) -> pd.DataFrame:
    return feature_attributions(bundle, frame.drop(columns="y"))


def logits(model: torch.nn.Module, features: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(features)).numpy()


def test_the_column_that_decides_the_label_is_the_most_important_by_far(attributions):
    importance = global_importance(attributions)
    assert importance.index[0] == "signal"
    assert importance.is_monotonic_decreasing
    assert importance["signal"] > 4 * importance.iloc[1]


def test_attributions_add_up_to_the_logit_minus_the_logit_at_the_zero_baseline(bundle, frame):
    rows = frame.drop(columns="y").iloc[:120]
    attributions = feature_attributions(bundle, rows, n_steps=256)
    features = bundle.preprocessor.feature_matrix(rows)
    gap = logits(bundle.model, features)[:, 0] - logits(bundle.model, np.zeros_like(features[:1]))[0, 0]
    np.testing.assert_allclose(attributions.sum(axis=1).to_numpy(), gap, atol=1e-2)
    assert np.abs(gap).max() > 1  # the check above is not trivially about zeros


def test_one_hot_and_missing_indicator_features_come_back_as_the_input_columns(bundle, frame, attributions):
    from captum.attr import IntegratedGradients

    names = bundle.preprocessor.feature_names
    assert "noise1_missing" in names and "site=north" in names
    assert list(attributions.columns) == COLUMNS
    assert attributions.shape == (len(frame), len(COLUMNS))
    assert np.isfinite(attributions.to_numpy()).all()
    features = torch.from_numpy(bundle.preprocessor.feature_matrix(frame.drop(columns="y")))
    raw = IntegratedGradients(bundle.model).attribute(features, torch.zeros_like(features), target=0, n_steps=32)
    raw = pd.DataFrame(raw.detach().numpy(), columns=names)
    expected = {
        "signal": raw["signal"],
        "noise1": raw["noise1"] + raw["noise1_missing"],
        "noise2": raw["noise2"],
        "site": raw[[n for n in names if n.startswith("site=")]].sum(axis=1),
    }
    for column, values in expected.items():
        np.testing.assert_allclose(attributions[column].to_numpy(), values.to_numpy(), rtol=1e-3, atol=1e-5)
    missing = frame["noise1"].isna().to_numpy()
    assert (raw.loc[missing, "noise1_missing"].abs() > 0).any()  # so the indicator's share matters above


def test_a_table_file_gives_the_same_attributions_and_the_model_stays_in_eval_mode(bundle, frame, attributions, tmp_path):
    path = tmp_path / "new.csv"
    frame.iloc[:50].to_csv(path, index=False)  # the target column in the file is ignored
    from_file = feature_attributions(bundle, path)
    np.testing.assert_allclose(from_file.to_numpy(), attributions.iloc[:50].to_numpy(), rtol=1e-4, atol=1e-5)
    assert not bundle.model.training


def test_multiclass_explains_the_predicted_class_or_the_class_asked_for(tmp_path):
    rng = np.random.default_rng(1)
    table = pd.DataFrame({"a": rng.normal(size=240), "b": rng.normal(size=240), "ward": rng.choice(["x", "y"], 240)})
    table["stage"] = np.select([table["a"] < -0.5, table["a"] > 0.5], ["early", "late"], "middle")
    bundle = medtorch.train(table, target="stage", out=tmp_path / "run", overrides=FAST, progress=False).bundle
    rows = table.drop(columns="stage").iloc[:60]
    predicted = feature_attributions(bundle, rows)
    late = feature_attributions(bundle, rows, target="late", n_steps=256)
    assert predicted.shape == late.shape == (60, 3)
    assert np.isfinite(predicted.to_numpy()).all() and np.isfinite(late.to_numpy()).all()
    index = bundle.task.classes.index("late")
    features = bundle.preprocessor.feature_matrix(rows)
    gap = logits(bundle.model, features)[:, index] - logits(bundle.model, np.zeros_like(features[:1]))[0, index]
    np.testing.assert_allclose(late.sum(axis=1).to_numpy(), gap, atol=1e-2)
    assert not np.allclose(predicted.to_numpy(), late.to_numpy())
    with pytest.raises(ConfigError, match="class 'stage4' is not one of"):
        feature_attributions(bundle, rows, target="stage4")


def test_figures_are_png_bytes(attributions, frame):
    assert importance_figure(global_importance(attributions)).startswith(b"\x89PNG")
    row = frame.drop(columns="y").iloc[0]
    assert patient_figure(attributions.iloc[0], row, title="patient 0: predicted 1").startswith(b"\x89PNG")


def test_scikit_learn_and_image_bundles_are_refused_with_one_line(frame, bundle, tmp_path):
    overrides = {**FAST, "model": {"name": "logistic_regression"}}
    sklearn_bundle = medtorch.train(frame, target="y", out=tmp_path / "run", overrides=overrides, progress=False).bundle
    with pytest.raises(ConfigError, match="scikit-learn") as error:
        feature_attributions(sklearn_bundle, frame.drop(columns="y"))
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="tabular bundles"):
        feature_attributions(replace(bundle, modality=SimpleNamespace(name="image")), frame)
