"""The CLI on real clinical tables from ../shared/data (skipped on a laptop without them, failing in CI)."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

# Fewer bootstrap resamples than the default 1000 keep these runs short; the point estimate is unchanged.
CONFIG = "evaluate: {bootstrap: 200}\n"

DATASETS = {
    "pima_diabetes": ("pima_diabetes/diabetes.csv", "Outcome"),
    "stroke_prediction": ("stroke_prediction/healthcare-dataset-stroke-data.csv", "stroke"),
}


@pytest.fixture(scope="module", params=list(DATASETS))
def shared_run(request, shared_data, tmp_path_factory, run_cli):
    relative, target = DATASETS[request.param]
    data = shared_data / relative
    if not data.is_file():
        pytest.fail(f"{data} is missing from the shared datasets")
    folder = tmp_path_factory.mktemp(request.param)
    config = folder / "run.yaml"
    config.write_text(CONFIG)
    out = folder / "run"
    process = run_cli(
        "train", "--data", data, "--target", target, "--out", out, "--model", "mlp", "--epochs", 5, "--config", config, "--quiet"
    )
    assert process.returncode == 0, process.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    bundle = json.loads((out / "bundle" / "medtorch.json").read_text())
    return request.param, metrics, bundle


def test_mlp_beats_chance_clearly_on_a_real_table(shared_run):
    name, metrics, _ = shared_run
    assert metrics["task"] == "binary"
    assert metrics["metrics"]["auroc"]["value"] > 0.7, name


def test_identifier_column_is_not_a_feature(shared_run):
    _, _, bundle = shared_run
    names = bundle["preprocessing"]["feature_names"]
    assert "id" not in names
    assert not any(name.startswith("id=") for name in names)


def test_missing_value_indicators_appear_exactly_where_values_are_missing(shared_run):
    """Stroke writes a missing BMI as ``N/A``; Pima has no missing-value codes (its zeros are
    undeclared), so only stroke's ``bmi`` gets an indicator."""
    name, _, bundle = shared_run
    flagged = {spec["name"] for spec in bundle["preprocessing"]["numeric"] if spec["indicator"]}
    assert flagged == {"pima_diabetes": set(), "stroke_prediction": {"bmi"}}[name]


def test_run_uses_every_labelled_row(shared_run):
    name, metrics, _ = shared_run
    expected = {"pima_diabetes": 768, "stroke_prediction": 5110}[name]
    assert sum(metrics["splits"][part]["n"] for part in ("train", "val", "test")) == expected
