"""The model registry: every registered model builds, trains a step, and survives a bundle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from medtorch.bundle import Bundle, load_bundle, save_bundle
from medtorch.data.base import Records, get_modality
from medtorch.errors import ConfigError
from medtorch.registry import create_model, get_model_entry, list_models, register_model
from medtorch.tasks import BinaryTask, MulticlassTask

TORCH_TABULAR = list_models(modality="tabular", kind="torch")
SKLEARN = list_models(modality="any", kind="sklearn")  # on any feature matrix; minirocket reads signal samples (tests/models/test_rocket.py)
LEARNERS = [name for name in SKLEARN if name != "prior"]  # the prior baseline learns no features, by design


def _numeric_frame(n: int = 8, width: int = 5, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, width)), columns=[f"x{i}" for i in range(width)])


def test_tabular_registry_lists_the_built_in_models():
    assert {"mlp", "resmlp", "ft_transformer", "tabm"} <= set(TORCH_TABULAR)
    assert {"logistic_regression", "hist_gradient_boosting"} <= set(SKLEARN)


def test_listing_by_kind_partitions_the_registry():
    everything = set(list_models())
    assert set(list_models(kind="torch")) | set(list_models(kind="sklearn")) == everything
    assert not set(list_models(kind="torch")) & set(list_models(kind="sklearn"))


def test_tabm_is_registered_and_is_the_tabular_default():
    from medtorch.data.base import get_modality

    assert get_modality("tabular").default_model in TORCH_TABULAR


@pytest.mark.parametrize("name", TORCH_TABULAR)
def test_torch_model_forward_gives_one_output_row_per_input(name):
    torch.manual_seed(0)
    model = create_model(name, in_features=5, out_features=3).eval()
    output = model(torch.randn(8, 5))
    assert output.shape == (8, 3)
    assert torch.isfinite(output).all()


@pytest.mark.parametrize("name", TORCH_TABULAR)
def test_torch_model_training_output_has_the_batch_and_output_widths(name):
    """In training mode a model that trains ensemble members (TabM) returns ``(batch, k, out)``."""
    model = create_model(name, in_features=5, out_features=3).train()
    output = model(torch.randn(8, 5))
    if getattr(model, "trains_members", False):
        assert output.shape == (8, model.k, 3)
    else:
        assert output.shape == (8, 3)


@pytest.mark.parametrize("name", TORCH_TABULAR)
def test_torch_model_backward_gives_finite_gradients_for_every_parameter(name):
    torch.manual_seed(0)
    model = create_model(name, in_features=5, out_features=1).train()
    output = model(torch.randn(8, 5))
    target = torch.rand(8).round().reshape(8, *([1] * (output.dim() - 1))).expand_as(output)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(output, target)
    loss.backward()
    parameters = dict(model.named_parameters())
    assert parameters, f"{name} has no parameters"
    for parameter_name, parameter in parameters.items():
        assert parameter.grad is not None, f"{name}.{parameter_name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{name}.{parameter_name} has a non-finite gradient"
        assert parameter.grad.abs().sum() > 0, f"{name}.{parameter_name} has an all-zero gradient"


@pytest.mark.parametrize("name", TORCH_TABULAR)
def test_torch_model_trains_on_a_batch_of_one(name):
    """A final batch of one row must not crash training (no BatchNorm in tabular models)."""
    model = create_model(name, in_features=5, out_features=1)
    model.train()
    model(torch.randn(1, 5)).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", TORCH_TABULAR)
def test_torch_model_round_trips_through_a_bundle_with_identical_outputs(name, tmp_path):
    torch.manual_seed(0)
    frame = _numeric_frame()
    tabular = get_modality("tabular")
    preprocessor = tabular.preprocessor(None).fit(Records(inputs=frame))
    kwargs = {**preprocessor.model_kwargs(), "out_features": 1}
    assert kwargs["in_features"] == 5
    model = create_model(name, **kwargs).eval()
    bundle = Bundle(model, name, kwargs, BinaryTask([0, 1], 1), tabular, preprocessor, threshold=0.37)

    save_bundle(bundle, tmp_path / "bundle")
    loaded = load_bundle(tmp_path / "bundle")

    x = torch.randn(8, 5)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded.model(x))
    np.testing.assert_array_equal(bundle.predict_scores(frame), loaded.predict_scores(frame))
    assert loaded.model_name == name and loaded.threshold == 0.37


@pytest.mark.parametrize("name", TORCH_TABULAR)
def test_torch_model_round_trips_a_multiclass_head(name, tmp_path):
    torch.manual_seed(1)
    frame = _numeric_frame(n=12)
    tabular = get_modality("tabular")
    preprocessor = tabular.preprocessor(None).fit(Records(inputs=frame))
    kwargs = {**preprocessor.model_kwargs(), "out_features": 3}
    bundle = Bundle(create_model(name, **kwargs).eval(), name, kwargs, MulticlassTask(["a", "b", "c"]), tabular, preprocessor)
    loaded = load_bundle(save_bundle(bundle, tmp_path / "bundle"))
    scores = loaded.predict_scores(frame)
    assert scores.shape == (12, 3)
    np.testing.assert_allclose(scores.sum(axis=1), 1, atol=1e-6)
    np.testing.assert_array_equal(bundle.predict_scores(frame), scores)


@pytest.mark.parametrize("name", SKLEARN)
def test_sklearn_model_round_trips_through_a_bundle_with_identical_scores(name, tmp_path):
    """Every registered scikit-learn model must be a type the bundle's skops loader trusts."""
    frame = _numeric_frame(n=40)
    tabular = get_modality("tabular")
    preprocessor = tabular.preprocessor(None).fit(Records(inputs=frame))
    y = (frame["x0"] > 0).astype(int).to_numpy()
    model = create_model(name, task_type="binary", seed=0).fit(preprocessor.feature_matrix(frame), y)
    bundle = Bundle(model, name, {}, BinaryTask([0, 1], 1), tabular, preprocessor)
    loaded = load_bundle(save_bundle(bundle, tmp_path / "bundle"))
    np.testing.assert_array_equal(bundle.predict_scores(frame), loaded.predict_scores(frame))
    assert loaded.model_name == name


