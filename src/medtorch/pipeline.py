"""The one pipeline every modality goes through: data → task → model → training → evaluation → bundle.

The CLI and the Python API are thin faces over :func:`train`, :func:`fit_model` and
:func:`predict`.

>>> result = train("heart.csv", target="disease", out="runs/heart")
>>> result.metrics["metrics"]["auroc"]
{'value': 0.91, 'ci': [0.86, 0.95]}
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medtorch.bundle import Bundle, load_bundle
from medtorch.config import ModelConfig, RunConfig, load_config, merge, parse_config
from medtorch.data.base import Modality, Preprocessor, Records, detect_modality, get_modality
from medtorch.data.splits import assert_no_group_leak, train_val_test_split
from medtorch.errors import ConfigError, DataError, MedtorchError
from medtorch.registry import ModelEntry, _did_you_mean, create_model, get_model_entry
from medtorch.tasks import Task, infer_task

# how new data must be read to match training (the feature columns and types come from the preprocessor)
BUNDLED_DATA_SETTINGS = (
    "format", "target", "group_column", "attribute_columns", "missing_values", "column_missing_values", "volume_slices", "record_sampling_rate",
)
RUN_FILES = ("skipped_files.txt", "config.yaml", "bundle", "metrics.json", "train_log.csv", "report.html", "checkpoint.safetensors", "predictions.csv")


@dataclass
class RunResult:
    """What :func:`train` leaves behind: the run folder, its metrics and the bundle."""

    out_dir: Path
    config: RunConfig
    metrics: dict[str, Any]
    bundle: Bundle


@dataclass
class FitResult:
    bundle: Bundle
    history: list[dict[str, float]]
    training: dict[str, Any]


def train(
    data: Any = None,
    *,
    target: str | list[str] | None = None,
    out: str | Path = "runs/latest",
    config: str | Path | dict[str, Any] | RunConfig | None = None,
    overrides: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> RunResult:
    """Train, evaluate and bundle a model; write the run folder ``out``.

    ``data`` is a path (or a DataFrame for tables); ``config`` a YAML path, dict or
    :class:`RunConfig`; ``overrides`` replaces parts of it, e.g. ``{"train": {"epochs": 20}}``.
    A run folder holding an unfinished run with the same settings is resumed.
    """
    overrides = merge(overrides or {}, {"data": {"target": target}})
    if isinstance(data, (str, Path)):
        overrides = merge(overrides, {"data": {"path": str(data)}})
    cfg = _as_config(config, overrides)
    source = data if data is not None and not isinstance(data, (str, Path)) else cfg.data.path
    if source is None:
        raise ConfigError("no data given (--data PATH or data.path)")
    out_dir = Path(out)
    _refuse_finished_run(out_dir, overwrite)

    modality = get_modality(cfg.data.format) if cfg.data.format else detect_modality(source)
    # decided once, read by all; only what was set is dumped, so resolve_config still sees which defaults to fill in
    cfg = parse_config(merge(cfg.model_dump(mode="json", exclude_unset=True), {"data": modality.data_settings(source, cfg.data)}))
    records = modality.read(source, cfg.data)
    task = infer_task(records.target, cfg.task.type, cfg.task.positive, _label_names(cfg))
    train_idx, val_idx, test_idx = _split(records, cfg)
    candidates = resolve_candidates(cfg, modality, task, len(train_idx))
    main_process = is_main_process()
    if main_process:
        _prepare_out_dir(out_dir, overwrite)
        if len(candidates) == 1:  # with several, once one is kept
            _write_yaml(out_dir / "config.yaml", candidates[0])
        if records.skipped:
            (out_dir / "skipped_files.txt").write_text("\n".join(records.skipped) + "\n")

    cfg, fitted = fit_model(modality, records, train_idx, val_idx, task, candidates, run_dir=out_dir, progress=progress)
    if not main_process:  # under torchrun the other processes only help train
        return RunResult(out_dir, cfg, {}, fitted.bundle)
    _write_yaml(out_dir / "config.yaml", cfg)
    fitted.bundle.save(out_dir / "bundle")

    from medtorch.evaluation.report import write_report

    evaluated_on = test_idx if len(test_idx) else val_idx
    summary = evaluate_run(fitted.bundle, records, train_idx, val_idx, evaluated_on, cfg, fitted.training, progress=progress)
    summary["evaluated_on"] = "test" if len(test_idx) else "validation"
    explanations = modality.explain(fitted.bundle, records.subset(evaluated_on))
    _write_outputs(out_dir, summary, fitted.bundle, cfg, explanations, fitted.history, source=_source_name(source))
    for checkpoint in _checkpoints(out_dir):
        checkpoint.unlink()
    return RunResult(out_dir, cfg, summary, fitted.bundle)


def fit_model(
    modality: Modality,
    records: Records,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    task: Task,
    candidates: list[RunConfig],
    *,
    run_dir: Path | None = None,
    progress: bool = True,
) -> tuple[RunConfig, FitResult]:
    """Fit the resolved candidates (:func:`resolve_candidates`) with :func:`fit_bundle` and keep the one with
    the best validation score, as ``train.class_weights: auto`` does; with one candidate, just fit it.
    Two or more scikit-learn candidates are first compared by cross-validation inside the training records
    (``train.selection_folds``), and only their best is fitted and meets the networks on validation (with
    ``train.class_weights: auto``, with the weighting the cross-validation chose for it).
    Returns the kept candidate's config and fit; the training summary holds every candidate's scores.

    >>> cfg, fitted = fit_model(modality, records, train_idx, val_idx, task, resolve_candidates(cfg, modality, task, len(train_idx)))
    """
    from medtorch.evaluation.metrics import best_scored  # scikit-learn: not on the CLI's start-up path

    if len(candidates) == 1:
        return candidates[0], fit_bundle(modality, records, train_idx, val_idx, task, candidates[0], run_dir=run_dir, progress=progress)
    by_name = {candidate.model.name: candidate for candidate in candidates}
    train_records, val_records = records.subset(train_idx), records.subset(val_idx)
    preprocessor = modality.preprocessor(candidates[0].data).fit(train_records)  # shared: the data settings are one
    cross_validated = _cross_validate_sklearn(train_records, task, list(by_name.values()), preprocessor, progress=progress)
    selection: dict[str, Any] = {}
    if cross_validated:  # the scikit-learn candidates' best in CV (with its best weighting) meets the networks on validation
        weighting = {name: best_scored(tried) for name, tried in cross_validated.items()}
        selection["cross_validation"] = {name: tried[weighting[name]] for name, tried in cross_validated.items()}
        finalist = best_scored(selection["cross_validation"])
        by_name = {name: candidate for name, candidate in by_name.items() if name not in cross_validated or name == finalist}
        if by_name[finalist].train.class_weights == "auto":
            selection["cross_validation_class_weights"] = cross_validated[finalist]
            by_name[finalist] = _with_class_weights(by_name[finalist], weighting[finalist])

    def fit(name: str) -> FitResult:
        return fit_bundle(modality, records, train_idx, val_idx, task, by_name[name], run_dir=run_dir, progress=progress, preprocessor=preprocessor, tag=f"model-{name}")

    def score(fitted: FitResult) -> float | None:  # encoded after a fit: a continuous target's scale is learnt there
        return _validation_score(task, task.encode(val_records.target), fitted.bundle.predict_scores(val_records.inputs, calibrated=False))

    chosen, fitted, scores = _choose(list(by_name), fit, score)
    fitted.training["model_selection"] = {"chosen": chosen, "validation": scores, **selection}
    chosen_log = _run_file(run_dir, "train_log.csv", tag=f"model-{chosen}")
    if chosen_log is not None and chosen_log.exists() and is_main_process():  # a network's learning curves
        shutil.copyfile(chosen_log, chosen_log.with_name("train_log.csv"))
    return by_name[chosen], fitted


def _cross_validate_sklearn(
    train_records: Records, task: Task, candidates: list[RunConfig], preprocessor: Preprocessor, *, progress: bool = False
) -> dict[str, dict[str, float | None]]:
    """Each scikit-learn candidate's :func:`_validation_score` on out-of-fold predictions over the training
    records (``train.selection_folds`` folds, disjoint by group, i.e. patient), per class weighting it was
    fitted with, when there are two or more such candidates: the best of several on one validation split is
    partly the luckiest (on CinC 2017 four candidates sat 0.01-0.04 apart on 320 validation records).
    With ``train.class_weights: auto`` each weighting is cross-validated, else the one set.
    Empty, so every candidate is scored on validation, when there are fewer than two, fewer than two folds
    (``selection_folds`` 0 or 1) or groups than folds, or a fold would train without a class (or a label's two values).
    Under ``torchrun`` the fold models are shared out between the processes, and each gets every score back."""
    from medtorch.data.splits import group_kfold
    from medtorch.inference import sklearn_matrix
    from medtorch.training.distributed import gathered, share_of_this_rank

    folds = candidates[0].train.selection_folds
    sklearn = [cfg for cfg in candidates if get_model_entry(cfg.model.name).kind == "sklearn"]
    n_groups = len(np.unique(train_records.groups)) if train_records.groups is not None else len(train_records)
    if len(sklearn) < 2 or folds < 2 or n_groups < folds:
        return {}
    if task.type == "regression":  # as fit_bundle does on the same records: the scores are on the learnt scale
        task.fit_target_scale(np.asarray(train_records.target, dtype=float))
    y = task.encode(train_records.target)
    splits = group_kfold(train_records.target, train_records.groups, n_splits=folds, seed=candidates[0].train.seed)
    if not all(_has_every_class(task, y[inner], y) for inner, _ in splits):
        return {}
    weightings = {cfg.model.name: _weightings(task, cfg.train.class_weights) for cfg in sklearn}
    jobs = [(cfg.model.name, option, fold) for cfg in sklearn for option in weightings[cfg.model.name] for fold in range(folds)]
    mine = share_of_this_rank(jobs)  # under torchrun each rank fits its share of the fold models
    steps = _Steps(progress and is_main_process(), total=len(mine), description=f"comparing {len(sklearn)} scikit-learn models by {folds}-fold CV")
    my_scores: dict[tuple[str, str, int], np.ndarray] = {}
    failure: Exception | None = None
    try:
        for cfg in sklearn:
            entry = get_model_entry(cfg.model.name)
            fits = [(option, fold) for name, option, fold in mine if name == entry.name]
            if not fits:
                continue
            x, kwargs = sklearn_matrix(preprocessor, train_records.inputs, entry.reads), _sklearn_kwargs(entry, task, cfg, preprocessor)  # once per model
            for option, fold in fits:
                my_scores[entry.name, option, fold] = _held_out_scores(entry.name, kwargs, task, option, x, y, splits[fold])
                steps.advance()
    except Exception as error:  # the other ranks are waiting for this one's share: they must hear it failed
        failure = error
    finally:
        steps.close()
    parts = gathered((my_scores, None if failure is None else f"{type(failure).__name__}: {failure}"), candidates[0].train.device)
    if failure is not None:
        raise failure
    failed = next((message for _, message in parts if message), None)
    if failed:
        raise MedtorchError(f"the cross-validation failed in another process of this torchrun job: {failed}")
    all_scores = {job: scores for part, _ in parts for job, scores in part.items()}
    return {
        name: {option: _validation_score(task, y, _out_of_fold(all_scores, name, option, splits, len(y))) for option in options}
        for name, options in weightings.items()
    }


def _weightings(task: Task, class_weights: str) -> tuple[str, ...]:
    """The class weightings a model is fitted with: each of them for ``auto`` (binary and multiclass), else the one set."""
    if class_weights != "auto":
        return (class_weights,)
    return CLASS_WEIGHTINGS if task.type in ("binary", "multiclass") else ("none",)


def _has_every_class(task: Task, part: np.ndarray, whole: np.ndarray) -> bool:
    """Whether ``part`` of the encoded targets holds every class of ``whole`` (each label's both values, for labels)."""
    if task.type == "regression":
        return True
    part, whole = part.reshape(len(part), -1), whole.reshape(len(whole), -1)  # a class target is one column
    return all(len(np.unique(part[:, j])) == len(np.unique(whole[:, j])) for j in range(whole.shape[1]))


def _out_of_fold(
    scores: dict[tuple[str, str, int], np.ndarray], name: str, option: str, splits: list[tuple[np.ndarray, np.ndarray]], n_rows: int
) -> np.ndarray:
    """One model's (fitted with one weighting) scores of all ``n_rows`` training rows, each from the fold that held it out."""
    predicted = np.zeros((n_rows, *scores[name, option, 0].shape[1:]))
    for fold, (_, held_out) in enumerate(splits):
        predicted[held_out] = scores[name, option, fold]
    return predicted


def _held_out_scores(
    name: str, kwargs: dict[str, Any], task: Task, class_weights: str, x: np.ndarray, y: np.ndarray, split: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """The scores a model fitted on one fold's training rows gives the rows it was not fitted on."""
    from medtorch.inference import sklearn_scores

    inner, held_out = split
    model, _ = _fit_sklearn(name, kwargs, task, class_weights, (x[inner], x[held_out]), (y[inner], y[held_out]))
    return sklearn_scores(model, task, x[held_out])


def resolve_candidates(cfg: RunConfig, modality: Modality, task: Task, n_train: int) -> list[RunConfig]:
    """``cfg`` resolved (:func:`resolve_config`) for each model :func:`fit_model` will choose among: the one
    the user named, else the modality's defaults (:meth:`Modality.default_models`). Model settings without a
    name go to the defaults that take them; a deep ensemble (``train.ensemble`` > 1) keeps the networks; a
    default that cannot learn the task (its registry entry's ``task_types``) is left out."""
    return [resolve_config(cfg, modality, task, n_train, model) for model in model_candidates(cfg, modality, task.type)]


def model_candidates(cfg: RunConfig, modality: Modality, task_type: str | None = None) -> list[dict[str, Any]]:
    """The model settings of :func:`resolve_candidates`."""
    if cfg.model.name:
        return [{"name": cfg.model.name}]
    defaults = modality.default_models(cfg.data)
    if task_type is not None:
        defaults = [d for d in defaults if get_model_entry(d["name"]).learns(task_type)] or defaults
    if cfg.train.ensemble > 1:
        defaults = [d for d in defaults if get_model_entry(d["name"]).kind == "torch"] or defaults
    kwargs = cfg.model.kwargs()
    taking = [d for d in defaults if set(kwargs) <= set(inspect.signature(get_model_entry(d["name"]).factory).parameters)]
    return [{**d, **kwargs} for d in (taking or defaults[:1])]  # none takes them: the first's factory says which is unknown


def fit_bundle(
    modality: Modality,
    records: Records,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    task: Task,
    cfg: RunConfig,
    *,
    run_dir: Path | None = None,
    progress: bool = True,
    preprocessor: Preprocessor | None = None,
    tag: str = "",
) -> FitResult:
    """Fit preprocessing and model on ``train_idx``, early-stop and pick the threshold on ``val_idx``.

    ``cfg`` must be resolved (:func:`resolve_config`). A ``preprocessor`` already fitted on the
    same training records (e.g. the main model's, for a baseline) is reused as it is. A network's
    checkpoints and logs in ``run_dir`` carry ``tag`` in their names when given (one of several candidates).
    """
    train_records, val_records = records.subset(train_idx), records.subset(val_idx)
    if task.type == "regression":
        task.fit_target_scale(np.asarray(train_records.target, dtype=float))
    preprocessor = preprocessor or modality.preprocessor(cfg.data).fit(train_records)
    entry = get_model_entry(cfg.model.name)
    y_train, y_val = task.encode(train_records.target), task.encode(val_records.target)
    training: dict[str, Any] = {}
    history: list[dict[str, float]] = []
    if entry.kind == "sklearn":
        if cfg.train.ensemble > 1:
            raise ConfigError(f"train.ensemble averages neural networks; {entry.name} is a scikit-learn model")
        from medtorch.inference import sklearn_matrix

        kwargs = _sklearn_kwargs(entry, task, cfg, preprocessor)
        features = tuple(sklearn_matrix(preprocessor, part.inputs, entry.reads) for part in (train_records, val_records))
        model, training = _fit_sklearn(entry.name, kwargs, task, cfg.train.class_weights, features, (y_train, y_val))
    else:
        kwargs = _checked_kwargs(entry, {**preprocessor.model_kwargs(), "out_features": task.out_features, **cfg.model.kwargs()})
        train_set = preprocessor.dataset(train_records.inputs, y_train, train=True)
        val_set = preprocessor.dataset(val_records.inputs, y_val)
        networks = _Networks(entry.name, kwargs, task, train_set, val_set, run_dir, progress, tag)
        model, history, training = networks.choose_class_weights(cfg, y_val) if cfg.train.class_weights == "auto" else networks.train(cfg)
    reading = {k: v for k, v in cfg.data.model_dump(mode="json").items() if k in BUNDLED_DATA_SETTINGS}
    bundle = Bundle(model, entry.name, kwargs, task, modality, preprocessor, data_config=reading)
    if entry.kind == "torch":
        bundle.test_time_augmentation = cfg.evaluate.test_time_augmentation
    _fit_on_validation(bundle, val_records, cfg)
    return FitResult(bundle, history, training)


CLASS_WEIGHTINGS = ("none", "sqrt", "balanced")  # what train.class_weights: auto chooses among


def _fit_sklearn(
    name: str, kwargs: dict[str, Any], task: Task, class_weights: str, features: tuple[np.ndarray, np.ndarray], targets: tuple[np.ndarray, np.ndarray]
) -> tuple[Any, dict[str, Any]]:
    """A scikit-learn model fitted with ``train.class_weights`` as sample weights (binary and multiclass
    tasks; 'auto' fits once per weighting and keeps the best on validation, as for networks, unless the
    weighting was already chosen by cross-validation among several default models (:func:`fit_model`); a
    regression or multi-label target is fitted unweighted, and refuses 'sqrt' and 'balanced' when multi-label)."""
    from threadpoolctl import threadpool_limits

    from medtorch.inference import sklearn_scores

    (x_train, x_val), (y_train, y_val) = features, targets
    if task.type == "multilabel" and class_weights in ("sqrt", "balanced"):
        raise ConfigError(f"train.class_weights: {class_weights} weighs a sample by its one class; {name} on a multi-label target takes 'none'")

    def fit(option: str) -> Any:
        model = create_model(name, **kwargs)
        weights = _sample_weights(task, y_train, option)
        return model.fit(x_train, _sklearn_target(task, y_train), **({} if weights is None else {"sample_weight": weights}))

    options = _weightings(task, class_weights)

    # on small tables, OpenMP threads cost more than they give (and oversubscribe busy machines); a model that
    # convolves the samples itself (MiniRocket) gains from them at any size
    small = len(x_train) < 20_000 and get_model_entry(name).reads == "features"
    with threadpool_limits(1 if small else None):
        if len(options) > 1:
            chosen, model, scores = _choose_weighting(task, y_val, fit, lambda model: sklearn_scores(model, task, x_val))
            return model, {"class_weights": {"chosen": chosen, "validation": scores}}
        return fit(options[0]), {}


def _sample_weights(task: Task, y: np.ndarray, option: str) -> np.ndarray | None:
    """Each training sample weighs its class's weight under ``option`` (none, sqrt or balanced); ``None``
    for multi-label and regression targets, whose samples carry no single class."""
    if task.type not in ("binary", "multiclass"):
        return None
    weights = task.class_weights(y, option)
    return None if weights is None else weights[np.asarray(y, dtype=int)]


def _choose_weighting(task: Task, y_val: np.ndarray, fit: Callable[[str], Any], scores_of: Callable[[Any], np.ndarray]) -> tuple[str, Any, dict[str, float | None]]:
    """:func:`_choose` among :data:`CLASS_WEIGHTINGS` by :func:`_validation_score`; ties go to the earlier, simpler weighting."""
    return _choose(list(CLASS_WEIGHTINGS), fit, lambda fitted: _validation_score(task, y_val, scores_of(fitted)))


def _choose(options: list[str], fit: Callable[[str], Any], score: Callable[[Any], float | None]) -> tuple[str, Any, dict[str, float | None]]:
    """Fit once per option and keep the one with the best validation score (:func:`~medtorch.evaluation.metrics.best_scored`).
    Returns the chosen option, what ``fit`` gave for it, and every option's score."""
    from medtorch.evaluation.metrics import best_scored

    fitted, scores = {}, {}
    for option in options:
        fitted[option] = fit(option)
        scores[option] = score(fitted[option])
    chosen = best_scored(scores)
    return chosen, fitted[chosen], scores


def _with_class_weights(cfg: RunConfig, option: str) -> RunConfig:
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"class_weights": option})})


