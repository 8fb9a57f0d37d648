"""The model card: intended use, data, version, and the limitations read off the results."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from medtorch.data.tabular import Tabular
from medtorch.evaluation.model_card import limitations, model_card
from medtorch.evaluation.subgroups import subgroup_analysis
from medtorch.tasks import BinaryTask, MulticlassTask, RegressionTask
from medtorch.version import BUNDLE_FORMAT_VERSION, __version__


def _bundle(task=None, model_name: str = "mlp") -> SimpleNamespace:
    """What model_card reads of a bundle: its task, model name, member count and modality."""
    return SimpleNamespace(task=task or BinaryTask(["healthy", "sick"], "sick"), model_name=model_name, members=1, modality=Tabular())


def _gap(flagged: bool) -> dict:
    return {"value": -0.2 if flagged else -0.01, "ci": [-0.3, -0.1] if flagged else [-0.1, 0.08], "flagged": flagged}


def _summary(**overrides) -> dict:
    """A summary with nothing to complain about: large, external, calibrated, subgroups without flags."""
    base = {
        "n": 500,
        "evaluated_on": "external",
        "calibration": {"after": {"ece": {"value": 0.02, "ci": [0.01, 0.04]}}},
        "subgroups": {
            "sex": [
                {"group": "F", "n": 250, "too_small": False, "gaps": {"equal_opportunity": _gap(False), "auroc": _gap(False)}},
                {"group": "M", "n": 250, "too_small": False, "gaps": {"equal_opportunity": _gap(False), "auroc": _gap(False)}},
            ]
        },
        "checks": {"warnings": []},
    }
    return base | overrides


def test_a_clean_external_evaluation_has_no_limitations():
    assert limitations(_summary()) == []


@pytest.mark.parametrize(("n", "small"), [(0, True), (40, True), (99, True), (100, False), (2000, False)])
def test_small_test_set_is_a_limitation_below_100(n, small):
    found = limitations(_summary(n=n))
    mentions = [line for line in found if "Small evaluation set" in line]
    assert bool(mentions) == small
    if small:
        assert f"n = {n}" in mentions[0]
        assert len(found) == 1


@pytest.mark.parametrize("evaluated_on", ["test", "validation", None])
def test_internal_evaluation_says_there_is_no_external_validation(evaluated_on):
    found = limitations(_summary(evaluated_on=evaluated_on))
    assert len(found) == 1
    assert "no external validation" in found[0]


def test_external_evaluation_drops_the_external_validation_limitation():
    assert not any("external validation" in line for line in limitations(_summary(evaluated_on="external")))


def test_flagged_subgroup_gaps_are_named_with_their_group():
    subgroups = _summary()["subgroups"]
    subgroups["sex"][1]["gaps"]["equal_opportunity"] = _gap(True)
    subgroups["site"] = [
        {"group": "A", "n": 100, "too_small": False, "gaps": {"auroc": _gap(True), "equal_opportunity": _gap(True)}},
        {"group": "B", "n": 100, "too_small": False, "gaps": {"auroc": _gap(False)}},
    ]
    found = limitations(_summary(subgroups=subgroups))
    assert len(found) == 2
    assert any("by sex" in line and "M (equal opportunity)" in line and "auroc" not in line for line in found)
    assert any("by site" in line and "A (auroc, equal opportunity)" in line for line in found)
    assert not any("F (" in line or "B (" in line for line in found)


def test_subgroup_gap_found_by_the_analysis_reaches_the_limitations():
    rng = np.random.default_rng(0)
    n = 1000
    group = np.where(rng.random(n) < 0.5, "A", "B")
    y = (rng.random(n) < 0.4).astype(float)
    logit = 2.0 * (2 * y - 1) + rng.normal(size=n) - 3.0 * ((group == "B") & (y == 1))
    table = subgroup_analysis(BinaryTask([0, 1], 1), y, 1 / (1 + np.exp(-logit)), 0.5, pd.DataFrame({"sex": group}), n_bootstrap=100)
    found = limitations(_summary(subgroups=table))
    assert any("by sex" in line and "B (" in line and "equal opportunity" in line for line in found)


def test_data_check_warnings_become_limitations():
    warnings = ["3 samples of test also appear exactly in train", "1 patients are in both test and train"]
    found = limitations(_summary(checks={"warnings": warnings}))
    assert found == [f"Data check: {w}." for w in warnings]


def test_poor_calibration_after_recalibration_is_a_limitation():
    found = limitations(_summary(calibration={"after": {"ece": {"value": 0.15, "ci": [0.1, 0.2]}}}))
    assert len(found) == 1 and "0.150" in found[0]
    assert limitations(_summary(calibration={"after": {"ece": {"value": 0.1, "ci": [0.05, 0.15]}}})) == []


def test_no_subgroup_columns_is_a_limitation():
    found = limitations(_summary(subgroups={}))
    assert len(found) == 1 and "No subgroup columns" in found[0]
    summary = _summary()
    del summary["subgroups"]
    assert any("No subgroup columns" in line for line in limitations(summary))


def test_a_minimal_summary_lists_every_applicable_limitation():
    found = limitations({"n": 20})
    assert len(found) == 3
    assert "no external validation" in found[0]
    assert "n = 20" in found[1]
    assert "No subgroup columns" in found[2]


def test_user_intended_use_is_used_verbatim():
    text = "Triage of adult chest pain in the ED at Hospital X; not for paediatrics.\nReviewed by Dr. Y."
    card = model_card(_bundle(), _summary(), source="heart.csv", intended_use=text)
    assert card["intended_use"] == text


def test_default_intended_use_names_the_task_and_modality():
    card = model_card(_bundle(), _summary(), source="heart.csv")
    assert "telling sick from healthy" in card["intended_use"]
    assert "tabular" in card["intended_use"]
    assert "Not a medical device" in card["intended_use"]
    multiclass = model_card(_bundle(MulticlassTask(["a", "b", "c"])), _summary(), source=None)
    assert "multiclass prediction" in multiclass["intended_use"]
    regression = model_card(_bundle(RegressionTask()), _summary(), source=None)
    assert "regression prediction" in regression["intended_use"]


def test_card_fields_come_from_the_bundle_and_summary():
    summary = _summary(n=42, evaluated_on="test", splits={"train": {"n": 120}, "val": {"n": 38}, "test": {"n": 42}})
    card = model_card(_bundle(model_name="tabm"), summary, source="heart.csv")
    assert card["model"] == "tabm"
    assert card["modality"] == "tabular"
    assert card["task"] == "binary"
    assert card["data"] == {"source": "heart.csv", "evaluated_on": "test", "n": 42, "splits": summary["splits"]}
    assert card["version"]["medtorch"] == __version__
    assert card["version"]["bundle_format"] == BUNDLE_FORMAT_VERSION
    assert card["limitations"] == limitations(summary)
    assert len(card["limitations"]) == 2  # internal test split, and small
    json.dumps(card)  # JSON-safe as written into metrics.json
