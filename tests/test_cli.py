"""The ``medtorch`` command, run in a subprocess the way a user runs it; we read the run folder."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

import medtorch
from medtorch.cli import app

TARGET = "outcome"
COMMANDS = sorted(command.name or command.callback.__name__.replace("_", "-") for command in app.registered_commands)
FAST_CONFIG = "evaluate: {bootstrap: 0, baselines: false}\n"


@pytest.fixture(scope="module")
def training_csv(tmp_path_factory, make_frame):
    path = tmp_path_factory.mktemp("data") / "clinic.csv"
    make_frame(n=300, seed=3, rows_per_patient=3).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, training_csv, run_cli):
    """One finished run of the documented command, shared by the tests that read its folder."""
    out = tmp_path_factory.mktemp("runs") / "clinic"
    process = run_cli("train", "--data", training_csv, "--target", TARGET, "--out", out, "--model", "mlp", "--epochs", 3, "--quiet")
    assert process.returncode == 0, process.stderr
    return out, process


@pytest.fixture(scope="module")
def metrics(trained_run):
    return json.loads((trained_run[0] / "metrics.json").read_text())


def _assert_one_line_error(process) -> str:
    assert process.returncode == 2, f"exit {process.returncode}; stderr: {process.stderr}"
    assert "Traceback" not in process.stderr
    assert "Traceback" not in process.stdout
    lines = process.stderr.splitlines()
    assert len(lines) == 1, f"stderr has {len(lines)} lines: {process.stderr!r}"
    assert lines[0].startswith("medtorch: error: ")
    assert lines[0].strip() != "medtorch: error:"
    return lines[0]


# ---------------------------------------------------------------- help and listing
def test_help_exits_zero_and_lists_every_command(run_cli):
    process = run_cli("--help")
    assert process.returncode == 0, process.stderr
    for command in COMMANDS:
        assert command in process.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command_exits_zero(run_cli, command):
    process = run_cli(command, "--help")
    assert process.returncode == 0, process.stderr
    assert "Usage" in process.stdout


HEAVY = ("torch", "pandas", "numpy", "sklearn")
PROBE = """
import sys
from medtorch.cli import app
try:
    app(sys.argv[1:])
except SystemExit:
    pass
print(" ".join(sorted(name for name in {heavy!r} if name in sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], *[[command, "--help"] for command in COMMANDS]], ids=" ".join)
def test_help_imports_no_heavy_library(args):
    """``medtorch --help`` stays fast: typer only, no torch, pandas, numpy or scikit-learn."""
    process = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True, text=True)
    assert process.returncode == 0, process.stderr
    assert process.stderr.strip() == ""


def test_version_prints_the_package_version(run_cli):
    process = run_cli("--version")
    assert process.returncode == 0
    assert process.stdout.strip() == f"medtorch {medtorch.__version__}"


def test_models_lists_every_registered_tabular_model(run_cli):
    process = run_cli("models", "--modality", "tabular")
    assert process.returncode == 0, process.stderr
    listed = {line.split()[0] for line in process.stdout.splitlines() if line.strip()}
    assert listed == set(medtorch.list_models(modality="tabular"))


# ---------------------------------------------------------------- train
@pytest.mark.slow
def test_train_writes_the_documented_run_folder(trained_run):
    out, _ = trained_run
    for name in ("config.yaml", "bundle/medtorch.json", "bundle/model.safetensors", "metrics.json", "train_log.csv", "report.html"):
        assert (out / name).is_file(), f"{name} missing"


@pytest.mark.slow
def test_train_removes_its_checkpoint_when_finished(trained_run):
    assert not (trained_run[0] / "checkpoint.safetensors").exists()


@pytest.mark.slow
def test_train_prints_the_metrics_table_and_the_run_folder(trained_run):
    out, process = trained_run
    assert "auroc" in process.stdout
    assert f"run folder: {out}" in process.stdout


@pytest.mark.slow
def test_metrics_json_reports_auroc_with_a_confidence_interval(metrics):
    auroc = metrics["metrics"]["auroc"]
    assert set(auroc) == {"value", "ci"}
    low, high = auroc["ci"]
    assert 0 <= low <= auroc["value"] <= high <= 1
    assert auroc["value"] > 0.7  # the synthetic target has a strong signal


