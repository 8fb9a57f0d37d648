"""Task inference: which task a target calls for, label encoding, and the positive class."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medtorch.errors import ConfigError, DataError
from medtorch.tasks import (
    BinaryTask,
    MulticlassTask,
    MultilabelTask,
    RegressionTask,
    infer_task,
    task_from_config,
)


def test_two_integer_values_make_a_binary_task():
    task = infer_task(np.array([0, 1, 1, 0, 0]))
    assert isinstance(task, BinaryTask)
    assert task.classes == [0, 1]
    assert task.out_features == 1


def test_a_few_integer_values_make_a_multiclass_task():
    task = infer_task(np.array([0, 1, 2, 3, 1, 2]))
    assert isinstance(task, MulticlassTask)
    assert task.classes == [0, 1, 2, 3]
    assert task.out_features == 4


def test_a_few_strings_make_a_multiclass_task():
    task = infer_task(np.array(["donor", "hepatitis", "fibrosis", "cirrhosis", "donor"]))
    assert task.type == "multiclass"
    assert task.classes == ["cirrhosis", "donor", "fibrosis", "hepatitis"]


def test_fractional_numbers_make_a_regression_task():
    task = infer_task(np.array([1.5, 2.25, 3.0, 0.1]))
    assert isinstance(task, RegressionTask)
    assert task.out_features == 1


def test_more_than_twenty_distinct_integers_make_a_regression_task():
    assert infer_task(np.arange(21)).type == "regression"
    assert infer_task(np.arange(20)).type == "multiclass"


def test_two_dimensional_target_makes_a_multilabel_task_with_the_column_names():
    target = np.array([[0, 1], [1, 1], [0, 0]])
    task = infer_task(target, label_names=["diabetes", "hypertension"])
    assert isinstance(task, MultilabelTask)
    assert task.classes == ["diabetes", "hypertension"]
    assert task.out_features == 2


def test_multilabel_without_names_numbers_the_labels():
    assert infer_task(np.zeros((4, 3)) + np.eye(4, 3)).classes == ["label_0", "label_1", "label_2"]


def test_several_columns_cannot_be_forced_into_a_binary_task():
    with pytest.raises(ConfigError, match="multilabel"):
        infer_task(np.array([[0, 1], [1, 0]]), task_type="binary")


def test_explicit_task_type_wins_over_inference():
    assert infer_task(np.array([0, 1, 2, 1, 0]), task_type="regression").type == "regression"


def test_numeric_binary_positive_is_the_larger_value():
    assert infer_task(np.array([1, 2, 2, 2, 1])).positive == 2
    assert infer_task(np.array([0, 1, 0, 0])).positive == 1


def test_boolean_binary_positive_is_true():
    assert infer_task(np.array([True, False, False])).positive is True


def test_string_binary_positive_is_the_rarer_class():
    assert infer_task(np.array(["healthy", "cancer", "healthy"])).positive == "cancer"
    assert infer_task(np.array(["benign", "malignant", "benign", "benign"])).positive == "malignant"
    assert infer_task(np.array(["yes", "no", "yes", "yes"])).positive == "no"


def test_configured_positive_given_as_text_matches_a_numeric_label():
    task = infer_task(np.array([0, 1, 1]), positive="0")
    assert task.positive == 0


def test_configured_positive_that_is_no_label_is_a_config_error():
    with pytest.raises(ConfigError, match="positive class 'sick' is not among the labels"):
        infer_task(np.array(["a", "b"]), positive="sick")


def test_single_class_target_is_a_data_error():
    with pytest.raises(DataError, match="single class"):
        infer_task(np.array([1, 1, 1, 1]))


def test_single_class_target_is_refused_even_when_the_task_is_given():
    with pytest.raises(DataError, match="single class"):
        infer_task(np.array(["sick"] * 5), task_type="binary")


def test_target_without_any_value_is_a_data_error():
    with pytest.raises(DataError, match="no values"):
        infer_task(np.array([np.nan, np.nan]))


def test_binary_task_with_three_classes_is_a_data_error():
    with pytest.raises(DataError, match="exactly two classes"):
        infer_task(np.array([0, 1, 2]), task_type="binary")


def test_regression_on_text_labels_is_a_data_error():
    with pytest.raises(DataError, match="numeric"):
        infer_task(np.array(["a", "b", "c"]), task_type="regression")


def test_binary_encoding_marks_the_positive_class_with_one():
    task = BinaryTask(["benign", "malignant"], positive="malignant")
    encoded = task.encode(np.array(["malignant", "benign", "malignant"]))
    np.testing.assert_array_equal(encoded, [1.0, 0.0, 1.0])
    assert encoded.dtype == np.float32


def test_binary_encoding_of_an_unseen_label_raises():
    task = infer_task(np.array(["benign", "malignant"]))
    with pytest.raises(DataError, match=r"labels \['unknown'\] were not seen in training"):
        task.encode(np.array(["benign", "unknown"]))


def test_multiclass_encoding_gives_class_indices():
    task = MulticlassTask(["a", "b", "c"])
    np.testing.assert_array_equal(task.encode(np.array(["c", "a", "b"])), [2, 0, 1])


def test_multiclass_encoding_of_an_unseen_label_raises():
    task = MulticlassTask([0, 1, 2])
    with pytest.raises(DataError, match="not seen in training"):
        task.encode(np.array([0, 3]))


def test_multilabel_encoding_refuses_values_other_than_zero_and_one():
    with pytest.raises(DataError, match="0/1"):
        MultilabelTask(["a", "b"]).encode(np.array([[0, 2], [1, 0]]))


def test_regression_scores_undo_the_target_scaling():
    task = RegressionTask()
    values = np.array([100.0, 120.0, 140.0])
    task.fit_target_scale(values)
    encoded = task.encode(values)
    assert encoded.mean() == pytest.approx(0, abs=1e-6)
    np.testing.assert_allclose(task.scores(torch.from_numpy(encoded)[:, None]).numpy(), values, rtol=1e-6)


def test_constant_regression_target_does_not_divide_by_zero():
    task = RegressionTask()
    task.fit_target_scale(np.array([5.0, 5.0]))
    assert task.std == 1.0


def test_binary_scores_are_probabilities():
    scores = BinaryTask([0, 1], 1).scores(torch.tensor([[-50.0], [0.0], [50.0]]))
    np.testing.assert_allclose(scores.numpy(), [0.0, 0.5, 1.0], atol=1e-6)


def test_balanced_class_weights_up_weight_the_rare_class():
    weights = BinaryTask([0, 1], 1).balanced_class_weights(np.array([0, 0, 0, 1], dtype=np.float32))
    np.testing.assert_allclose(weights, [4 / 6, 4 / 2])


@pytest.mark.parametrize(
    "task",
    [
        BinaryTask(["benign", "malignant"], "malignant"),
        MulticlassTask([0, 1, 2]),
        MultilabelTask(["a", "b"]),
        RegressionTask(3.5, 2.0),
    ],
    ids=lambda task: task.type,
)
def test_task_round_trips_through_its_config(task):
    rebuilt = task_from_config(task.get_config())
    assert type(rebuilt) is type(task)
    assert rebuilt.get_config() == task.get_config()


def test_task_config_holds_plain_python_labels():
    task = infer_task(np.array([0, 1, 1], dtype=np.int64))
    config = task.get_config()
    assert type(config["positive"]) is int
    assert all(type(c) is int for c in config["classes"])


def test_class_weight_options_give_none_inverse_frequency_or_its_square_root():
    task, encoded = MulticlassTask(["a", "b", "c"]), np.array([0] * 90 + [1] * 9 + [2])
    assert task.class_weights(encoded, "none") is None
    np.testing.assert_allclose(task.class_weights(encoded, "balanced"), [100 / 270, 100 / 27, 100 / 3], rtol=1e-6)
    np.testing.assert_allclose(task.class_weights(encoded, "sqrt"), np.sqrt([100 / 270, 100 / 27, 100 / 3]), rtol=1e-6)
    assert RegressionTask().class_weights(np.zeros(4), "balanced") is None
