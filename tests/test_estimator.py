"""The scikit-learn style Classifier for notebooks."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from medtorch import Classifier
from medtorch.errors import ConfigError

TARGET = "outcome"


@pytest.fixture(scope="module")
def frame(make_frame):
    return make_frame(n=300, seed=1)


@pytest.fixture(scope="module")
def fitted(frame) -> Classifier:
    return Classifier(model="mlp", epochs=5).fit(frame, target=TARGET)


def test_fit_returns_the_classifier_itself(frame):
    classifier = Classifier(model="mlp", epochs=2)
    assert classifier.fit(frame, target=TARGET) is classifier


def test_fitted_classifier_knows_its_classes_and_threshold(fitted):
    assert fitted.classes_.tolist() == [0, 1]
    assert 0.0 <= fitted.threshold_ <= 1.0
    assert 1 <= len(fitted.history_) <= 5


def test_predict_proba_gives_one_row_per_input_summing_to_one(fitted, frame):
    proba = fitted.predict_proba(frame.drop(columns=TARGET))
    assert proba.shape == (300, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-6)
    assert ((proba >= 0) & (proba <= 1)).all()


def test_predict_proba_column_of_the_positive_class_ranks_positives_higher(fitted, frame):
    proba = fitted.predict_proba(frame.drop(columns=TARGET))
    assert roc_auc_score(frame[TARGET], proba[:, 1]) > 0.75


def test_predict_applies_the_validation_threshold(fitted, frame):
    features = frame.drop(columns=TARGET)
    expected = np.where(fitted.predict_proba(features)[:, 1] >= fitted.threshold_, 1, 0)
    np.testing.assert_array_equal(fitted.predict(features).astype(int), expected)


def test_saved_and_loaded_classifier_predicts_the_same(fitted, frame, tmp_path):
    fitted.save(tmp_path / "bundle")
    loaded = Classifier.load(tmp_path / "bundle")
    features = frame.drop(columns=TARGET)
    np.testing.assert_array_equal(loaded.predict_proba(features), fitted.predict_proba(features))
    assert loaded.classes_.tolist() == fitted.classes_.tolist()
    assert loaded.threshold_ == fitted.threshold_


def test_fit_on_features_and_labels(frame):
    X, y = frame.drop(columns=TARGET), frame[TARGET].to_numpy()
    classifier = Classifier(model="mlp", epochs=3).fit(X, y)
    assert classifier.classes_.tolist() == [0, 1]
    assert classifier.predict_proba(X).shape == (300, 2)


def test_text_labels_keep_predict_proba_columns_in_classes_order(frame):
    """``classes_`` is sorted; the positive (rarer) class here sorts first, so column 0 holds it."""
    labels = np.where(frame[TARGET] == 1, "a_sick", "b_well")
    assert (labels == "a_sick").mean() < 0.5
    classifier = Classifier(model="mlp", epochs=5).fit(frame.drop(columns=TARGET), labels)
    assert classifier.classes_.tolist() == ["a_sick", "b_well"]
    proba = classifier.predict_proba(frame.drop(columns=TARGET))
    assert roc_auc_score(labels == "a_sick", proba[:, 0]) > 0.75
    assert set(classifier.predict(frame.drop(columns=TARGET))) <= {"a_sick", "b_well"}


def test_fit_with_patient_groups(make_frame):
    frame = make_frame(n=240, rows_per_patient=4, seed=2)
    groups = frame.pop("patient_id")
    classifier = Classifier(model="mlp", epochs=2).fit(frame, target=TARGET, groups=groups)
    assert classifier.predict_proba(frame.drop(columns=TARGET)).shape == (240, 2)


def test_fit_needs_exactly_one_of_y_and_target(frame):
    with pytest.raises(ConfigError, match="either y or target"):
        Classifier(model="mlp", epochs=1).fit(frame)
    with pytest.raises(ConfigError, match="either y or target"):
        Classifier(model="mlp", epochs=1).fit(frame, frame[TARGET], target=TARGET)


def test_continuous_target_is_refused(frame):
    y = np.random.default_rng(0).normal(size=len(frame))
    with pytest.raises(ConfigError, match="regression"):
        Classifier(model="mlp", epochs=1).fit(frame.drop(columns=TARGET), y)


def test_classifier_follows_the_sklearn_parameter_protocol():
    classifier = Classifier(model="mlp", epochs=7, lr=0.01)
    assert classifier.get_params()["epochs"] == 7
    copy = clone(classifier)
    assert copy.get_params() == classifier.get_params()
    assert copy.set_params(epochs=3).epochs == 3