@pytest.mark.slow
def test_metrics_json_describes_task_and_test_set(metrics):
    assert metrics["task"] == "binary"
    assert metrics["model"] == "mlp"
    assert metrics["evaluated_on"] == "test"
    assert metrics["n"] == metrics["splits"]["test"]["n"]
    assert sum(metrics["splits"][part]["n"] for part in ("train", "val", "test")) == 300
    assert sum(metrics["splits"][part]["patients"] for part in ("train", "val", "test")) == 100


@pytest.mark.slow
def test_metrics_json_reports_the_baselines_beside_the_model(metrics):
    assert set(metrics["baselines"]) == {"prior", "logistic_regression", "hist_gradient_boosting"}
    for name, baseline in metrics["baselines"].items():
        assert set(baseline["metrics"]["auroc"]) == {"value", "ci"}, name


@pytest.mark.slow
def test_config_yaml_records_the_resolved_settings(trained_run):
    config = yaml.safe_load((trained_run[0] / "config.yaml").read_text())
    assert config["model"]["name"] == "mlp"
    assert config["train"]["epochs"] == 3
    assert isinstance(config["train"]["batch_size"], int)
    assert config["train"]["lr"] > 0
    assert config["data"]["format"] == "tabular"
    assert config["task"] == {"type": "binary", "positive": 1}


@pytest.mark.slow
def test_train_log_has_one_row_per_epoch(trained_run):
    with (trained_run[0] / "train_log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [0, 1, 2]
    for row in rows:
        assert np.isfinite(float(row["train_loss"])) and np.isfinite(float(row["val_loss"]))


@pytest.mark.slow
def test_report_html_is_a_self_contained_page(trained_run):
    page = (trained_run[0] / "report.html").read_text()
    assert page.startswith("<!doctype html>")
    assert "auroc" in page and "logistic_regression" in page
    assert "data:image/png;base64," in page


@pytest.mark.slow
def test_bundle_features_exclude_target_and_patient_id(trained_run):
    config = json.loads((trained_run[0] / "bundle" / "medtorch.json").read_text())
    names = config["preprocessing"]["feature_names"]
    assert "glucose" in names and "sbp_missing" in names
    assert not any(name.startswith((TARGET, "patient_id")) for name in names)


# ---------------------------------------------------------------- predict
@pytest.fixture(scope="module")
def new_patients(tmp_path_factory, make_frame):
    path = tmp_path_factory.mktemp("new") / "new_patients.csv"
    make_frame(n=40, seed=99, rows_per_patient=2).drop(columns=TARGET).to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_predict_writes_one_row_per_input(trained_run, new_patients, run_cli, tmp_path):
    out = tmp_path / "preds.csv"
    process = run_cli("predict", trained_run[0] / "bundle", new_patients, "--out", out)
    assert process.returncode == 0, process.stderr
    assert "wrote 40 predictions" in process.stdout
    table = pd.read_csv(out)
    assert len(table) == 40
    assert list(table.columns) == ["group", "probability_1", "prediction", "prediction_set", "uncertain"]
    assert set(table["prediction"]) <= {0, 1}


@pytest.mark.slow
def test_predict_flags_cases_whose_conformal_set_is_not_one_class(trained_run, new_patients, run_cli, tmp_path):
    out = tmp_path / "preds.csv"
    process = run_cli("predict", trained_run[0] / "bundle", new_patients, "--out", out)
    table = pd.read_csv(out, keep_default_na=False)
    set_sizes = table["prediction_set"].map(lambda s: len(str(s).split("|")) if s != "" else 0)
    np.testing.assert_array_equal(table["uncertain"], set_sizes != 1)
    single = table[set_sizes == 1]
    assert (single["prediction_set"].astype(str) == single["prediction"].astype(str)).mean() > 0.9
    assert f"{int(table['uncertain'].sum())} of 40 uncertain" in process.stdout and "refer to a clinician" in process.stdout


@pytest.fixture(scope="module")
def external_evaluation(tmp_path_factory, trained_run, make_frame, run_cli):
    """The trained bundle evaluated on another hospital's labelled patients."""
    folder = tmp_path_factory.mktemp("external")
    make_frame(n=120, seed=42, rows_per_patient=2).to_csv(folder / "other_hospital.csv", index=False)
    out = folder / "evaluation"
    process = run_cli("evaluate", trained_run[0] / "bundle", "--data", folder / "other_hospital.csv", "--out", out, "--bootstrap", 100, "-q")
    assert process.returncode == 0, process.stderr
    return out, process


@pytest.mark.slow
def test_evaluate_writes_metrics_and_report_for_new_labelled_data(external_evaluation):
    out, process = external_evaluation
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "report.html"]
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["evaluated_on"] == "external" and summary["n"] == 120
    low, high = summary["metrics"]["auroc"]["ci"]
    assert low <= summary["metrics"]["auroc"]["value"] <= high
    assert summary["calibration"]["method"] == "temperature"
    assert 0 <= summary["conformal"]["coverage"] <= 1
    assert not any("no external validation" in line for line in summary["model_card"]["limitations"])
    assert "external set (n = 120)" in process.stdout


