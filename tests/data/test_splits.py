"""Leakage-safe splits: every patient on one side, classes stratified, results reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from medtorch.data.splits import assert_no_group_leak, group_kfold, train_val_test_split
from medtorch.errors import DataError, LeakageError


def _patients(n_patients: int = 150, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Between 1 and 6 visits per patient; about 30% of patients are positive on every visit."""
    rng = np.random.default_rng(seed)
    visits = rng.integers(1, 7, n_patients)
    groups = np.repeat([f"P{i:04d}" for i in range(n_patients)], visits)
    positive = rng.random(n_patients) < 0.3
    target = np.repeat(positive.astype(int), visits)
    order = rng.permutation(len(groups))  # visits of a patient are not adjacent in the file
    return target[order], groups[order]


def _patient_sets(groups: np.ndarray, *index_sets: np.ndarray) -> list[set[str]]:
    return [set(groups[indices]) for indices in index_sets]


def test_split_refuses_patient_on_both_sides():
    groups = np.array(["P1", "P1", "P2", "P3"])
    with pytest.raises(LeakageError, match=r"appears in both train and test"):
        assert_no_group_leak(groups, np.array([0, 2]), np.array([1, 3]), names=("train", "test"))


def test_leak_message_names_the_patient_as_written_in_the_data():
    """The user reads ``patient 'P1'``, not numpy's repr ``np.str_('P1')``."""
    groups = np.array(["P1", "P1", "P2", "P3"])
    with pytest.raises(LeakageError) as error:
        assert_no_group_leak(groups, np.array([0, 2]), np.array([1, 3]), names=("train", "test"))
    assert str(error.value).startswith("patient 'P1' appears in both train and test")
    assert "np." not in str(error.value)


def test_leak_check_accepts_a_patient_disjoint_split():
    groups = np.array(["P1", "P1", "P2", "P3"])
    assert_no_group_leak(groups, np.array([0, 1]), np.array([2]), np.array([3]))


def test_leak_check_without_groups_accepts_anything():
    assert_no_group_leak(None, np.array([0, 1]), np.array([0, 1]))


def test_leakage_error_is_a_data_error():
    assert issubclass(LeakageError, DataError)


def test_train_val_test_split_never_puts_a_patient_on_two_sides():
    target, groups = _patients()
    train, val, test = train_val_test_split(target, groups, val_size=0.2, test_size=0.2, seed=0)
    train_p, val_p, test_p = _patient_sets(groups, train, val, test)
    assert not train_p & val_p
    assert not train_p & test_p
    assert not val_p & test_p


def test_train_val_test_split_uses_every_row_exactly_once():
    target, groups = _patients()
    parts = train_val_test_split(target, groups, seed=0)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(target)))


def test_train_val_test_split_sizes_follow_the_fractions():
    target = np.random.default_rng(0).integers(0, 2, 1000)
    train, val, test = train_val_test_split(target, val_size=0.2, test_size=0.25, seed=0)
    assert len(test) == 250
    assert len(val) == pytest.approx(200, abs=2)
    assert len(train) == 1000 - len(val) - len(test)


def test_patient_split_sizes_follow_the_fractions_roughly():
    target, groups = _patients(300)
    train, val, test = train_val_test_split(target, groups, val_size=0.2, test_size=0.2, seed=0)
    n = len(target)
    assert 0.12 * n < len(test) < 0.28 * n
    assert 0.12 * n < len(val) < 0.28 * n


def test_stratified_split_keeps_the_class_ratio():
    rng = np.random.default_rng(0)
    target = (rng.random(1000) < 0.15).astype(int)
    overall = target.mean()
    for part in train_val_test_split(target, seed=0):
        assert target[part].mean() == pytest.approx(overall, abs=0.02)


def test_patient_split_keeps_the_class_ratio_roughly():
    target, groups = _patients(300)
    overall = target.mean()
    for part in train_val_test_split(target, groups, seed=0):
        assert target[part].mean() == pytest.approx(overall, abs=0.1)


def test_stratified_split_keeps_every_class_of_a_multiclass_target():
    target = np.repeat(["a", "b", "c", "d"], [400, 60, 30, 10])
    for part in train_val_test_split(target, seed=0):
        assert set(target[part]) == {"a", "b", "c", "d"}


def test_split_of_a_continuous_target_works():
    target = np.random.default_rng(0).normal(size=200)
    train, val, test = train_val_test_split(target, seed=0)
    assert len(train) + len(val) + len(test) == 200


