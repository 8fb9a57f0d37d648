"""``medtorch demo``: the embedded default run on the Wisconsin breast-cancer data."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, run_cli):
    out = tmp_path_factory.mktemp("demo") / "run"
    process = run_cli("demo", "--out", out, "--quiet", timeout=900)
    assert process.returncode == 0, process.stderr
    return out


def test_demo_reaches_the_project_goal_auroc(demo_run):
    """Project goal: the default model separates malignant from benign with AUROC >= 0.98."""
    metrics = json.loads((demo_run / "metrics.json").read_text())
    assert metrics["positive"] == "malignant"
    assert metrics["metrics"]["auroc"]["value"] >= 0.98


def test_demo_writes_its_data_and_a_complete_run_folder(demo_run):
    assert (demo_run / "data" / "breast_cancer.csv").is_file()
    for name in ("config.yaml", "bundle/medtorch.json", "metrics.json", "train_log.csv", "report.html"):
        assert (demo_run / name).is_file(), name
    metrics = json.loads((demo_run / "metrics.json").read_text())
    assert metrics["task"] == "binary"
    assert sum(metrics["splits"][part]["n"] for part in ("train", "val", "test")) == 569
