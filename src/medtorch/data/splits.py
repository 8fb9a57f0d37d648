"""Leakage-safe splits: stratified, patient (group) aware, and checked.

When records carry a patient id, every split keeps all samples of one patient on one side;
:func:`assert_no_group_leak` refuses any split that does not.

>>> train, val, test = train_val_test_split(y, groups=patient_ids, val_size=0.2, test_size=0.2)
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Sequence

import numpy as np

from medtorch.errors import DataError, LeakageError


def assert_no_group_leak(groups: np.ndarray | None, *index_sets: np.ndarray, names: Sequence[str] = ()) -> None:
    """Raise :class:`LeakageError` if any group (patient) appears in more than one index set."""
    if groups is None:
        return
    names = list(names) or [f"split {i}" for i in range(len(index_sets))]
    seen: dict[object, str] = {}
    for name, indices in zip(names, index_sets):
        for group in np.unique(groups[indices]):
            if group in seen and seen[group] != name:
                raise LeakageError(
                    f"patient {group.item() if isinstance(group, np.generic) else group!r} appears in both {seen[group]} and {name}; "
                    "a patient's samples must all be on one side of a split"
                )
            seen.setdefault(group, name)


def _stratify_labels(target: np.ndarray | None, min_count: int = 2) -> np.ndarray | None:
    """Labels usable for stratification: class labels with at least ``min_count`` samples in every class
    (a stratified shuffle split needs 2, the k-fold splitters 1), or ``None`` (continuous or multi-label targets)."""
    if target is None or target.ndim != 1:
        return None
    if target.dtype.kind == "f" and len(np.unique(target[~np.isnan(target)])) > 20:
        return None
    _, counts = np.unique(target.astype(str), return_counts=True)
    return target.astype(str) if counts.min() >= min_count else None


def _stratifiable(labels: np.ndarray | None, n_splits: int) -> bool:
    """Whether scikit-learn's stratified k-fold splitters take ``labels``: they refuse only when every class has
    fewer samples than folds. A rarer class (MIT-BIH's 8 Q beats) merely cannot be spread evenly, and the
    other classes still need stratifying."""
    return labels is not None and np.unique(labels, return_counts=True)[1].max() >= n_splits


@contextmanager
def _rare_classes_expected() -> Iterator[None]:
    """Silence scikit-learn's warning that a class has fewer samples than folds (:func:`_stratifiable` allows it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        yield


def _holdout(
    n: int, target: np.ndarray | None, groups: np.ndarray | None, fraction: float, seed: int, candidates: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``candidates`` into (rest, holdout) with about ``fraction`` of them held out."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedShuffleSplit, ShuffleSplit, GroupShuffleSplit

    if not 0 < fraction < 1:
        raise DataError(f"a split fraction must be between 0 and 1, got {fraction}")
    sub_target = None if target is None else target[candidates]
    if groups is not None:
        labels = _stratify_labels(sub_target, min_count=1)
        sub_groups = groups[candidates]
        n_groups = len(np.unique(sub_groups))
        if n_groups < 2:
            raise DataError("cannot split: all samples belong to one patient (group)")
        n_splits = max(2, round(1 / fraction))
        if n_groups >= n_splits and _stratifiable(labels, n_splits):
            folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            with _rare_classes_expected():
                rest, held = next(folds.split(candidates, labels, sub_groups))
        else:
            splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
            rest, held = next(splitter.split(candidates, groups=sub_groups))
    else:
        labels = _stratify_labels(sub_target)
        splitter_cls = StratifiedShuffleSplit if labels is not None else ShuffleSplit
        splitter = splitter_cls(n_splits=1, test_size=fraction, random_state=seed)
        rest, held = next(splitter.split(candidates, labels))
    return candidates[np.sort(rest)], candidates[np.sort(held)]


def train_val_test_split(
    target: np.ndarray | None,
    groups: np.ndarray | None = None,
    *,
    val_size: float = 0.2,
    test_size: float = 0.2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of train, validation and test sets, stratified by class and disjoint by patient.

    ``test_size`` is a fraction of all samples, ``val_size`` a fraction of all samples too
    (taken from what remains after the test set). Use ``test_size=0`` for train/val only.
    """
    n = len(target) if target is not None else len(groups)
    everything = np.arange(n)
    if test_size > 0:
        rest, test = _holdout(n, target, groups, test_size, seed, everything)
    else:
        rest, test = everything, np.array([], dtype=int)
    relative_val = val_size / (1 - test_size)
    train, val = _holdout(n, target, groups, relative_val, seed + 1, rest)
    assert_no_group_leak(groups, train, val, test, names=("train", "validation", "test"))
    return train, val, test


def group_kfold(
    target: np.ndarray | None, groups: np.ndarray | None = None, *, n_splits: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_splits`` (train, test) index pairs, stratified by class and disjoint by patient."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    n = len(target) if target is not None else len(groups)
    labels = _stratify_labels(target, min_count=1)
    stratified = _stratifiable(labels, n_splits)
    if groups is not None:
        if stratified:
            splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        else:
            splitter = GroupKFold(n_splits=n_splits)
        with _rare_classes_expected():
            folds = list(splitter.split(np.zeros(n), labels, groups))
    elif stratified:
        with _rare_classes_expected():
            folds = list(StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(np.zeros(n), labels))
    else:
        folds = list(KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(np.zeros(n)))
    for train, test in folds:
        assert_no_group_leak(groups, train, test, names=("train", "test"))
    return folds
