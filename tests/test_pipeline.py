"""The pipeline end to end through the Python API, for every task type."""

import json

import numpy as np
import pandas as pd
import pytest

import medtorch

FAST = {"model": {"name": "mlp"}, "train": {"epochs": 4}, "evaluate": {"bootstrap": 30}}


def table(n: int = 240, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    frame["ward"] = rng.choice(["north", "south"], n)
    return frame


def test_multiclass_run_reports_macro_metrics_and_predicts_one_of_the_classes(tmp_path):
    frame = table()
    frame["stage"] = np.select([frame["a"] < -0.5, frame["a"] > 0.5], ["early", "late"], "middle")
    run = medtorch.train(frame, target="stage", out=tmp_path / "run", overrides=FAST, progress=False)
    assert run.metrics["task"] == "multiclass"
    assert {"auroc", "accuracy", "balanced_accuracy", "f1_macro"} <= set(run.metrics["metrics"])
    assert run.metrics["metrics"]["auroc"]["value"] > 0.8
    predictions = medtorch.load_bundle(tmp_path / "run" / "bundle").predict(frame.drop(columns="stage"))
    assert set(predictions["prediction"]) <= {"early", "middle", "late"}
    np.testing.assert_allclose(predictions.filter(like="probability_").sum(axis=1), 1, atol=1e-5)


def test_multilabel_run_from_several_target_columns(tmp_path):
    frame = table()
    frame["diabetes"] = (frame["a"] > 0).astype(int)
    frame["hypertension"] = (frame["b"] > 0).astype(int)
    run = medtorch.train(frame, target=["diabetes", "hypertension"], out=tmp_path / "run", overrides=FAST, progress=False)
    assert run.metrics["task"] == "multilabel"
    assert run.metrics["metrics"]["auroc"]["value"] > 0.8
    predictions = run.bundle.predict(frame.drop(columns=["diabetes", "hypertension"]))
    assert {"prediction_diabetes", "prediction_hypertension"} <= set(predictions.columns)


def test_regression_run_predicts_in_the_targets_units(tmp_path):
    frame = table()
    frame["systolic_bp"] = 120 + 15 * frame["a"] + np.random.default_rng(1).normal(scale=3, size=len(frame))
    run = medtorch.train(frame, target="systolic_bp", out=tmp_path / "run", overrides=FAST, progress=False)
    assert run.metrics["task"] == "regression"
    assert run.metrics["metrics"]["r2"]["value"] > 0.5
    predictions = medtorch.load_bundle(tmp_path / "run" / "bundle").predict(frame)
    assert predictions["prediction"].mean() == pytest.approx(120, abs=8)


def test_patient_ids_keep_each_patient_in_one_split_and_bootstrap_by_patient(tmp_path):
    frame = table(300)
    frame["patient_id"] = np.repeat([f"P{i:03d}" for i in range(100)], 3)
    frame["y"] = (frame["a"] > 0).astype(int)
    run = medtorch.train(frame, target="y", out=tmp_path / "run", overrides=FAST, progress=False)
    splits = run.metrics["splits"]
    assert splits["train"]["patients"] + splits["val"]["patients"] + splits["test"]["patients"] == 100
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["n"] == splits["test"]["n"]


def test_predefined_split_column_is_respected(tmp_path):
    frame = table(200)
    frame["y"] = (frame["b"] > 0).astype(int)
    frame["split"] = ["train"] * 120 + ["val"] * 40 + ["test"] * 40
    overrides = {**FAST, "data": {"split_column": "split"}}
    run = medtorch.train(frame, target="y", out=tmp_path / "run", overrides=overrides, progress=False)
    assert [run.metrics["splits"][k]["n"] for k in ("train", "val", "test")] == [120, 40, 40]


def test_predefined_split_stays_aligned_when_unlabeled_rows_use_a_column_missing_code(tmp_path):
    frame = table(200)
    frame["y"] = (frame["b"] > 0).astype(int)
    frame.loc[::10, "y"] = -1  # "not assessed": 20 rows, 12 of them in train
    frame["split"] = ["train"] * 120 + ["val"] * 40 + ["test"] * 40
    overrides = {**FAST, "data": {"split_column": "split", "column_missing_values": {"y": [-1]}}}
    run = medtorch.train(frame, target="y", out=tmp_path / "run", overrides=overrides, progress=False)
    assert [run.metrics["splits"][k]["n"] for k in ("train", "val", "test")] == [108, 36, 36]


def _binary_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    frame = table(n, seed)
    frame["y"] = (frame["a"] + 0.8 * np.random.default_rng(seed + 1).normal(size=n) > 0).astype(int)
    return frame


def test_threshold_and_conformal_sets_are_fitted_on_the_recalibrated_validation_scores(tmp_path):
    from medtorch.data.base import get_modality
    from medtorch.evaluation.conformal import fit_conformal
    from medtorch.evaluation.thresholds import choose_threshold

    frame = _binary_table()
    overrides = {**FAST, "evaluate": {"bootstrap": 0, "baselines": False, "calibration": "platt", "coverage": 0.8}}
    run = medtorch.train(frame, target="y", out=tmp_path / "run", overrides=overrides, progress=False)
    bundle = run.bundle
    assert bundle.calibrator.method == "platt"
    records = get_modality("tabular").read(frame, run.config.data)
    val = records.subset(np.flatnonzero(np.isin(np.arange(len(frame)), _val_rows(run, frame))))
    scores = bundle.predict_scores(val.inputs)
    assert bundle.threshold == pytest.approx(choose_threshold(val.target.astype(int), scores))
    assert bundle.conformal.quantile == pytest.approx(fit_conformal("binary", val.target.astype(int), scores, 0.8).quantile)


def _val_rows(run, frame) -> np.ndarray:
    """The validation rows of a run, recovered from the seeded split the pipeline made."""
    from medtorch.data.splits import train_val_test_split

    _, val, _ = train_val_test_split(frame["y"].to_numpy(), None, val_size=0.2, test_size=0.2, seed=run.config.train.seed)
    return val


def test_calibration_none_keeps_the_model_probabilities(tmp_path):
    overrides = {**FAST, "evaluate": {"bootstrap": 0, "baselines": False, "calibration": "none", "coverage": 0}}
    run = medtorch.train(_binary_table(), target="y", out=tmp_path / "run", overrides=overrides, progress=False)
    assert run.bundle.calibrator is None and run.bundle.conformal is None
    assert run.metrics["calibration"]["method"] == "none"
    assert "conformal" not in run.metrics


def test_metrics_json_carries_the_clinical_sections(tmp_path):
    frame = _binary_table()
    frame["age"] = np.random.default_rng(3).integers(20, 90, len(frame))
    overrides = {**FAST, "data": {"attribute_columns": ["ward", "age"]}}
    run = medtorch.train(frame, target="y", out=tmp_path / "run", overrides=overrides, progress=False)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for section in ("metrics", "operating_point", "calibration", "conformal", "subgroups", "decision_curve", "checks", "model_card", "explanations"):
        assert section in saved, section
    assert set(saved["subgroups"]) == {"ward", "age"} and len(saved["subgroups"]["age"]) == 4
    assert set(saved["baselines"]) == {"prior", "logistic_regression", "hist_gradient_boosting"}
    assert saved["baselines"]["prior"]["metrics"]["auroc"]["value"] == pytest.approx(0.5)
    assert saved["explanations"]["method"] == "integrated_gradients"
    assert saved["training"]["precision"] == "fp32"  # mixed_precision "auto" keeps the CPU in fp32
    assert next(iter(saved["explanations"]["feature_importance"])) == "a"  # the only informative column ranks first
    page = (tmp_path / "run" / "report.html").read_text()
    for heading in ("Model card", "Leakage and data checks", "Operating point", "Calibration", "Uncertainty", "Subgroups", "Decision curve"):
        assert f"<h2>{heading}" in page, heading


def test_evaluate_bundle_on_one_split_of_a_file_with_a_predefined_split(tmp_path):
    frame = _binary_table()
    frame["split"] = np.random.default_rng(0).choice(["train", "val", "test"], len(frame), p=[0.6, 0.2, 0.2])
    overrides = {**FAST, "data": {"split_column": "split"}, "evaluate": {"bootstrap": 0, "baselines": False}}
    run = medtorch.train(frame, target="y", out=tmp_path / "run", overrides=overrides, progress=False)
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    summary = medtorch.pipeline.evaluate_bundle(run.out_dir / "bundle", path, out=tmp_path / "whole", bootstrap=0, progress=False)
    assert summary["n"] == len(frame) and summary["evaluated_on"] == "external"


def _tiny_images(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 2
    images = (rng.random((40, 12, 12)) * 100 + labels[:, None, None] * 100).astype(np.uint8)
    np.savez(tmp_path / "tiny.npz", **{f"{s}_images": images for s in ("train", "val", "test")}, **{f"{s}_labels": labels for s in ("train", "val", "test")})
    return tmp_path / "tiny.npz"


@pytest.mark.parametrize("as_object", [False, True], ids=["overrides", "RunConfig"])
def test_the_modalitys_training_defaults_fill_what_the_user_left_unset(tmp_path, as_object):
    """Images train with their own defaults (cosine schedule, early stopping on AUROC); a value the user sets wins."""
    import yaml

    from medtorch.data.imaging import Imaging

    from medtorch.config import RunConfig

    settings = {"train": {"epochs": 1, "patience": 3}, "evaluate": {"bootstrap": 0, "baselines": False}}
    given = {"config": RunConfig.model_validate(settings)} if as_object else {"overrides": settings}
    medtorch.train(_tiny_images(tmp_path), out=tmp_path / "run", progress=False, **given)
    train = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]
    assert {k: train[k] for k in ("schedule", "monitor")} == {k: Imaging.train_defaults[k] for k in ("schedule", "monitor")}
    assert train["epochs"] == 1 and train["patience"] == 3


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"data": {"unit": "beat"}}, [{"name": "rr_linear", "shape_points": 0}]),  # the beat default (chosen on MIT-BIH DS1)
        ({"data": {"unit": "beat"}, "model": {"shape_points": 4}}, [{"name": "rr_linear", "shape_points": 4}]),  # an argument the user set wins
        ({"data": {"unit": "beat"}, "model": {"name": "cnn_rr"}}, [{"name": "cnn_rr"}]),  # a model the user named keeps its own defaults
        ({"data": {"unit": "window"}}, [{"name": "hist_gradient_boosting", "learning_rate": 0.05, "max_iter": 400}, {"name": "extra_trees"}, {"name": "minirocket"}, {"name": "cnn_rr"}]),  # chosen on validation (boosting's rate by inner CV)
        ({"data": {"unit": "window"}, "model": {"name": "cnn_rr"}}, [{"name": "cnn_rr"}]),
        ({"data": {"unit": "window"}, "model": {"dropout": 0.3}}, [{"name": "cnn_rr", "dropout": 0.3}]),  # the default that takes it
        ({"data": {"unit": "window"}, "train": {"ensemble": 3}}, [{"name": "cnn_rr"}]),  # a deep ensemble is of networks
    ],
)
def test_the_default_models_follow_the_kind_of_sample_and_yield_to_the_user(settings, expected):
    from medtorch.config import parse_config
    from medtorch.data.signals import Signals
    from medtorch.pipeline import resolve_candidates
    from medtorch.tasks import infer_task

    task = infer_task(np.array(["N", "V", "S"] * 10))
    candidates = resolve_candidates(parse_config(settings), Signals(), task, n_train=30)
    assert [candidate.model.model_dump() for candidate in candidates] == expected


