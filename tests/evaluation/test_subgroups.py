"""Subgroup metrics and the gaps between a group and everyone else, with bootstrap CIs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medtorch.evaluation.metrics import compute_metrics
from medtorch.evaluation.subgroups import group_labels, subgroup_analysis
from medtorch.tasks import BinaryTask, MulticlassTask, RegressionTask

BINARY = BinaryTask([0, 1], 1)


def _binary_case(n: int = 2000, seed: int = 0, shift_b: float = 0.0):
    """Groups A and B of equal size; positives of B score ``shift_b`` lower on the logit scale."""
    rng = np.random.default_rng(seed)
    group = np.where(rng.random(n) < 0.5, "A", "B")
    y = (rng.random(n) < 0.4).astype(float)
    logit = 2.0 * (2 * y - 1) + rng.normal(size=n)
    logit = logit - shift_b * ((group == "B") & (y == 1))
    return y, 1 / (1 + np.exp(-logit)), pd.DataFrame({"sex": group})


def _entry(table: dict, column: str, group: str) -> dict:
    return next(e for e in table[column] if e["group"] == group)


@pytest.fixture(scope="module")
def unfair():
    y, p, attributes = _binary_case(shift_b=3.0)
    return y, p, attributes, subgroup_analysis(BINARY, y, p, 0.5, attributes, n_bootstrap=200, seed=0)


def test_lower_sensitivity_in_a_group_is_a_negative_flagged_equal_opportunity_gap(unfair):
    y, p, attributes, table = unfair
    gap = _entry(table, "sex", "B")["gaps"]["equal_opportunity"]
    in_b = attributes["sex"].to_numpy() == "B"
    sensitivity = lambda member: compute_metrics(BINARY, y[member], p[member], 0.5)["sensitivity"]  # noqa: E731
    expected = sensitivity(in_b) - sensitivity(~in_b)
    assert gap["value"] == pytest.approx(expected)
    assert gap["value"] < -0.3
    low, high = gap["ci"]
    assert low <= gap["value"] <= high
    assert high < 0
    assert gap["flagged"] is True
    # the mirror image: A's sensitivity is higher than everyone else's (that is, B's)
    mirror = _entry(table, "sex", "A")["gaps"]["equal_opportunity"]
    assert mirror["value"] == pytest.approx(-gap["value"])
    assert mirror["ci"][0] > 0 and mirror["flagged"] is True


def test_only_positives_shifted_leaves_the_specificity_gap_unflagged(unfair):
    _, _, _, table = unfair
    assert _entry(table, "sex", "B")["gaps"]["specificity"]["flagged"] is False


def test_identical_score_distributions_flag_no_gap():
    y, p, attributes = _binary_case(shift_b=0.0)
    table = subgroup_analysis(BINARY, y, p, 0.5, attributes, n_bootstrap=200, seed=0)
    assert {e["group"] for e in table["sex"]} == {"A", "B"}
    for entry in table["sex"]:
        assert set(entry["gaps"]) == {"auroc", "equal_opportunity", "specificity", "demographic_parity"}
        for name, gap in entry["gaps"].items():
            assert gap["flagged"] is False, (entry["group"], name, gap)
            assert gap["ci"][0] <= 0 <= gap["ci"][1]


def test_group_metrics_equal_compute_metrics_on_the_subset(unfair):
    y, p, attributes, table = unfair
    for entry in table["sex"]:
        member = attributes["sex"].to_numpy() == entry["group"]
        expected = compute_metrics(BINARY, y[member], p[member], 0.5)
        assert entry["n"] == member.sum()
        assert set(entry["metrics"]) == {"auroc", "sensitivity", "specificity", "ppv", "positive_rate"}
        for name in ("auroc", "sensitivity", "specificity", "ppv"):
            assert entry["metrics"][name]["value"] == pytest.approx(expected[name])
        assert entry["metrics"]["positive_rate"]["value"] == pytest.approx(np.mean(p[member] >= 0.5))
        low, high = entry["metrics"]["auroc"]["ci"]
        assert low <= entry["metrics"]["auroc"]["value"] <= high


def test_demographic_parity_gap_is_the_difference_in_positive_rates():
    y = np.array([1, 0, 1, 0, 1, 0, 1, 0])
    p = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.2, 0.3, 0.1])
    attributes = pd.DataFrame({"site": ["x"] * 4 + ["y"] * 4})
    table = subgroup_analysis(BINARY, y, p, 0.5, attributes, n_bootstrap=0, min_size=1)
    x = _entry(table, "site", "x")
    assert x["metrics"]["positive_rate"]["value"] == pytest.approx(3 / 4)
    assert x["gaps"]["demographic_parity"]["value"] == pytest.approx(3 / 4 - 0)
    assert x["gaps"]["equal_opportunity"]["value"] == pytest.approx(1 - 0)
    # without a bootstrap there is no interval, so nothing can be flagged
    assert x["gaps"]["demographic_parity"]["ci"] == [None, None]
    assert x["gaps"]["demographic_parity"]["flagged"] is False


def test_threshold_is_used_for_group_sensitivity():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    p = np.array([0.9, 0.6, 0.3, 0.35, 0.1, 0.2, 0.4, 0.45])
    attributes = pd.DataFrame({"site": ["x", "x", "y", "y", "x", "x", "y", "y"]})
    at_half = subgroup_analysis(BINARY, y, p, 0.5, attributes, n_bootstrap=0, min_size=1)
    at_quarter = subgroup_analysis(BINARY, y, p, 0.25, attributes, n_bootstrap=0, min_size=1)
    assert _entry(at_half, "site", "y")["metrics"]["sensitivity"]["value"] == 0.0
    assert _entry(at_quarter, "site", "y")["metrics"]["sensitivity"]["value"] == 1.0
    assert _entry(at_quarter, "site", "y")["metrics"]["specificity"]["value"] == 0.0


def test_many_valued_numeric_attribute_is_cut_into_four_quartile_bands():
    age = pd.Series(np.random.default_rng(1).integers(20, 91, 400))
    labels = group_labels(age)
    assert len(set(labels)) == 4
    counts = pd.Series(labels).value_counts()
    assert counts.min() >= 80  # quartiles: about 100 each
    # each band holds a contiguous range of ages, and the bands do not overlap
    ranges = sorted((age[labels == band].min(), age[labels == band].max()) for band in set(labels))
    assert all(high < next_low for (_, high), (next_low, _) in zip(ranges, ranges[1:]))
    assert ranges[0][0] == age.min() and ranges[-1][1] == age.max()


def test_few_valued_numeric_attribute_is_kept_as_it_is():
    site = pd.Series([1, 2, 3, 1, 2, 3, 1, 2])
    assert sorted(set(group_labels(site))) == ["1", "2", "3"]


def test_missing_values_form_a_missing_group():
    sex = pd.Series(["F", None, "M", np.nan, "F"])
    assert group_labels(sex).tolist() == ["F", "missing", "M", "missing", "F"]


def test_numeric_attribute_with_few_values_and_missing_entries_has_a_missing_group():
    site = pd.Series([1.0, 2.0, np.nan, 1.0, 2.0])
    labels = group_labels(site)
    assert labels[2] == "missing"
    assert set(labels) == {"1", "2", "missing"}


def test_missing_values_of_a_banded_numeric_attribute_form_a_missing_group():
    age = pd.Series([20.0, 30, np.nan, 40, 50, 60, 70, 80, 90, 25, 35, 45, np.nan])
    labels = group_labels(age)
    assert labels[2] == "missing" and labels[12] == "missing"
    assert len(set(labels)) == 5  # four bands and "missing"


def test_numeric_age_column_in_the_analysis_gives_four_bands_and_a_missing_group():
    rng = np.random.default_rng(2)
    n = 300
    y = (rng.random(n) < 0.5).astype(float)
    p = np.clip(y * 0.6 + rng.random(n) * 0.4, 0, 1)
    age = rng.integers(20, 91, n).astype(float)
    age[:30] = np.nan
    table = subgroup_analysis(BINARY, y, p, 0.5, pd.DataFrame({"age": age}), n_bootstrap=20)
    groups = {e["group"]: e["n"] for e in table["age"]}
    assert len(groups) == 5
    assert groups["missing"] == 30
    assert sum(groups.values()) == n


def test_numeric_age_column_without_missing_values_gives_four_bands_in_the_analysis():
    rng = np.random.default_rng(2)
    n = 300
    y = (rng.random(n) < 0.5).astype(float)
    p = np.clip(y * 0.6 + rng.random(n) * 0.4, 0, 1)
    age = rng.integers(20, 91, n)
    table = subgroup_analysis(BINARY, y, p, 0.5, pd.DataFrame({"age": age}), n_bootstrap=20)
    sizes = [e["n"] for e in table["age"]]
    assert len(sizes) == 4
    assert sum(sizes) == n and min(sizes) >= 60


def test_small_group_is_marked_too_small_and_never_flagged():
    y, p, attributes = _binary_case(n=1000, shift_b=3.0)
    # five positives of a tiny group scored very low: a huge sensitivity gap, but too few to flag
    site = np.array(["main"] * len(y), dtype=object)
    tiny = np.flatnonzero(y == 1)[:5]
    site[tiny] = "tiny"
    p = p.copy()
    p[tiny] = 0.01
    table = subgroup_analysis(BINARY, y, p, 0.5, pd.DataFrame({"site": site}), n_bootstrap=100, min_size=10)
    entry = _entry(table, "site", "tiny")
    assert entry["n"] == 5
    assert entry["too_small"] is True
    assert entry["gaps"]["equal_opportunity"]["value"] < -0.5
    assert all(gap["flagged"] is False for gap in entry["gaps"].values())
    assert _entry(table, "site", "main")["too_small"] is False
    # the same group with a lower min_size is flagged
    relaxed = subgroup_analysis(BINARY, y, p, 0.5, pd.DataFrame({"site": site}), n_bootstrap=100, min_size=5)
    assert _entry(relaxed, "site", "tiny")["gaps"]["equal_opportunity"]["flagged"] is True


def test_columns_with_a_single_group_and_no_attributes_give_nothing():
    y, p, _ = _binary_case(n=100)
    assert subgroup_analysis(BINARY, y, p, 0.5, None) == {}
    assert subgroup_analysis(BINARY, y, p, 0.5, pd.DataFrame()) == {}
    table = subgroup_analysis(BINARY, y, p, 0.5, pd.DataFrame({"site": ["a"] * 100, "sex": ["F", "M"] * 50}), n_bootstrap=10)
    assert list(table) == ["sex"]


def test_multiclass_groups_report_accuracy_and_its_gap():
    rng = np.random.default_rng(3)
    n = 600
    y = rng.integers(0, 3, n)
    group = np.where(rng.random(n) < 0.5, "A", "B")
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += np.where(group == "A", 4.0, 0.0)  # A is classified well, B near chance
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    task = MulticlassTask(["x", "y", "z"])
    table = subgroup_analysis(task, y, p, None, pd.DataFrame({"site": group}), n_bootstrap=100)
    a, b = _entry(table, "site", "A"), _entry(table, "site", "B")
    assert set(a["metrics"]) == {"auroc", "accuracy", "f1_macro"}
    assert set(a["gaps"]) == {"accuracy", "auroc"}
    in_a = group == "A"
    assert a["metrics"]["accuracy"]["value"] == pytest.approx(np.mean(p[in_a].argmax(axis=1) == y[in_a]))
    assert a["metrics"]["auroc"]["value"] == pytest.approx(compute_metrics(task, y[in_a], p[in_a])["auroc"])
    assert a["gaps"]["accuracy"]["value"] > 0.3 and a["gaps"]["accuracy"]["flagged"] is True
    assert b["gaps"]["accuracy"]["value"] == pytest.approx(-a["gaps"]["accuracy"]["value"])
    assert b["gaps"]["accuracy"]["ci"][1] < 0


def test_regression_groups_report_mae_and_its_gap():
    rng = np.random.default_rng(4)
    n = 600
    y = rng.normal(120, 15, n)
    group = np.where(rng.random(n) < 0.5, "A", "B")
    p = y + rng.normal(scale=np.where(group == "B", 10.0, 2.0))
    table = subgroup_analysis(RegressionTask(), y, p, None, pd.DataFrame({"site": group}), n_bootstrap=100)
    b = _entry(table, "site", "B")
    in_b = group == "B"
    assert set(b["metrics"]) == {"mae", "rmse"}
    assert set(b["gaps"]) == {"mae"}
    assert b["metrics"]["mae"]["value"] == pytest.approx(np.mean(np.abs(p[in_b] - y[in_b])))
    assert b["metrics"]["rmse"]["value"] == pytest.approx(np.sqrt(np.mean((p[in_b] - y[in_b]) ** 2)))
    expected_gap = np.mean(np.abs(p[in_b] - y[in_b])) - np.mean(np.abs(p[~in_b] - y[~in_b]))
    assert b["gaps"]["mae"]["value"] == pytest.approx(expected_gap)
    assert b["gaps"]["mae"]["ci"][0] > 0 and b["gaps"]["mae"]["flagged"] is True


def test_bootstrap_by_patient_gives_intervals_wider_than_by_row_for_clustered_data():
    rng = np.random.default_rng(5)
    patients = 100
    per_patient = 10
    patient = np.repeat(np.arange(patients), per_patient)
    sex = np.repeat(np.where(rng.random(patients) < 0.5, "F", "M"), per_patient)
    # each patient has one label and nearly identical scores on every visit: strongly clustered
    y = np.repeat((rng.random(patients) < 0.5).astype(float), per_patient)
    base = np.repeat(rng.normal(size=patients), per_patient)
    p = 1 / (1 + np.exp(-(1.0 * (2 * y - 1) + base + 0.05 * rng.normal(size=len(y)))))
    attributes = pd.DataFrame({"sex": sex})
    by_patient = subgroup_analysis(BINARY, y, p, 0.5, attributes, groups=patient, n_bootstrap=150, seed=1)
    by_row = subgroup_analysis(BINARY, y, p, 0.5, attributes, n_bootstrap=150, seed=1)
    for name in ("F", "M"):
        entry = _entry(by_patient, "sex", name)
        low, high = entry["metrics"]["auroc"]["ci"]
        assert low is not None and low <= entry["metrics"]["auroc"]["value"] <= high
        low_gap, high_gap = entry["gaps"]["auroc"]["ci"]
        assert low_gap < high_gap
        row_low, row_high = _entry(by_row, "sex", name)["metrics"]["auroc"]["ci"]
        assert (high - low) > 1.5 * (row_high - row_low)