@pytest.mark.slow
def test_evaluate_gives_the_numbers_of_the_bundle_on_that_data(external_evaluation, trained_run):
    from medtorch.evaluation.metrics import auroc

    out, _ = external_evaluation
    bundle = medtorch.load_bundle(trained_run[0] / "bundle")
    table = pd.read_csv(out.parent / "other_hospital.csv")
    scores = bundle.predict(table)["probability_1"].to_numpy()
    expected = auroc(bundle.task.encode(table[TARGET].to_numpy()), scores)
    assert json.loads((out / "metrics.json").read_text())["metrics"]["auroc"]["value"] == pytest.approx(expected)


@pytest.mark.slow
def test_evaluate_on_unlabelled_data_exits_2(trained_run, new_patients, run_cli, tmp_path):
    message = _assert_one_line_error(run_cli("evaluate", trained_run[0] / "bundle", "--data", new_patients, "--out", tmp_path / "e"))
    assert f"'{TARGET}' not found" in message
    assert not (tmp_path / "e").exists()


@pytest.mark.slow
def test_predict_matches_the_python_api(trained_run, new_patients, run_cli, tmp_path):
    out = tmp_path / "preds.csv"
    assert run_cli("predict", trained_run[0] / "bundle", new_patients, "--out", out).returncode == 0
    from_cli = pd.read_csv(out)
    from_api = medtorch.load_bundle(trained_run[0] / "bundle").predict(new_patients)
    np.testing.assert_allclose(from_cli["probability_1"], from_api["probability_1"], atol=1e-6)
    np.testing.assert_array_equal(from_cli["prediction"], from_api["prediction"])


@pytest.mark.slow
def test_predict_accepts_a_file_that_still_has_the_target(trained_run, training_csv, run_cli, tmp_path):
    out = tmp_path / "preds.csv"
    assert run_cli("predict", trained_run[0] / "bundle", training_csv, "--out", out).returncode == 0
    assert len(pd.read_csv(out)) == 300


def test_predict_with_a_folder_that_is_no_bundle_exits_2(run_cli, tmp_path, new_patients):
    message = _assert_one_line_error(run_cli("predict", tmp_path, new_patients, "--out", tmp_path / "p.csv"))
    assert "not a medtorch bundle" in message


@pytest.mark.slow
def test_predict_on_a_file_missing_a_feature_exits_2(trained_run, run_cli, tmp_path, make_frame):
    path = tmp_path / "partial.csv"
    make_frame(n=30, seed=5).drop(columns=[TARGET, "glucose"]).to_csv(path, index=False)
    message = _assert_one_line_error(run_cli("predict", trained_run[0] / "bundle", path, "--out", tmp_path / "p.csv"))
    assert "'glucose' not found" in message


# ---------------------------------------------------------------- bad input
def _garbage_csv(path):
    frame = pd.DataFrame({"bmi": np.tile([21.5, 24.0, 27.5, 30.0], 10).astype(object), "age": np.tile([40, 55, 63, 71, 48], 8), TARGET: np.tile([0, 1], 20)})
    frame.loc[17, "bmi"] = "abc"
    frame.to_csv(path, index=False)