def test_an_unknown_model_is_refused_before_a_finished_run_is_overwritten(tmp_path):
    from medtorch.errors import ConfigError

    overrides = {"model": {"name": "logistic_regression"}, "evaluate": {"bootstrap": 0, "baselines": False}}
    frame = _binary_table()
    medtorch.train(frame, target="y", out=tmp_path / "run", overrides=overrides, progress=False)
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    with pytest.raises(ConfigError, match="unknown model"):
        medtorch.train(frame, target="y", out=tmp_path / "run", overrides={"model": {"name": "no_such_model"}}, overwrite=True, progress=False)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before and "metrics.json" in before


@pytest.fixture(scope="module")
def candidates_run(tmp_path_factory):
    """A table whose modality offers two default models: the trivial prior first, then a small network."""
    from medtorch.data.tabular import Tabular

    overrides = {"data": {"split_column": "split"}, "train": {"epochs": 4}, "evaluate": {"bootstrap": 0, "baselines": False}}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Tabular, "default_models", lambda self, data_config: [{"name": "prior"}, {"name": "mlp"}])
        return medtorch.train(_three_classes(), target="y", out=tmp_path_factory.mktemp("candidates") / "run", overrides=overrides, progress=False)


def test_of_several_default_models_the_best_on_validation_is_kept(candidates_run):
    import yaml

    choice = candidates_run.metrics["training"]["model_selection"]
    assert choice["chosen"] == "mlp" and choice["validation"]["mlp"] > choice["validation"]["prior"]
    assert candidates_run.metrics["model"] == "mlp" and candidates_run.bundle.model_name == "mlp"
    assert yaml.safe_load((candidates_run.out_dir / "config.yaml").read_text())["model"] == {"name": "mlp"}
    report = (candidates_run.out_dir / "report.html").read_text()
    assert "Choices made on held-out data" in report and f"prior: {choice['validation']['prior']:.3f}" in report