@dataclass
class _Networks:
    """Trains a registered network (or a deep ensemble of them) on one split, writing checkpoints and logs to ``run_dir``."""

    name: str
    kwargs: dict[str, Any]
    task: Task
    train_set: Any
    val_set: Any
    run_dir: Path | None
    progress: bool
    tag: str = ""  # in the names of the run files (:func:`_run_file`)

    def train(self, cfg: RunConfig, tag: str = "") -> tuple[Any, list[dict[str, float]], dict[str, Any]]:
        """The model (an ``Ensemble`` when ``train.ensemble`` > 1), the first member's history, and a training summary."""
        import torch

        tag = _joined_tag(self.tag, tag)

        from medtorch.models.ensemble import Ensemble
        from medtorch.training import Trainer

        members, results = [], []
        for member in range(cfg.train.ensemble):
            settings = cfg.train.model_copy(update={"seed": cfg.train.seed + member})
            torch.manual_seed(settings.seed)
            trainer = Trainer(
                create_model(self.name, **self.kwargs),
                self.task,
                settings,
                lr=cfg.train.lr,
                weight_decay=cfg.train.weight_decay,
                batch_size=cfg.train.batch_size,
                checkpoint_path=_run_file(self.run_dir, "checkpoint.safetensors", member, tag),
                log_path=_run_file(self.run_dir, "train_log.csv", member, tag),
                progress=self.progress,
                fingerprint=_fingerprint(cfg) + (f"-member{member}" if member else ""),
            )
            results.append(trainer.fit(self.train_set, self.val_set))
            members.append(trainer.module.cpu().eval())
        model = members[0] if len(members) == 1 else Ensemble(members).eval()
        training = {
            "best_epoch": results[0].best_epoch,
            "epochs_run": len(results[0].history),
            "stopped_early": results[0].stopped_early,
            "resumed_from_epoch": results[0].resumed_from_epoch,
            "seconds": round(sum(r.seconds for r in results), 2),
            "precision": results[0].precision,
        }
        if len(results) > 1:
            training["members"] = [
                {"seed": cfg.train.seed + i, "best_epoch": r.best_epoch, "epochs_run": len(r.history), "resumed_from_epoch": r.resumed_from_epoch}
                for i, r in enumerate(results)
            ]
        return model, results[0].history, training  # the report's learning curves follow the first member

    def choose_class_weights(self, cfg: RunConfig, y_val: np.ndarray) -> tuple[Any, list[dict[str, float]], dict[str, Any]]:
        """Train once per weighting and keep the best on validation (:func:`_choose_weighting`); the run's
        train_log.csv is the chosen one's."""
        from medtorch.inference import predict_scores

        def fit(option: str) -> tuple[Any, list[dict[str, float]], dict[str, Any]]:
            return self.train(_with_class_weights(cfg, option), tag=f"weights-{option}")

        chosen, (model, history, training), scores = _choose_weighting(self.task, y_val, fit, lambda fitted: predict_scores(fitted[0], self.task, self.val_set))
        if self.run_dir is not None:
            chosen_log = _run_file(self.run_dir, "train_log.csv", 0, _joined_tag(self.tag, f"weights-{chosen}"))
            shutil.copyfile(chosen_log, _run_file(self.run_dir, "train_log.csv", 0, self.tag))
        return model, history, {**training, "class_weights": {"chosen": chosen, "validation": scores}}