BAD_INPUTS = {
    "missing target column": (lambda p: pd.DataFrame({"a": range(30), "b": [0, 1] * 15}).to_csv(p, index=False), "'outcome' not found"),
    "empty file": (lambda p: p.write_text(""), "is empty"),
    "header only": (lambda p: p.write_text(f"a,b,{TARGET}\n"), "no rows"),
    "one-class target": (lambda p: pd.DataFrame({"a": np.arange(30) % 7, TARGET: 1}).to_csv(p, index=False), "single class"),
    "garbage in a numeric column": (_garbage_csv, "'abc'"),
    "random bytes": (lambda p: p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()), "data.csv"),
    "png image": (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8), "not a text table"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_data_exits_2_with_one_clear_line(case, run_cli, tmp_path):
    write, expected = BAD_INPUTS[case]
    path = tmp_path / "data.csv"
    write(path)
    process = run_cli("train", "--data", path, "--target", TARGET, "--out", tmp_path / "run", "--model", "mlp", "--epochs", 3)
    assert expected in _assert_one_line_error(process)


def test_nonexistent_data_path_exits_2(run_cli, tmp_path):
    process = run_cli("train", "--data", tmp_path / "nope.csv", "--target", TARGET, "--out", tmp_path / "run")
    assert "not found" in _assert_one_line_error(process)


def test_config_typo_exits_2_with_a_suggestion(run_cli, tmp_path, clinical_csv):
    config = tmp_path / "run.yaml"
    config.write_text("train:\n  epoch: 3\n")
    process = run_cli("train", "--data", clinical_csv, "--target", TARGET, "--out", tmp_path / "run", "--config", config)
    assert "unknown key 'train.epoch' (did you mean 'epochs'?)" in _assert_one_line_error(process)


def test_unknown_model_exits_2_with_a_suggestion(run_cli, tmp_path, clinical_csv):
    process = run_cli("train", "--data", clinical_csv, "--target", TARGET, "--out", tmp_path / "run", "--model", "mpl")
    assert "did you mean 'mlp'?" in _assert_one_line_error(process)


def test_missing_target_flag_exits_2(run_cli, tmp_path, clinical_csv):
    process = run_cli("train", "--data", clinical_csv, "--out", tmp_path / "run")
    assert "no target column given" in _assert_one_line_error(process)


# ---------------------------------------------------------------- finished runs
@pytest.fixture
def finished_run(run_cli, tmp_path, clinical_csv):
    config = tmp_path / "fast.yaml"
    config.write_text(FAST_CONFIG)
    out = tmp_path / "run"
    args = ("train", "--data", clinical_csv, "--target", TARGET, "--out", out, "--model", "mlp", "--epochs", 1, "--config", config, "--quiet")
    assert run_cli(*args).returncode == 0
    return out, args


@pytest.mark.slow
def test_second_train_into_a_finished_run_exits_2_and_keeps_it(finished_run, run_cli):
    out, args = finished_run
    before = (out / "metrics.json").read_bytes()
    message = _assert_one_line_error(run_cli(*args))
    assert "already holds a finished run" in message and "--overwrite" in message
    assert (out / "metrics.json").read_bytes() == before


@pytest.mark.slow
def test_second_train_with_overwrite_replaces_the_run(finished_run, run_cli):
    out, args = finished_run
    (out / "metrics.json").write_text("{}")  # a marker the new run must replace
    process = run_cli(*args, "--overwrite")
    assert process.returncode == 0, process.stderr
    assert json.loads((out / "metrics.json").read_text())["model"] == "mlp"


def test_train_ensemble_flag_bundles_that_many_members(tmp_path, training_csv, run_cli):
    config = tmp_path / "fast.yaml"
    config.write_text(FAST_CONFIG)
    out = tmp_path / "pair"
    args = ("train", "--data", training_csv, "--target", TARGET, "--out", out, "--model", "mlp", "--epochs", 2, "--ensemble", 2, "--config", config, "--quiet")
    process = run_cli(*args)
    assert process.returncode == 0, process.stderr
    assert json.loads((out / "bundle" / "medtorch.json").read_text())["model"]["members"] == 2