def test_the_kept_networks_learning_curves_are_the_runs_train_log(candidates_run):
    folder = candidates_run.out_dir
    assert (folder / "train_log.csv").read_text() == (folder / "train_log.model-mlp.csv").read_text()
    assert not list(folder.glob("checkpoint*.safetensors"))


def _run_with_defaults(folder, defaults: list[str], frame: pd.DataFrame | None = None, target: str | list[str] = "y", **train_settings):
    from medtorch.data.tabular import Tabular

    overrides = {"data": {"split_column": "split"}, "train": {"epochs": 4, **train_settings}, "evaluate": {"bootstrap": 0, "baselines": False}}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Tabular, "default_models", lambda self, data_config: [{"name": name} for name in defaults])
        frame = _three_classes() if frame is None else frame
        return medtorch.train(frame, target=target, out=folder / "run", overrides=overrides, progress=False)


@pytest.fixture(scope="module")
def cross_validated_run(tmp_path_factory):
    """Two scikit-learn defaults (the trivial prior and logistic regression) and a network."""
    return _run_with_defaults(tmp_path_factory.mktemp("cross_validated"), ["prior", "logistic_regression", "mlp"])


def test_several_scikit_learn_defaults_are_compared_by_cv_in_training_and_only_their_best_meets_the_networks(cross_validated_run):
    choice = cross_validated_run.metrics["training"]["model_selection"]
    assert list(choice["cross_validation"]) == ["prior", "logistic_regression"]
    assert choice["cross_validation"]["logistic_regression"] > choice["cross_validation"]["prior"] + 0.2
    assert list(choice["validation"]) == ["logistic_regression", "mlp"]  # the prior was never fitted on all the training rows
    report = (cross_validated_run.out_dir / "report.html").read_text()
    assert "scikit-learn model (CV in training)" in report and f"prior: {choice['cross_validation']['prior']:.3f}" in report