def test_create_model_with_unknown_name_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown model 'ft_transfomer'.*did you mean 'ft_transformer'"):
        create_model("ft_transfomer", in_features=5, out_features=1)


def test_create_model_with_unrelated_name_lists_no_suggestion():
    with pytest.raises(ConfigError, match="unknown model 'zzzzzz'") as error:
        get_model_entry("zzzzzz")
    assert "did you mean" not in str(error.value)


def test_registering_a_taken_name_with_another_factory_is_refused():
    with pytest.raises(ValueError, match="already registered"):

        @register_model("mlp", modality="tabular")
        def impostor(in_features: int, out_features: int):  # pragma: no cover - never built
            return None


@pytest.mark.parametrize("name", LEARNERS)
def test_sklearn_baseline_fits_and_predicts_probabilities(name):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] + 0.3 * rng.normal(size=200) > 0).astype(int)
    model = create_model(name, task_type="binary", seed=0)
    model.fit(X[:150], y[:150])
    proba = model.predict_proba(X[150:])
    assert proba.shape == (50, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-9)
    assert np.mean(proba.argmax(axis=1) == y[150:]) >= 0.8


def test_prior_baseline_predicts_the_training_frequencies():
    X, y = np.zeros((10, 2)), np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    proba = create_model("prior", task_type="binary").fit(X, y).predict_proba(np.ones((3, 2)))
    np.testing.assert_allclose(proba, [[0.7, 0.3]] * 3)
    assert create_model("prior", task_type="regression").fit(X, y * 10.0).predict(X[:1])[0] == pytest.approx(3.0)


@pytest.mark.parametrize("name", LEARNERS)
def test_sklearn_baseline_regresses_a_continuous_target(name):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = 3 * X[:, 0] - X[:, 2] + 0.1 * rng.normal(size=300)
    model = create_model(name, task_type="regression", seed=0).fit(X[:200], y[:200])
    residual = model.predict(X[200:]) - y[200:]
    assert np.sqrt(np.mean(residual**2)) < 0.5 * np.std(y)


@pytest.mark.parametrize("name", SKLEARN)
def test_sklearn_baseline_handles_several_labels(name):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    Y = np.column_stack([(X[:, 0] > 0), (X[:, 1] > 0)]).astype(int)
    model = create_model(name, task_type="multilabel", seed=0).fit(X, Y)
    assert len(model.predict_proba(X)) == 2
