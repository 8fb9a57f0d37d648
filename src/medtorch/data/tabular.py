"""Clinical tables (CSV, TSV, Parquet, or a pandas DataFrame) as a modality.

Reading recognises missing-value codes (``?``, ``N/A``, empty cells ...), infers which columns
are numeric, categorical, identifiers, the patient id and subgroup attributes, and refuses
what it cannot read with one clear message. The preprocessor imputes (median, plus a
missingness indicator), scales and one-hot encodes, fitted on training rows only.

>>> records = Tabular().read("heart.csv", DataConfig(target="disease"))
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from medtorch.config import MISSING_CODES, DataConfig
from medtorch.data.base import Explanations, Fingerprints, Modality, Preprocessor, Records, register_modality
from medtorch.errors import ConfigError, DataError

TABLE_SUFFIXES = {".csv", ".tsv", ".txt", ".data", ".parquet", ".pq"}
GROUP_NAMES = ("patient_id", "patientid", "subject_id", "subjectid", "mrn", "patient", "subject")
ID_NAMES = ("id", "record_id", "encounter_id", "visit_id", "sample_id", "index")
ATTRIBUTE_NAMES = ("sex", "gender", "age", "race", "ethnicity", "site", "hospital", "centre", "center")
MISSING_CATEGORY = "__missing__"


def read_table(source: str | Path | pd.DataFrame, extra_missing: list[Any] = ()) -> pd.DataFrame:
    """A DataFrame from a CSV/TSV/Parquet path (or a copy of a DataFrame), missing codes as NaN."""
    codes = MISSING_CODES + [str(c) for c in extra_missing]
    if isinstance(source, pd.DataFrame):
        frame = source.copy()
        return frame.replace({c: np.nan for c in codes if c != ""}).replace(r"^\s*$", np.nan, regex=True)
    path = Path(source)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
            return frame.replace({c: np.nan for c in codes if c != ""})
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        frame = pd.read_csv(path, sep=sep, na_values=codes, keep_default_na=True, skipinitialspace=True)
    except ImportError:
        raise DataError("reading Parquet needs pyarrow: pip install 'medtorch[tabular]'") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a text table (CSV/TSV): it holds binary data") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty") from None
    except (pd.errors.ParserError, ValueError, OSError) as error:
        raise DataError(f"cannot read {path} as a table: {str(error).splitlines()[0]}") from None
    if frame.empty:
        raise DataError(f"{path} has a header but no rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def coerce_numeric(column: pd.Series) -> pd.Series:
    """``column`` as floats; a value that is neither a number nor missing is a :class:`DataError`."""
    if pd.api.types.is_bool_dtype(column):
        return column.astype(float)
    numbers = pd.to_numeric(column, errors="coerce")
    bad = numbers.isna() & column.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"column {column.name!r} is numeric but row {row + 1} holds {column.iloc[row]!r} "
            f"({int(bad.sum())} such value(s)); fix them, mark them missing, or declare the column categorical"
        )
    return numbers.astype(float)


def _looks_numeric(column: pd.Series) -> bool:
    """Mostly numbers (at least 90% of present values): a numeric column, possibly with garbage."""
    present = column.dropna()
    if pd.api.types.is_numeric_dtype(column) or present.empty:
        return True
    return pd.to_numeric(present, errors="coerce").notna().mean() >= 0.9


def _is_row_identifier(name: str, column: pd.Series) -> bool:
    """Named like an id, a row counter, or unique free text (a mostly-numeric column is never an id)."""
    if name.lower() in ID_NAMES or name.startswith("Unnamed:"):
        return column.is_unique
    if pd.api.types.is_integer_dtype(column) and len(column) > 20 and column.is_unique:
        return bool(column.is_monotonic_increasing and column.iloc[-1] - column.iloc[0] == len(column) - 1)
    is_text = pd.api.types.is_string_dtype(column) or column.dtype == object  # pandas 3 reads text as "str"
    return is_text and not _looks_numeric(column) and column.is_unique and len(column) > 20


def category_label(value: Any) -> Any:
    """The one string form of a category value: ``1``, ``1.0`` and ``"1"`` are all ``"1"``; NaN stays NaN."""
    if pd.isna(value):
        return value
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _find(frame: pd.DataFrame, names: tuple[str, ...]) -> list[str]:
    return [c for c in frame.columns if re.sub(r"[\s-]", "_", c.lower()) in names]


def _require_columns(frame: pd.DataFrame, columns: list[str], role: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        shown = ", ".join(map(str, frame.columns[:15])) + (" ..." if frame.shape[1] > 15 else "")
        raise DataError(f"{role} column(s) {', '.join(map(repr, missing))} not found; the columns are: {shown}")


@register_modality
class Tabular(Modality):
    """Rows of clinical features (vitals, labs, demographics)."""

    name = "tabular"
    default_model = "tabm"
    baselines = ("prior", "logistic_regression", "hist_gradient_boosting")

    @classmethod
    def can_read(cls, source: Any) -> bool:
        if isinstance(source, pd.DataFrame):
            return True
        return isinstance(source, (str, Path)) and Path(source).is_file() and Path(source).suffix.lower() in TABLE_SUFFIXES

    def read(self, source: Any, data_config: DataConfig, *, with_target: bool = True) -> Records:
        frame = read_table(source, data_config.missing_values)
        for column, codes in data_config.column_missing_values.items():
            _require_columns(frame, [column], "missing-value")
            frame[column] = frame[column].mask(frame[column].isin(codes) | frame[column].astype(str).isin(map(str, codes)))
        targets = _as_list(data_config.target)
        if with_target:
            if not targets:
                raise ConfigError("no target column given (--target COLUMN or data.target)")
            _require_columns(frame, targets, "target")
            unlabeled = frame[targets].isna().any(axis=1)
            if unlabeled.all():
                raise DataError(f"target column {targets[0]!r} has no values")
            frame = frame.loc[~unlabeled].reset_index(drop=True)
        group = data_config.group_column or next(iter(_find(frame, GROUP_NAMES)), None)
        attributes = data_config.attribute_columns
        attributes = _find(frame, ATTRIBUTE_NAMES) if attributes is None else attributes
        if not with_target or data_config.optional_columns:  # new data need not carry patient ids or subgroups
            group = group if group in frame.columns else None
            attributes = [a for a in attributes if a in frame.columns]
        if group is not None:
            _require_columns(frame, [group], "group")
        _require_columns(frame, attributes, "attribute")
        reserved = set(targets) | {group} | set(data_config.drop_columns)
        if data_config.split_column:
            _require_columns(frame, [data_config.split_column], "split")
            reserved.add(data_config.split_column)
        if data_config.feature_columns is not None:
            features = list(data_config.feature_columns)
            _require_columns(frame, features, "feature")
        else:
            ids = data_config.id_columns
            if ids is None:
                ids = [c for c in frame.columns if c not in reserved and _is_row_identifier(c, frame[c])]
            features = [c for c in frame.columns if c not in reserved and c not in ids]
        if not features:
            raise DataError("no feature columns left after removing target, ids and dropped columns")
        inputs = self._typed_features(frame[features], data_config)
        target = None
        if with_target:
            target = frame[targets].to_numpy() if len(targets) > 1 else _target_values(frame[targets[0]])
        return Records(
            inputs=inputs,
            target=target,
            groups=None if group is None else frame[group].astype(str).to_numpy(),
            attributes=frame[attributes].reset_index(drop=True) if attributes else None,
            split=frame[data_config.split_column].astype(str).str.strip().str.lower().to_numpy() if data_config.split_column else None,
        )

    @staticmethod
    def _typed_features(features: pd.DataFrame, data_config: DataConfig) -> pd.DataFrame:
        """Numeric columns as floats, categorical columns as strings (NaN kept)."""
        numeric = set(data_config.numeric_columns or ())
        categorical = set(data_config.categorical_columns or ())
        _require_columns(features, sorted((numeric | categorical) - set(features.columns)), "declared")
        typed = {}
        for name in features.columns:
            column = features[name]
            is_numeric = name in numeric or (name not in categorical and _looks_numeric(column))
            typed[name] = coerce_numeric(column) if is_numeric else column.map(category_label).astype(object)
        return pd.DataFrame(typed)

    def explain(self, bundle: Any, records: Records, max_rows: int = 500) -> Explanations:
        """Integrated-gradients attributions (Captum): global importance, and the highest- and lowest-risk patients."""
        from medtorch.errors import MedtorchError

        if bundle.kind != "torch" or bundle.task.type == "multilabel":
            return Explanations()
        from medtorch.explain.attributions import feature_attributions, global_importance, importance_figure, patient_figure

        rows = records.inputs.iloc[:max_rows].reset_index(drop=True)
        try:
            attributions = feature_attributions(bundle, rows, n_steps=64)
        except MedtorchError:  # captum not installed: the run goes on without attributions
            return Explanations()
        importance = global_importance(attributions)
        figures = [(importance_figure(importance), f"Mean |attribution| over {len(rows)} evaluation patients")]
        scores = bundle.predict_scores(rows)
        risk = scores if scores.ndim == 1 else scores.max(axis=1)
        for label, index in (("highest", int(np.argmax(risk))), ("lowest", int(np.argmin(risk)))):
            title = f"Patient with the {label} predicted {'risk' if bundle.task.type == 'binary' else 'confidence'} ({risk[index]:.2f})"
            figures.append((patient_figure(attributions.iloc[index], rows.iloc[index], title), title))
        summary = {"method": "integrated_gradients", "n": len(rows), "feature_importance": {k: round(float(v), 6) for k, v in importance.items()}}
        return Explanations(title="Feature attributions (integrated gradients)", figures=figures, summary=summary)

    def fingerprints(self, records: Records, preprocessor: Preprocessor) -> Fingerprints:
        """A hash of each row's feature values (ids, target and patient excluded)."""
        return Fingerprints(exact=pd.util.hash_pandas_object(records.inputs, index=False).to_numpy())

    def missingness(self, records: Records) -> pd.DataFrame:
        return records.inputs.isna()

    def preprocessor(self, data_config: DataConfig) -> TabularPreprocessor:
        return TabularPreprocessor()

    def preprocessor_from_config(self, config: dict[str, Any]) -> TabularPreprocessor:
        return TabularPreprocessor.from_config(config)