def test_the_cv_score_is_the_macro_f1_of_out_of_fold_predictions_over_the_training_rows(cross_validated_run):
    from sklearn.metrics import f1_score
    from sklearn.model_selection import cross_val_predict

    from medtorch.data.splits import group_kfold
    from medtorch.registry import create_model

    bundle, frame = cross_validated_run.bundle, _three_classes()
    training = frame[frame.split == "train"].drop(columns=["y", "split"])
    x, y = bundle.preprocessor.feature_matrix(training), bundle.task.encode(frame.y[frame.split == "train"].to_numpy())
    folds = group_kfold(frame.y[frame.split == "train"].to_numpy(), None, n_splits=3, seed=0)
    predicted = cross_val_predict(create_model("logistic_regression", task_type="multiclass", seed=0), x, y, cv=folds, method="predict_proba")
    expected = f1_score(y, predicted.argmax(axis=1), average="macro")
    assert cross_validated_run.metrics["training"]["model_selection"]["cross_validation"]["logistic_regression"] == pytest.approx(expected, abs=1e-4)


def test_selection_folds_0_compares_every_default_on_validation(tmp_path):
    choice = _run_with_defaults(tmp_path, ["prior", "logistic_regression", "mlp"], selection_folds=0).metrics["training"]["model_selection"]
    assert "cross_validation" not in choice and list(choice["validation"]) == ["prior", "logistic_regression", "mlp"]


