"""Run configuration: YAML or keyword arguments, validated, refusing what it does not know.

>>> config = RunConfig.model_validate({"data": {"path": "heart.csv", "target": "disease"}})
>>> config = load_config("run.yaml", overrides={"train": {"epochs": 5}})

Every field has a default that works without tuning; ``None`` means "decide from the data"
and is replaced by the decision in the run folder's ``config.yaml``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medtorch.errors import ConfigError

MISSING_CODES = ["", "?", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "#N/A", "<NA>"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    path: str | None = Field(None, description="CSV/Parquet file, or a folder for other modalities")
    format: str | None = Field(None, description="modality name (tabular, ...); detected when unset")
    target: str | list[str] | None = Field(None, description="target column; several columns make a multi-label task")
    group_column: str | None = Field(None, description="patient id: all of a patient's rows stay on one side of every split")
    feature_columns: list[str] | None = Field(None, description="use exactly these columns as features (default: inferred)")
    id_columns: list[str] | None = Field(None, description="identifier columns, never used as features")
    attribute_columns: list[str] | None = Field(None, description="subgroup columns (sex, age, site) for subgroup metrics")
    numeric_columns: list[str] | None = Field(None, description="force these columns to be numeric")
    categorical_columns: list[str] | None = Field(None, description="force these columns to be categorical")
    drop_columns: list[str] = Field(default_factory=list, description="columns to ignore")
    missing_values: list[str | float] = Field(default_factory=list, description="extra codes read as missing")
    column_missing_values: dict[str, list[str | float]] = Field(
        default_factory=dict, description="per-column missing codes, e.g. {Glucose: [0]}"
    )
    split_column: str | None = Field(None, description="column holding train/val/test for a predefined split")
    optional_columns: bool = Field(
        False, description="new data (evaluate): the patient-id and subgroup columns may be absent instead of an error"
    )
    val_size: float = Field(0.2, gt=0, lt=1)
    test_size: float = Field(0.2, ge=0, lt=1)
    image_size: int | None = Field(None, ge=8, description="images: side length after resizing; native size (at most 128) when unset")
    window: tuple[float, float] | None = Field(None, description="images: intensity window (centre, width), e.g. [40, 400] for CT soft tissue")
    augment: bool = Field(True, description="images: random affine and intensity augmentation while training")
    skip_bad_files: bool = Field(False, description="images: skip unreadable files (listed in the run folder) instead of stopping")
    sampling_rate: float | None = Field(None, gt=0, description="signals: resample to this rate in Hz (beats: 360, windows: 128 when unset)")
    record_sampling_rate: float | None = Field(None, gt=0, description="signals: the recording rate of raw arrays (.txt/.csv/.npy), which do not store it")
    leads: int | None = Field(None, ge=1, description="signals: use the first N leads of each record (default: all)")
    powerline: float | None = Field(None, gt=0, description="signals: mains frequency to notch out (50 or 60 Hz); the 40 Hz low-pass alone when unset")
    unit: Literal["beat", "window"] | None = Field(
        None, description="signals: a sample is an annotated beat, or a fixed window of a labelled record (default: window when records carry labels)"
    )
    window_seconds: float | None = Field(
        None,
        gt=0,
        description="signals: window length for unit 'window' (default: the labelled records' median length, at most 30 s); a shorter record is zero-padded to one window",
    )
    window_step_seconds: float | None = Field(
        None, gt=0, description="signals: start a window every this many seconds, at most window_seconds (overlapping windows when below it; default: window_seconds)"
    )
    beat_template: bool = Field(
        True,
        description="signals (beats): also give the model each beat less the record's typical beat so far, and six features "
        "comparing the two (morphology relative to the patient's own beats; causal, so streaming gives the same)",
    )
    ecg_quality: bool | None = Field(
        None,
        description="signals: judge ECG quality with NeuroKit2 (Zhao & Zhang 2018) per 10 s of a record (beats) or per window, "
        "shown in the checks and as subgroup metrics; default: on for beats, off for windows (an EEG is not an ECG)",
    )
    labels: str | None = Field(None, description="signals: a CSV of record,label lines (default: the folder's REFERENCE.csv, else class sub-folders)")
    exclude_paced: bool = Field(True, description="signals: leave out records with paced beats, as the AAMI protocol does")
    volume_slices: bool = Field(
        False, description="images: train a 2-D model on each volume's slices (the volume is the group of its slices)"
    )

    @model_validator(mode="after")
    def _windows_cover_the_signal(self) -> DataConfig:
        step, length = self.window_step_seconds, self.window_seconds
        if step is not None and length is not None and step > length:
            raise ValueError(f"data.window_step_seconds ({step}) above data.window_seconds ({length}) would skip signal between windows")
        return self


class TaskConfig(_Strict):
    type: Literal["binary", "multiclass", "multilabel", "regression"] | None = None
    positive: str | int | float | bool | None = Field(None, description="positive class of a binary task")


class ModelConfig(BaseModel):
    """``name`` plus any keyword argument of that model's factory (checked when the model is built)."""

    model_config = ConfigDict(extra="allow")
    name: str | None = None

    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TrainConfig(_Strict):
    epochs: int = Field(200, ge=1, description="upper bound; early stopping usually ends sooner")
    batch_size: int | Literal["auto"] = Field("auto", description="'auto' scales with the training set size")
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float | None = Field(None, gt=0, description="learning rate; the model's recommended value when unset")
    weight_decay: float | None = Field(None, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD only")
    schedule: Literal["constant", "cosine", "step", "warmup_cosine"] = "constant"
    warmup_epochs: int = Field(5, ge=0, description="warmup_cosine only")
    class_weights: Literal["none", "balanced", "sqrt", "auto"] = Field(
        "none",
        description="'balanced' weighs classes by inverse frequency in the loss; 'sqrt' by its square root (softer, for very rare classes); "
        "'auto' trains with each and keeps the one validation scores best (3x the training time; among several default "
        "scikit-learn models, the one cross-validation in training scores best)",
    )
    sampler: Literal["shuffle", "balanced"] = Field("shuffle", description="'balanced' over-samples rare classes")
    grad_clip: float | None = Field(None, gt=0)
    patience: int = Field(16, ge=0, description="epochs without improvement before stopping; 0 disables")
    monitor: Literal["loss", "primary"] = Field("loss", description="validation loss or the task's primary metric")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed_precision: bool | Literal["auto"] = Field(
        "auto", description="bf16 autocast: 'auto' on GPU only; true also on CPU (about 2x for conv nets on CPUs with AVX512-BF16 or AMX; fp32 with a warning on CPUs without native bf16, where it would be slower)"
    )
    num_workers: int = Field(0, ge=0)
    seed: int = 0
    selection_folds: int = Field(
        3, ge=0, description="with several default models, the scikit-learn ones are compared by cross-validation in this many folds of the "
        "training records (by patient) and their best meets the networks on validation; 0 (or 1) compares all on validation"
    )
    ensemble: int = Field(
        1, ge=1, le=20, description="train this many members from seeds seed, seed+1, ... and average their logits (a deep ensemble)"
    )


class ThresholdConfig(_Strict):
    method: Literal["youden", "target_sensitivity", "target_specificity", "fixed"] = "youden"
    value: float | None = Field(None, gt=0, lt=1, description="the target (or the fixed threshold)")


class EvaluateConfig(_Strict):
    bootstrap: int = Field(1000, ge=0, description="bootstrap resamples for 95% CIs; 0 disables")
    confidence: float = Field(0.95, gt=0, lt=1)
    threshold: ThresholdConfig = Field(default_factory=ThresholdConfig)
    baselines: bool = Field(True, description="also fit the modality's simple baselines and report them")
    test_time_augmentation: int = Field(
        0, ge=0, description="average the prediction with this many augmented copies (modalities that augment, e.g. images)"
    )
    calibration: Literal["temperature", "platt", "isotonic", "none"] = Field(
        "temperature", description="recalibration fitted on validation and stored in the bundle (platt/isotonic: binary only)"
    )
    coverage: float = Field(0.9, ge=0, lt=1, description="conformal prediction sets (or intervals) with this coverage; 0 disables")
    checks: bool = Field(True, description="leakage and data checks (duplicates across splits, missingness)")
    intended_use: str | None = Field(None, description="the model card's intended use (a default sentence when unset)")


class RunConfig(_Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)


def parse_config(raw: dict[str, Any]) -> RunConfig:
    """Validate a nested dict; any problem becomes one :class:`ConfigError` line."""
    if not isinstance(raw, dict):
        raise ConfigError("config must be a mapping of sections (data, task, model, train, evaluate)")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError("config: " + "; ".join(_describe_all(error.errors()))) from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML config (if given), apply ``overrides`` section by section, validate."""
    import yaml

    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML: {str(error).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
    return parse_config(merge(raw, overrides or {}))


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied recursively; ``None`` in overrides leaves a value alone."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict):
            merged[key] = merge(merged.get(key) if isinstance(merged.get(key), dict) else {}, value)
        elif value is not None:
            merged[key] = value
    return merged


def _describe_all(errors: list[dict[str, Any]]) -> list[str]:
    """One entry per config key: the alternatives of a field that takes several types are joined."""
    by_key: dict[str, list[str]] = {}
    for error in errors:
        key = ".".join(str(part) for part in _field_path(error["loc"]))
        by_key.setdefault(key, []).append(_describe(error))
    return [messages[0] if len(messages) == 1 else f"{key}: " + ", or ".join(m.split(": ", 1)[1] for m in messages) for key, messages in by_key.items()]


def _field_path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """``loc`` cut after the last config field (dropping the type tags pydantic appends for union members)."""
    model: Any = RunConfig
    for depth, part in enumerate(loc):
        fields = getattr(model, "model_fields", None)
        if fields is None:
            return loc[:depth]
        if str(part) not in fields:
            return loc[: depth + 1]
        model = fields[str(part)].annotation
    return loc


def _describe(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in _field_path(error["loc"]))
    if error["type"] == "extra_forbidden":
        location = ".".join(str(part) for part in error["loc"])
        section, key = _owner(error["loc"]), str(error["loc"][-1])
        close = difflib.get_close_matches(key, list(section.model_fields), n=1) if section else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key {location!r}{hint}"
    return f"{location}: {error['msg']}"


def _owner(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config class that holds the key at ``loc``."""
    model: type[BaseModel] = RunConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model