def _validation_score(task: Task, y: np.ndarray, scores: np.ndarray) -> float | None:
    """What the choices on validation maximise: macro F1 at argmax with several classes, AUROC with two
    (or with labels), minus the RMSE of a continuous target."""
    from medtorch.evaluation.metrics import primary_metric

    if task.type == "regression":
        score = -float(primary_metric(task, y, scores))
    elif task.type == "multiclass":
        from sklearn.metrics import f1_score

        score = float(f1_score(y, np.argmax(scores, axis=1), average="macro"))
    else:
        score = float(primary_metric(task, y, scores))
    return round(score, 4) if np.isfinite(score) else None


def _fit_on_validation(bundle: Bundle, val_records: Records, cfg: RunConfig) -> None:
    """Recalibration, then the operating threshold and the conformal sets on the recalibrated scores."""
    from medtorch.evaluation.calibration import fit_calibrator
    from medtorch.evaluation.conformal import fit_conformal
    from medtorch.evaluation.summary import evaluation_target
    from medtorch.evaluation.thresholds import choose_threshold

    task, ev = bundle.task, cfg.evaluate
    y_val = evaluation_target(task, val_records.target)
    scores = bundle.predict_scores(val_records.inputs, calibrated=False)
    if task.type != "regression" and ev.calibration != "none":
        bundle.calibrator = fit_calibrator(task.type, y_val, scores, ev.calibration)
        scores = bundle.calibrator.transform(scores)
    if task.type == "binary":
        bundle.threshold = choose_threshold(y_val, scores, ev.threshold.method, ev.threshold.value)
    if ev.coverage and task.type != "multilabel":
        bundle.conformal = fit_conformal(task.type, y_val, scores, ev.coverage)