def test_class_weights_auto_is_cross_validated_per_model_and_the_finalist_keeps_its_weighting(tmp_path):
    run = _run_with_defaults(tmp_path, ["prior", "logistic_regression"], class_weights="auto")
    choice = run.metrics["training"]["model_selection"]
    weightings = choice["cross_validation_class_weights"]  # the finalist's score per weighting
    assert choice["chosen"] == "logistic_regression" and list(weightings) == ["none", "sqrt", "balanced"]
    assert run.config.train.class_weights == max(weightings, key=weightings.get)
    assert choice["cross_validation"]["logistic_regression"] == max(weightings.values())
    assert "class weights of logistic_regression (CV in training)" in (run.out_dir / "report.html").read_text()


def test_multi_label_and_continuous_targets_go_through_the_cross_validation(tmp_path):
    frame = _three_classes()
    frame["up"], frame["rare"], frame["level"] = (frame.y == "up").astype(int), (frame.y == "rare").astype(int), frame.a * 2 + frame.b
    labels = _run_with_defaults(tmp_path / "labels", ["prior", "extra_trees"], frame.drop(columns=["y", "level"]), ["up", "rare"])
    assert labels.metrics["training"]["model_selection"]["cross_validation"]["extra_trees"] > labels.metrics["training"]["model_selection"]["cross_validation"]["prior"]
    level = _run_with_defaults(tmp_path / "level", ["prior", "logistic_regression"], frame.drop(columns=["y", "up", "rare"]), "level")
    scores = level.metrics["training"]["model_selection"]["cross_validation"]  # minus the RMSE
    assert scores["logistic_regression"] > scores["prior"] and level.metrics["model"] == "logistic_regression"


def test_a_label_missing_from_a_fold_leaves_the_choice_to_validation(tmp_path):
    frame = _three_classes()
    frame["up"], frame["once"] = (frame.y == "up").astype(int), 0
    frame.loc[frame.index[0], "once"] = 1  # one training row holds the label's only positive: a fold trains without it
    run = _run_with_defaults(tmp_path, ["prior", "extra_trees"], frame.drop(columns="y"), ["up", "once"])
    assert "cross_validation" not in run.metrics["training"]["model_selection"]


def test_a_fold_that_would_train_without_a_class_leaves_the_choice_to_validation():
    from medtorch.config import parse_config
    from medtorch.data.base import Records
    from medtorch.pipeline import _cross_validate_sklearn
    from medtorch.tasks import infer_task

    target = np.array(["a"] * 20 + ["b"] * 2)  # the two "b" rows are one patient's: some fold trains without them
    records = Records(inputs=pd.DataFrame({"x": np.arange(22.0)}), target=target, groups=np.array([*range(20), 99, 99]))
    candidates = [parse_config({"model": {"name": name}}) for name in ("prior", "logistic_regression")]
    task = infer_task(target)
    assert _cross_validate_sklearn(records, task, candidates, preprocessor=None) == {}


def test_a_scikit_learn_default_on_a_multi_label_target_is_fitted_unweighted():
    """A modality's default weighting (sqrt for signals) would be refused by a scikit-learn model on labels; one the user sets is not overridden."""
    from medtorch.config import parse_config
    from medtorch.data.signals import Signals
    from medtorch.pipeline import resolve_config
    from medtorch.tasks import infer_task

    task = infer_task(np.array([[0, 1], [1, 0], [1, 1]] * 10), "multilabel")
    default = resolve_config(parse_config({"data": {"unit": "window"}}), Signals(), task, 30, {"name": "hist_gradient_boosting"})
    assert default.train.class_weights == "none"
    network = resolve_config(parse_config({"data": {"unit": "window"}}), Signals(), task, 30, {"name": "cnn_rr"})
    assert network.train.class_weights == Signals.train_defaults["class_weights"]


def test_an_ensemble_of_a_scikit_learn_model_is_refused(tmp_path):
    from medtorch.errors import ConfigError

    overrides = {"model": {"name": "logistic_regression"}, "train": {"ensemble": 3}}
    with pytest.raises(ConfigError, match="ensemble"):
        medtorch.train(table().assign(y=np.arange(240) % 2), target="y", out=tmp_path / "run", overrides=overrides, progress=False)


