"""report.html's pictures: which figures a run's page shows for two classes and for several."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import medtorch
from medtorch.evaluation import report
from medtorch.evaluation.report import MAX_CLASS_CURVES, write_report

FAST = {"model": {"name": "logistic_regression"}, "evaluate": {"bootstrap": 20}}
pytestmark = pytest.mark.slow  # two small runs (a few seconds)

CONFUSION = "confusion matrix, each row coloured by its share of the true class"
PER_CLASS_ROC = "ROC and precision-recall curves per class"
BINARY_ROC = "ROC and precision-recall curves"


def _pictures(page: str) -> list[str]:
    return re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,', page)


def _frame(task: str, n: int = 240) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(n, 2)), columns=["a", "b"])
    signal = frame["a"] + rng.normal(scale=0.7, size=n)
    frame["y"] = (signal > 0).astype(int) if task == "binary" else np.select([signal < -0.5, signal > 0.5], ["early", "late"], "middle")
    return frame


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reports")
    return {task: medtorch.train(_frame(task), target="y", out=folder / task, overrides=FAST, progress=False) for task in ("binary", "multiclass")}


def test_several_classes_get_a_confusion_picture_and_a_roc_curve_per_class(runs):
    run = runs["multiclass"]
    pictures = _pictures((run.out_dir / "report.html").read_text())
    assert CONFUSION in pictures and PER_CLASS_ROC in pictures
    assert BINARY_ROC not in pictures


def test_two_classes_keep_the_table_and_one_roc_curve_beside_the_baselines(runs):
    run = runs["binary"]
    pictures = _pictures((run.out_dir / "report.html").read_text())
    assert BINARY_ROC in pictures
    assert CONFUSION not in pictures and PER_CLASS_ROC not in pictures


def test_many_classes_draw_the_first_few_and_say_so(runs, tmp_path, monkeypatch):
    drawn = {}

    def keep(figure, alt):
        drawn[alt] = figure.axes[0]
        return ""

    monkeypatch.setattr(report, "_figure_html", keep)
    summary = runs["multiclass"].metrics
    curve = next(iter(summary["curves"]["per_class"].values()))
    many = {**summary, "curves": {"per_class": {f"class {k}": curve for k in range(MAX_CLASS_CURVES + 3)}}}
    write_report(tmp_path / "report.html", many, [])
    roc = drawn[PER_CLASS_ROC]
    assert len(roc.get_legend().get_texts()) == MAX_CLASS_CURVES
    assert f"first {MAX_CLASS_CURVES} of {MAX_CLASS_CURVES + 3} classes" in roc.get_title()