def _as_list(target: str | list[str] | None) -> list[str]:
    if target is None:
        return []
    return [target] if isinstance(target, str) else list(target)


def _target_values(column: pd.Series) -> np.ndarray:
    """Target labels: numbers where the column is numeric (ints kept as ints), else strings."""
    numbers = pd.to_numeric(column, errors="coerce")
    if numbers.notna().all():
        integral = np.all(np.mod(numbers.to_numpy(dtype=float), 1) == 0)
        return numbers.to_numpy(dtype=np.int64 if integral else float)
    return column.astype(str).str.strip().to_numpy()


class TabularPreprocessor(Preprocessor):
    """Median imputation with missingness indicators, standard scaling, one-hot categories.

    Written over plain JSON statistics rather than pickled scikit-learn transformers, so a
    bundle's preprocessing can be read by eye and loaded safely.
    """

    def __init__(self, numeric: list[dict[str, Any]] | None = None, categorical: list[dict[str, Any]] | None = None):
        self.numeric = numeric or []
        self.categorical = categorical or []

    def fit(self, records: Records) -> TabularPreprocessor:
        frame: pd.DataFrame = records.inputs
        self.numeric, self.categorical = [], []
        for name in frame.columns:
            column = frame[name]
            if pd.api.types.is_float_dtype(column):
                present = column.dropna()
                median = float(present.median()) if len(present) else 0.0
                filled = column.fillna(median)
                self.numeric.append(
                    {
                        "name": name,
                        "median": median,
                        "mean": float(filled.mean()),
                        "std": float(filled.std(ddof=0)) or 1.0,
                        "indicator": bool(column.isna().any()),
                    }
                )
            else:
                values = column.fillna(MISSING_CATEGORY)
                self.categorical.append({"name": name, "categories": sorted(values.unique().tolist())})
        return self

    @property
    def columns(self) -> list[str]:
        return [c["name"] for c in self.numeric] + [c["name"] for c in self.categorical]

    @property
    def feature_names(self) -> list[str]:
        names = [c["name"] for c in self.numeric]
        names += [f"{c['name']}_missing" for c in self.numeric if c["indicator"]]
        names += [f"{c['name']}={v}" for c in self.categorical for v in c["categories"]]
        return names

    def transform(self, inputs: pd.DataFrame) -> torch.Tensor:
        return torch.from_numpy(self.feature_matrix(inputs))

    def feature_matrix(self, inputs: pd.DataFrame) -> np.ndarray:
        _require_columns(inputs, self.columns, "feature")
        n = len(inputs)
        blocks = []
        for spec in self.numeric:
            values = coerce_numeric(inputs[spec["name"]]).to_numpy()
            missing = np.isnan(values)
            blocks.append(((np.where(missing, spec["median"], values) - spec["mean"]) / spec["std"])[:, None])
        for spec in self.numeric:
            if spec["indicator"]:
                blocks.append(inputs[spec["name"]].isna().to_numpy(dtype=float)[:, None])
        for spec in self.categorical:
            values = inputs[spec["name"]].map(lambda v: MISSING_CATEGORY if pd.isna(v) else category_label(v)).to_numpy()
            blocks.append((values[:, None] == np.array(spec["categories"], dtype=object)[None, :]).astype(float))
        return np.hstack(blocks).astype(np.float32) if blocks else np.zeros((n, 0), np.float32)

    def write_features(self, source: str | Path, out_path: str | Path, *, chunksize: int = 100_000) -> Path:
        """Transform a CSV chunk by chunk into a ``.npy`` feature file (for :class:`MemmapDataset`).

        Only one chunk is in memory at a time, so the table may be larger than memory.
        """
        from numpy.lib.format import open_memmap

        n_rows = sum(len(chunk) for chunk in pd.read_csv(source, usecols=[0], chunksize=chunksize))
        features = open_memmap(out_path, mode="w+", dtype=np.float32, shape=(n_rows, len(self.feature_names)))
        start = 0
        for chunk in pd.read_csv(source, chunksize=chunksize, na_values=MISSING_CODES, skipinitialspace=True):
            chunk.columns = [str(c).strip() for c in chunk.columns]
            features[start : start + len(chunk)] = self.feature_matrix(chunk)
            start += len(chunk)
        features.flush()
        return Path(out_path)

    def model_kwargs(self) -> dict[str, Any]:
        return {"in_features": len(self.feature_names)}

    def reading_config(self) -> dict[str, Any]:
        numeric = [c["name"] for c in self.numeric]
        categorical = [c["name"] for c in self.categorical]
        return {"feature_columns": numeric + categorical, "numeric_columns": numeric, "categorical_columns": categorical}

    def get_config(self) -> dict[str, Any]:
        return {"numeric": self.numeric, "categorical": self.categorical, "feature_names": self.feature_names}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TabularPreprocessor:
        return cls(config["numeric"], config["categorical"])