def test_split_without_test_set_gives_an_empty_test():
    target = np.tile([0, 1], 50)
    train, val, test = train_val_test_split(target, val_size=0.2, test_size=0, seed=0)
    assert len(test) == 0
    assert len(val) == 20 and len(train) == 80


def test_split_is_deterministic_for_a_seed():
    target, groups = _patients()
    first = train_val_test_split(target, groups, seed=7)
    second = train_val_test_split(target, groups, seed=7)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_split_changes_with_the_seed():
    target, groups = _patients()
    _, _, test_a = train_val_test_split(target, groups, seed=0)
    _, _, test_b = train_val_test_split(target, groups, seed=1)
    assert set(test_a) != set(test_b)


def test_split_of_a_single_patient_is_refused():
    with pytest.raises(DataError, match="one patient"):
        train_val_test_split(np.array([0, 1, 0, 1]), np.array(["P1"] * 4), seed=0)


def test_split_fraction_outside_zero_and_one_is_refused():
    with pytest.raises(DataError, match="between 0 and 1"):
        train_val_test_split(np.tile([0, 1], 20), val_size=0.7, test_size=0.5)


def test_group_kfold_never_puts_a_patient_on_both_sides():
    target, groups = _patients()
    folds = group_kfold(target, groups, n_splits=5, seed=0)
    assert len(folds) == 5
    for train, test in folds:
        train_p, test_p = _patient_sets(groups, train, test)
        assert not train_p & test_p


def test_group_kfold_tests_every_row_exactly_once():
    target, groups = _patients()
    folds = group_kfold(target, groups, n_splits=5, seed=0)
    tested = np.concatenate([test for _, test in folds])
    np.testing.assert_array_equal(np.sort(tested), np.arange(len(target)))
    for train, test in folds:
        assert len(np.intersect1d(train, test)) == 0
        assert len(train) + len(test) == len(target)


def test_group_kfold_without_class_labels_stays_patient_disjoint():
    _, groups = _patients()
    continuous = np.random.default_rng(0).normal(size=len(groups))
    for train, test in group_kfold(continuous, groups, n_splits=4):
        train_p, test_p = _patient_sets(groups, train, test)
        assert not train_p & test_p


def test_group_kfold_stratifies_without_groups():
    rng = np.random.default_rng(0)
    target = (rng.random(500) < 0.2).astype(int)
    for _, test in group_kfold(target, n_splits=5, seed=0):
        assert target[test].mean() == pytest.approx(target.mean(), abs=0.02)


def test_group_kfold_is_deterministic_for_a_seed():
    target, groups = _patients()
    first = group_kfold(target, groups, seed=3)
    second = group_kfold(target, groups, seed=3)
    for (train_a, test_a), (train_b, test_b) in zip(first, second):
        np.testing.assert_array_equal(train_a, train_b)
        np.testing.assert_array_equal(test_a, test_b)


def test_a_few_patients_with_fewer_of_a_class_than_folds_still_split_by_patient():
    """Eight records, four of each class: too few per class for stratified group folds, so a plain group split."""
    target = np.array(["AF", "N"] * 4)
    groups = np.array([f"A{i}" for i in range(8)])
    train, val, test = train_val_test_split(target, groups, seed=0)
    assert len(train) and len(val) and len(test) and len(np.concatenate([train, val, test])) == 8
    assert not set(groups[train]) & (set(groups[val]) | set(groups[test]))


def _one_rare_class() -> tuple[np.ndarray, np.ndarray]:
    """Fifty patients of ten samples; five of them hold all the B samples, and one sample is the only C."""
    target = np.array(["A"] * 10 * 45 + ["B"] * 10 * 5, dtype=object)
    target[0] = "C"
    return target, np.repeat([f"P{i}" for i in range(50)], 10)


def test_a_class_rarer_than_the_folds_does_not_turn_off_stratification_of_the_others():
    """Each validation split still takes one of the five B patients, as stratified group folds deal them out."""
    target, groups = _one_rare_class()
    for seed in range(10):
        _, val, _ = train_val_test_split(target, groups, seed=seed)
        assert len(np.unique(groups[val][target[val] == "B"])) == 1, f"seed {seed}"


def test_group_kfold_falls_back_to_plain_group_folds_when_every_class_is_rarer_than_the_folds():
    target, groups = np.array(["AF", "N"] * 2), np.array(["P0", "P1", "P2", "P3"])
    folds = group_kfold(target, groups, n_splits=3, seed=0)
    assert len(folds) == 3 and sorted(np.concatenate([held_out for _, held_out in folds]).tolist()) == [0, 1, 2, 3]