def _three_classes(n: int = 450, seed: int = 0) -> pd.DataFrame:
    """A rare class (10%) that the features separate only partly, with a fixed split column."""
    rng = np.random.default_rng(seed)
    frame = table(n, seed)
    frame["y"] = np.where(frame.a + rng.normal(0, 0.5, n) > 1.3, "rare", np.where(frame.b > 0, "up", "down"))
    frame["split"] = np.array(["train", "train", "train", "val", "test"])[np.arange(n) % 5]
    return frame


@pytest.fixture(scope="module")
def auto_weighted_run(tmp_path_factory):
    overrides = {
        "data": {"split_column": "split"},
        "model": {"name": "mlp"},
        "train": {"epochs": 4, "class_weights": "auto"},
        "evaluate": {"bootstrap": 0, "baselines": False},
    }
    out = tmp_path_factory.mktemp("auto") / "run"
    return medtorch.train(_three_classes(), target="y", out=out, overrides=overrides, progress=False)


def test_auto_class_weights_keep_the_weighting_with_the_best_validation_macro_f1(auto_weighted_run):
    from sklearn.metrics import f1_score

    choice = auto_weighted_run.metrics["training"]["class_weights"]
    assert set(choice["validation"]) == {"none", "sqrt", "balanced"}
    assert choice["validation"][choice["chosen"]] == max(choice["validation"].values())
    val = _three_classes().query("split == 'val'")
    predicted = auto_weighted_run.bundle.predict(val.drop(columns=["y", "split"]))["prediction"]
    assert f1_score(val.y, predicted, average="macro") == pytest.approx(choice["validation"][choice["chosen"]], abs=1e-3)


def test_auto_class_weights_leave_one_train_log_and_no_checkpoint(auto_weighted_run):
    folder = auto_weighted_run.out_dir
    assert (folder / "train_log.csv").exists()
    assert {p.name for p in folder.glob("train_log.weights-*.csv")} == {f"train_log.weights-{w}.csv" for w in ("none", "sqrt", "balanced")}
    assert not list(folder.glob("checkpoint*.safetensors"))
    assert "class_weights: auto" in (folder / "config.yaml").read_text()


def _sklearn_run(tmp_path, class_weights: str):
    overrides = {
        "data": {"split_column": "split"},
        "model": {"name": "logistic_regression"},
        "train": {"class_weights": class_weights},
        "evaluate": {"bootstrap": 0, "baselines": False, "calibration": "none"},
    }
    return medtorch.train(_three_classes(), target="y", out=tmp_path / class_weights, overrides=overrides, progress=False)


def test_a_scikit_learn_model_weighs_its_samples_by_train_class_weights(tmp_path):
    frame = _three_classes()
    rare_calls = {}
    for option in ("none", "balanced"):
        predicted = _sklearn_run(tmp_path, option).bundle.predict(frame.drop(columns=["y", "split"]))["prediction"]
        rare_calls[option] = int((predicted == "rare").sum())
    assert rare_calls["balanced"] > 1.5 * rare_calls["none"]  # the rare class (10%) weighs about 3x under balanced weights


def test_auto_class_weights_choose_a_scikit_learn_models_weighting_on_validation(tmp_path):
    from sklearn.metrics import f1_score

    run = _sklearn_run(tmp_path, "auto")
    choice = run.metrics["training"]["class_weights"]
    assert set(choice["validation"]) == {"none", "sqrt", "balanced"}
    assert len(set(choice["validation"].values())) > 1  # the weights changed the fitted models
    assert choice["validation"][choice["chosen"]] == max(choice["validation"].values())
    val = _three_classes().query("split == 'val'")
    predicted = run.bundle.predict(val.drop(columns=["y", "split"]))["prediction"]
    assert f1_score(val.y, predicted, average="macro") == pytest.approx(choice["validation"][choice["chosen"]], abs=1e-3)


def test_auto_class_weights_on_a_regression_target_train_once(tmp_path):
    frame = table().assign(y=lambda f: f.a * 2 + f.b)
    overrides = {"model": {"name": "mlp"}, "train": {"epochs": 2, "class_weights": "auto"}, "evaluate": {"bootstrap": 0, "baselines": False}}
    run = medtorch.train(frame, target="y", out=tmp_path / "run", overrides=overrides, progress=False)
    assert "class_weights" not in run.metrics["training"]
    assert not list((tmp_path / "run").glob("train_log.weights-*.csv"))