def evaluate_run(
    bundle: Bundle,
    records: Records,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    test_idx: np.ndarray,
    cfg: RunConfig,
    training: dict[str, Any],
    *,
    progress: bool = False,
) -> dict[str, Any]:
    """``metrics.json``'s content: the model's test statistics, the data checks, and the baselines beside it."""
    from medtorch.evaluation.checks import data_checks
    from medtorch.evaluation.metrics import evaluate
    from medtorch.evaluation.summary import clinical_summary, evaluation_target, roc_pr_curves

    test = records.subset(test_idx)
    ev = cfg.evaluate
    options = {"n_bootstrap": ev.bootstrap, "confidence": ev.confidence, "seed": cfg.train.seed}
    baselines = [name for name in bundle.modality.baselines if ev.baselines and name != bundle.model_name]
    steps = _Steps(progress, total=2 + len(baselines), description=f"evaluating ({ev.bootstrap} bootstrap resamples)")
    summary: dict[str, Any] = {
        "task": bundle.task.type,
        "model": bundle.model_name,
        **clinical_summary(bundle, test, **options),
        "classes": bundle.task.get_config().get("classes", []),
        "positive": bundle.task.get_config().get("positive"),
        "splits": _split_summary(records, bundle.task, train_idx, val_idx, test_idx),
        "training": training,
        "baselines": {},
    }
    steps.advance()
    if ev.checks:
        splits = {"train": train_idx, "val": val_idx, "test": test_idx}
        summary["checks"] = data_checks(bundle.modality, records, bundle.preprocessor, splits)
    steps.advance()
    y_test = evaluation_target(bundle.task, test.target)
    for name in baselines:
        single = cfg.train.model_copy(update={"ensemble": 1, "class_weights": "none"})  # a baseline is one unweighted model, whatever the main model is
        baseline_cfg = cfg.model_copy(update={"model": ModelConfig(name=name), "train": single})
        baseline = fit_bundle(
            bundle.modality, records, train_idx, val_idx, bundle.task, baseline_cfg, preprocessor=bundle.preprocessor
        ).bundle
        baseline_scores = baseline.predict_scores(test.inputs)
        summary["baselines"][name] = {
            "threshold": baseline.threshold,
            "metrics": evaluate(bundle.task, y_test, baseline_scores, baseline.threshold, groups=test.groups, **options),
            # with several classes the report draws the model's per-class curves alone
            "curves": roc_pr_curves(bundle.task, y_test, baseline_scores) if bundle.task.type == "binary" else {},
        }
        steps.advance()
    steps.close()
    return summary


def evaluate_bundle(
    bundle: str | Path | Bundle,
    data: Any,
    *,
    out: str | Path,
    split: str | None = None,
    bootstrap: int = 1000,
    intended_use: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a trained bundle on new labelled data (external validation); writes metrics.json and report.html.

    >>> summary = evaluate_bundle("runs/heart/bundle", "other_hospital.csv", out="runs/heart-external")

    ``split`` keeps only the rows of one predefined split (e.g. ``"test"`` of a MedMNIST file).
    """
    from medtorch.evaluation.checks import data_checks
    from medtorch.evaluation.summary import clinical_summary

    bundle = load_bundle(bundle) if not isinstance(bundle, Bundle) else bundle
    out_dir = Path(out)
    _refuse_finished_run(out_dir, overwrite)
    records = bundle.read_labeled(data)
    if split is not None:
        if records.split is None:
            raise ConfigError(f"--split {split}: {data} has no predefined split")
        records = records.subset(np.flatnonzero(records.split == split))
        if not len(records):
            raise DataError(f"{data} has no rows in split {split!r}")
    _prepare_out_dir(out_dir, overwrite)
    steps = _Steps(progress, total=2, description=f"evaluating on {len(records)} samples ({bootstrap} bootstrap resamples)")
    summary: dict[str, Any] = {
        "task": bundle.task.type,
        "model": bundle.model_name,
        "evaluated_on": "external",
        **clinical_summary(bundle, records, n_bootstrap=bootstrap),
        "classes": bundle.task.get_config().get("classes", []),
        "positive": bundle.task.get_config().get("positive"),
        "splits": _split_summary(records, bundle.task, np.arange(len(records))),
        "baselines": {},
    }
    steps.advance()
    summary["checks"] = data_checks(bundle.modality, records, bundle.preprocessor, {"external": np.arange(len(records))})
    steps.advance()
    steps.close()
    explanations = bundle.modality.explain(bundle, records)
    cfg = parse_config({"evaluate": {"intended_use": intended_use}})
    _write_outputs(out_dir, summary, bundle, cfg, explanations, [], source=_source_name(data))
    return summary


def _write_outputs(
    out_dir: Path, summary: dict[str, Any], bundle: Bundle, cfg: RunConfig, explanations: Any, history: list, *, source: str | None
) -> None:
    """metrics.json and report.html of a run or an evaluation."""
    from medtorch.evaluation.model_card import model_card
    from medtorch.evaluation.report import write_report

    if explanations.summary:
        summary["explanations"] = explanations.summary
    summary["model_card"] = model_card(bundle, summary, source=source, intended_use=cfg.evaluate.intended_use)
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")
    write_report(out_dir / "report.html", summary, history, explanations)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _source_name(source: Any) -> str | None:
    return str(source) if isinstance(source, (str, Path)) else (None if source is None else type(source).__name__)


def predict(bundle: str | Path | Bundle, data: Any) -> Any:
    """Predictions of a bundle for a file or DataFrame, applying the bundle's saved preprocessing.

    >>> table = predict("runs/heart/bundle", "new_patients.csv")
    """
    bundle = load_bundle(bundle) if not isinstance(bundle, Bundle) else bundle
    return bundle.predict(data)


def resolve_config(cfg: RunConfig, modality: Modality, task: Task, n_train: int, model: dict[str, Any] | None = None) -> RunConfig:
    """``cfg`` with every data-dependent default decided (written to the run's ``config.yaml``), for
    ``model`` (settings with a ``name``; by default the first of :func:`model_candidates`)."""
    from medtorch.training import auto_batch_size

    model = model or model_candidates(cfg, modality, task.type)[0]
    entry = get_model_entry(model["name"])
    train_updates = {k: v for k, v in modality.train_defaults.items() if k not in cfg.train.model_fields_set}
    if task.type == "regression" and cfg.train.class_weights == "auto":
        train_updates["class_weights"] = "none"  # no classes to weigh
    if entry.kind == "sklearn" and task.type == "multilabel" and "class_weights" not in cfg.train.model_fields_set:
        train_updates["class_weights"] = "none"  # a modality's default weighting; scikit-learn weighs a sample by its one class
    if cfg.train.batch_size == "auto":
        train_updates["batch_size"] = auto_batch_size(n_train)
    if cfg.train.lr is None:
        train_updates["lr"] = entry.defaults.get("lr", 1e-3)
    if cfg.train.weight_decay is None:
        train_updates["weight_decay"] = entry.defaults.get("weight_decay", 0.0)
    task_updates: dict[str, Any] = {"type": task.type}
    if task.type == "binary":
        task_updates["positive"] = task.positive
    return parse_config(
        merge(
            cfg.model_dump(mode="json"),
            {
                "data": {"format": modality.name},
                "task": task_updates,
                "model": model,
                "train": train_updates,
            },
        )
    )


# ---------------------------------------------------------------- helpers
class _Steps:
    """A rich progress bar over a few coarse steps (silent when disabled)."""

    def __init__(self, enabled: bool, total: int, description: str):
        self.progress = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self.progress.start()
            self.task = self.progress.add_task(description, total=total)

    def advance(self) -> None:
        if self.progress:
            self.progress.advance(self.task)

    def close(self) -> None:
        if self.progress:
            self.progress.stop()


def _as_config(config: Any, overrides: dict[str, Any]) -> RunConfig:
    if isinstance(config, RunConfig):
        return parse_config(merge(config.model_dump(mode="json", exclude_unset=True), overrides))  # unset stays unset
    if isinstance(config, dict):
        return parse_config(merge(config, overrides))
    return load_config(config, overrides)


def is_main_process() -> bool:
    """False in the non-zero ranks of a ``torchrun`` job (they train but write nothing)."""
    return int(os.environ.get("RANK", "0")) == 0


def _refuse_finished_run(out_dir: Path, overwrite: bool) -> None:
    if (out_dir / "metrics.json").exists() and not overwrite:
        raise MedtorchError(f"{out_dir} already holds a finished run; choose another --out or pass --overwrite")


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> Path:
    """Create the run folder; with ``overwrite``, first remove a finished run's files."""
    if (out_dir / "metrics.json").exists() and overwrite:
        for name in RUN_FILES:
            target = out_dir / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        for member_file in [*_checkpoints(out_dir), *out_dir.glob("train_log.*.csv")]:  # of ensemble members, weightings
            member_file.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _split(records: Records, cfg: RunConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The source's own split when it has one (a split column, MedMNIST's official split), else a stratified one by patient."""
    labels = records.split
    if labels is not None:
        named = {"train": [], "val": [], "test": []}
        aliases = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
        for index, label in enumerate(labels):
            if label not in aliases:
                raise DataError(f"split column value {label!r} at row {index + 1} is not train, val or test")
            named[aliases[label]].append(index)
        train, val, test = (np.asarray(named[k], dtype=int) for k in ("train", "val", "test"))
        if not len(train) or not len(val):
            raise DataError("a predefined split needs train and val rows")
        assert_no_group_leak(records.groups, train, val, test, names=("train", "validation", "test"))
        return train, val, test
    return train_val_test_split(
        records.target, records.groups, val_size=cfg.data.val_size, test_size=cfg.data.test_size, seed=cfg.train.seed
    )


def _sklearn_kwargs(entry: ModelEntry, task: Task, cfg: RunConfig, preprocessor: Preprocessor) -> dict[str, Any]:
    """A scikit-learn model's factory arguments: the task, the seed, the model settings, and the preprocessor's
    reading of the samples for a model that reads them itself (registry ``reads="samples"``)."""
    reading = preprocessor.model_kwargs() if entry.reads == "samples" else {}
    return _checked_kwargs(entry, {"task_type": task.type, "seed": cfg.train.seed, **reading, **cfg.model.kwargs()})


def _checked_kwargs(entry: ModelEntry, kwargs: dict[str, Any]) -> dict[str, Any]:
    parameters = inspect.signature(entry.factory).parameters
    for key in kwargs:
        if key not in parameters:
            raise ConfigError(f"model {entry.name!r} has no argument {key!r}{_did_you_mean(key, parameters)}")
    return kwargs


def _sklearn_target(task: Task, encoded: np.ndarray) -> np.ndarray:
    return encoded.astype(int) if task.type in ("binary", "multilabel") else encoded


def _label_names(cfg: RunConfig) -> list[str] | None:
    return list(cfg.data.target) if isinstance(cfg.data.target, list) else None


def _checkpoints(out_dir: Path) -> list[Path]:
    """The checkpoints a run leaves while training (:func:`_run_file` names; nothing else in the folder)."""
    return [p for p in (out_dir / "checkpoint.safetensors", *out_dir.glob("checkpoint.*.safetensors")) if p.exists()]


def _run_file(run_dir: Path | None, name: str, member: int = 0, tag: str = "") -> Path | None:
    """``name`` in the run folder, as ``stem[.tag][.member<i>].suffix`` for a tagged run or a later ensemble member."""
    if run_dir is None:
        return None
    path = Path(name)
    parts = [path.stem, *([tag] if tag else []), *([f"member{member}"] if member else [])]
    return run_dir / (".".join(parts) + path.suffix)


def _joined_tag(*parts: str) -> str:
    """One tag for :func:`_run_file` from nested ones (a candidate model, then a class weighting), empty ones left out."""
    return ".".join(part for part in parts if part)


def _fingerprint(cfg: RunConfig) -> str:
    return hashlib.sha256(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


def _write_yaml(path: Path, cfg: RunConfig) -> None:
    import yaml

    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


def _split_summary(records: Records, task: Task, *splits: np.ndarray) -> dict[str, Any]:
    summary = {}
    names = ("train", "val", "test") if len(splits) > 1 else ("external",)
    for name, indices in zip(names, splits):
        part: dict[str, Any] = {"n": int(len(indices))}
        if records.groups is not None:
            part["patients"] = int(len(np.unique(records.groups[indices])))
        if task.type in ("binary", "multiclass") and len(indices):
            values, counts = np.unique(records.target[indices].astype(str), return_counts=True)
            part["classes"] = dict(zip(values.tolist(), counts.astype(int).tolist()))
        summary[name] = part
    return summary
