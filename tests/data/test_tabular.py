"""Clinical tables: reading, schema inference, preprocessing, and refusing bad input clearly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from medtorch.config import DataConfig
from medtorch.data.base import Records, detect_modality
from medtorch.data.tabular import MISSING_CATEGORY, Tabular, TabularPreprocessor, read_table
from medtorch.errors import ConfigError, DataError
from medtorch.tasks import infer_task

TARGET = "outcome"


def _read(source, **config) -> Records:
    return Tabular().read(source, DataConfig(target=config.pop("target", TARGET), **config))


# ---------------------------------------------------------------- reading
@pytest.mark.parametrize("code", ["?", "N/A", "", "NA", "null"])
def test_missing_code_in_a_numeric_column_becomes_nan(tmp_path, code):
    path = tmp_path / "codes.csv"
    path.write_text(f"bmi,sex,{TARGET}\n22.5,F,0\n{code},M,1\n30.1,F,1\n")
    records = _read(path)
    bmi = records.inputs["bmi"]
    assert pd.api.types.is_float_dtype(bmi)
    assert bmi.isna().tolist() == [False, True, False]
    assert bmi.iloc[2] == 30.1


@pytest.mark.parametrize("code", ["?", "N/A", ""])
def test_missing_code_in_a_categorical_column_becomes_nan(tmp_path, code):
    path = tmp_path / "codes.csv"
    path.write_text(f"smoker,age,{TARGET}\nnever,40,0\n{code},50,1\ncurrent,60,1\n")
    assert _read(path).inputs["smoker"].isna().tolist() == [False, True, False]


@pytest.mark.parametrize("code", ["?", "N/A", "", "  "])
def test_missing_code_in_a_dataframe_becomes_nan(code):
    frame = pd.DataFrame({"bmi": ["22.5", code, "30.1"], "sex": ["F", code, "M"], TARGET: [0, 1, 1]})
    inputs = _read(frame).inputs
    assert inputs["bmi"].isna().tolist() == [False, True, False]
    assert inputs["sex"].isna().tolist() == [False, True, False]


def test_extra_missing_codes_from_the_config_become_nan(tmp_path):
    path = tmp_path / "codes.csv"
    path.write_text(f"bmi,{TARGET}\n22.5,0\n-999,1\n30.1,1\n")
    assert _read(path, missing_values=[-999]).inputs["bmi"].isna().tolist() == [False, True, False]


def test_per_column_missing_codes_apply_to_that_column_only(tmp_path):
    path = tmp_path / "pima.csv"
    path.write_text(f"Glucose,Pregnancies,{TARGET}\n0,0,1\n120,2,0\n0,3,1\n")
    inputs = _read(path, column_missing_values={"Glucose": [0]}).inputs
    assert inputs["Glucose"].isna().tolist() == [True, False, True]
    assert inputs["Pregnancies"].tolist() == [0.0, 2.0, 3.0]


def test_rows_without_a_label_are_dropped(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(f"x,{TARGET}\n1,0\n2,?\n3,1\n4,\n")
    records = _read(path)
    assert records.inputs["x"].tolist() == [1.0, 3.0]
    assert records.target.tolist() == [0, 1]


def test_tsv_file_is_read_with_tabs(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text(f"x\tsex\t{TARGET}\n1.5\tF\t0\n2.5\tM\t1\n")
    records = _read(path)
    assert records.inputs["x"].tolist() == [1.5, 2.5]


def test_parquet_file_reads_like_its_csv(tmp_path, clinical_frame):
    pytest.importorskip("pyarrow")
    clinical_frame.to_parquet(tmp_path / "t.parquet")
    clinical_frame.to_csv(tmp_path / "t.csv", index=False)
    from_parquet, from_csv = _read(tmp_path / "t.parquet"), _read(tmp_path / "t.csv")
    pd.testing.assert_frame_equal(from_parquet.inputs, from_csv.inputs, check_dtype=False)
    np.testing.assert_array_equal(from_parquet.target, from_csv.target)


def test_header_names_are_stripped(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(f" age , sex ,{TARGET}\n40,F,0\n50,M,1\n")
    assert list(_read(path).inputs.columns) == ["age", "sex"]


def test_csv_path_is_detected_as_tabular(clinical_csv):
    assert detect_modality(clinical_csv).name == "tabular"
    assert detect_modality(pd.DataFrame({"a": [1]})).name == "tabular"


# ---------------------------------------------------------------- schema inference
def test_numbers_are_numeric_and_text_is_categorical(clinical_frame):
    inputs = _read(clinical_frame).inputs
    for name in ("age", "sbp", "glucose"):
        assert pd.api.types.is_float_dtype(inputs[name]), name
    for name in ("sex", "smoker"):
        assert not pd.api.types.is_numeric_dtype(inputs[name]), name


def test_declared_categorical_column_stays_categorical(clinical_frame):
    frame = clinical_frame.assign(stage=np.tile([1, 2, 3], 100))
    inputs = _read(frame, categorical_columns=["stage"]).inputs
    assert set(inputs["stage"].dropna()) == {"1", "2", "3"}


def test_declared_column_that_does_not_exist_is_refused(clinical_frame):
    with pytest.raises(DataError, match=r"declared column\(s\) 'stage' not found"):
        _read(clinical_frame, numeric_columns=["stage"])


def test_column_named_id_is_dropped(make_frame):
    records = _read(make_frame(with_id=True))
    assert "id" not in records.inputs.columns
    assert "age" in records.inputs.columns


def test_running_row_number_is_dropped_as_identifier(clinical_frame):
    frame = clinical_frame.copy()
    frame.insert(0, "row", np.arange(1, len(frame) + 1))
    assert "row" not in _read(frame).inputs.columns


def test_unique_text_column_is_dropped_as_identifier(clinical_frame, tmp_path):
    """A column like ``name`` or an accession code, different in every row, is an identifier:
    as a one-hot feature it would memorise the training rows."""
    frame = clinical_frame.copy()
    frame.insert(0, "accession", [f"ACC-{i:05d}" for i in range(len(frame))])
    frame.to_csv(tmp_path / "t.csv", index=False)
    assert "accession" not in _read(tmp_path / "t.csv").inputs.columns


def test_unnamed_index_column_is_dropped(clinical_frame, tmp_path):
    path = tmp_path / "t.csv"
    clinical_frame.to_csv(path)  # writes the index as an unnamed first column
    assert list(_read(path).inputs.columns) == ["age", "sex", "sbp", "glucose", "smoker"]


def test_patient_id_column_becomes_the_group_not_a_feature(make_frame):
    frame = make_frame(rows_per_patient=4)
    records = _read(frame)
    assert "patient_id" not in records.inputs.columns
    np.testing.assert_array_equal(records.groups, frame["patient_id"].astype(str).to_numpy())


def test_configured_group_column_is_used(clinical_frame):
    frame = clinical_frame.assign(hospital_number=np.repeat(np.arange(100), 3))
    records = _read(frame, group_column="hospital_number")
    assert "hospital_number" not in records.inputs.columns
    assert records.groups[:4].tolist() == ["0", "0", "0", "1"]


def test_sex_and_age_are_found_as_subgroup_attributes(clinical_frame):
    records = _read(clinical_frame)
    assert list(records.attributes.columns) == ["age", "sex"]
    assert records.attributes["sex"].tolist() == clinical_frame["sex"].tolist()


def test_subgroup_attributes_stay_features(clinical_frame):
    assert {"age", "sex"} <= set(_read(clinical_frame).inputs.columns)


def test_target_and_dropped_columns_are_not_features(clinical_frame):
    inputs = _read(clinical_frame, drop_columns=["sbp"]).inputs
    assert TARGET not in inputs.columns
    assert "sbp" not in inputs.columns


def test_numeric_target_keeps_integer_labels(clinical_frame):
    target = _read(clinical_frame).target
    assert target.dtype == np.int64
    assert set(target) == {0, 1}


def test_text_target_labels_are_stripped(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(f"x,{TARGET}\n1,yes \n2, no\n3,yes\n")
    assert _read(path).target.tolist() == ["yes", "no", "yes"]


def test_several_target_columns_make_a_two_dimensional_target(clinical_frame):
    frame = clinical_frame.assign(second=1 - clinical_frame[TARGET])
    records = _read(frame, target=[TARGET, "second"])
    assert records.target.shape == (300, 2)
    assert "second" not in records.inputs.columns


def test_prediction_input_needs_no_target(clinical_frame):
    records = Tabular().read(clinical_frame.drop(columns=TARGET), DataConfig(), with_target=False)
    assert records.target is None
    assert len(records) == 300


# ---------------------------------------------------------------- preprocessing
def _fit(frame: pd.DataFrame) -> TabularPreprocessor:
    return TabularPreprocessor().fit(_read(frame))


def test_preprocessor_learns_statistics_from_training_rows_only(clinical_frame):
    train, rest = clinical_frame.iloc[:200], clinical_frame.iloc[200:].copy()
    rest["glucose"] += 1000  # would move every statistic if the held-out rows leaked in
    preprocessor = _fit(train)
    glucose = next(spec for spec in preprocessor.numeric if spec["name"] == "glucose")
    sbp = next(spec for spec in preprocessor.numeric if spec["name"] == "sbp")
    assert glucose["median"] == pytest.approx(train["glucose"].median())
    assert glucose["mean"] == pytest.approx(train["glucose"].mean())
    assert glucose["std"] == pytest.approx(train["glucose"].std(ddof=0))
    assert sbp["median"] == pytest.approx(train["sbp"].median())


def test_preprocessor_standardises_numeric_columns(clinical_frame):
    frame = clinical_frame.assign(sbp=clinical_frame["sbp"].fillna(130.0))
    preprocessor = _fit(frame)
    matrix = preprocessor.feature_matrix(_read(frame).inputs)
    column = preprocessor.feature_names.index("glucose")
    assert matrix[:, column].mean() == pytest.approx(0, abs=1e-5)
    assert matrix[:, column].std() == pytest.approx(1, abs=1e-4)


def test_missing_numbers_are_imputed_with_the_train_median_and_flagged(clinical_frame):
    preprocessor = _fit(clinical_frame)
    names = preprocessor.feature_names
    assert "sbp_missing" in names and "glucose_missing" not in names
    inputs = _read(clinical_frame).inputs
    matrix = preprocessor.feature_matrix(inputs)
    missing = inputs["sbp"].isna().to_numpy()
    assert missing.any()
    np.testing.assert_array_equal(matrix[:, names.index("sbp_missing")], missing.astype(np.float32))
    spec = next(s for s in preprocessor.numeric if s["name"] == "sbp")
    imputed = (spec["median"] - spec["mean"]) / spec["std"]
    np.testing.assert_allclose(matrix[missing, names.index("sbp")], imputed, rtol=1e-5)


def test_categories_are_one_hot_encoded_with_a_missing_category(clinical_frame):
    preprocessor = _fit(clinical_frame)
    smoker = next(c for c in preprocessor.categorical if c["name"] == "smoker")
    assert smoker["categories"] == sorted(["current", "former", "never", MISSING_CATEGORY])
    inputs = _read(clinical_frame).inputs
    matrix = preprocessor.feature_matrix(inputs)
    block = [preprocessor.feature_names.index(f"smoker={c}") for c in smoker["categories"]]
    np.testing.assert_array_equal(matrix[:, block].sum(axis=1), 1)


def test_unseen_category_at_transform_gives_an_all_zero_one_hot(clinical_frame):
    preprocessor = _fit(clinical_frame)
    new = _read(clinical_frame.head(3)).inputs.copy()
    new.loc[0, "smoker"] = "vapes"
    matrix = preprocessor.feature_matrix(new)
    names = preprocessor.feature_names
    block = [i for i, name in enumerate(names) if name.startswith("smoker=")]
    np.testing.assert_array_equal(matrix[0, block], 0)
    assert matrix[1, block].sum() == 1
    assert np.isfinite(matrix).all()


def test_model_width_equals_the_number_of_features(clinical_frame):
    preprocessor = _fit(clinical_frame)
    # age, sbp, glucose + 1 indicator (sbp) + sex (F, M) + smoker (3 + missing)
    assert preprocessor.model_kwargs() == {"in_features": 3 + 1 + 2 + 4}
    assert preprocessor.transform(_read(clinical_frame).inputs).shape == (300, 10)


def test_preprocessor_config_round_trip_gives_identical_matrices(clinical_frame):
    preprocessor = _fit(clinical_frame.iloc[:200])
    config = json.loads(json.dumps(preprocessor.get_config()))  # what a bundle stores
    rebuilt = TabularPreprocessor.from_config(config)
    inputs = _read(clinical_frame).inputs
    np.testing.assert_array_equal(preprocessor.feature_matrix(inputs), rebuilt.feature_matrix(inputs))
    assert rebuilt.feature_names == config["feature_names"]


def test_preprocessor_refuses_input_missing_a_feature_column(clinical_frame):
    preprocessor = _fit(clinical_frame)
    with pytest.raises(DataError, match=r"feature column\(s\) 'glucose' not found"):
        preprocessor.feature_matrix(_read(clinical_frame).inputs.drop(columns="glucose"))


def test_transform_ignores_column_order_and_extra_columns(clinical_frame):
    preprocessor = _fit(clinical_frame)
    inputs = _read(clinical_frame).inputs
    shuffled = inputs[inputs.columns[::-1]].assign(extra=1.0)
    np.testing.assert_array_equal(preprocessor.feature_matrix(inputs), preprocessor.feature_matrix(shuffled))


# ---------------------------------------------------------------- bad input
def _write(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return path


def _numbers_csv(rows: int = 40, garbage_row: int | None = None, labels=(0, 1), unique_values: bool = False) -> str:
    """``bmi`` (repeating values, as measurements do, unless ``unique_values``), ``age``, target."""
    lines = [f"bmi,age,{TARGET}"]
    ages = np.random.default_rng(0).integers(20, 90, rows)
    for i in range(rows):
        value = 20 + i * 0.3 if unique_values else 20 + (i % 9) * 1.5
        bmi = "abc" if i == garbage_row else f"{value:.1f}"
        lines.append(f"{bmi},{ages[i]},{labels[i % len(labels)]}")
    return "\n".join(lines) + "\n"


def test_missing_target_column_is_named_with_the_available_columns(tmp_path):
    path = _write(tmp_path, "t.csv", _numbers_csv())
    with pytest.raises(DataError, match=r"target column\(s\) 'diagnosis' not found; the columns are: bmi, age, outcome"):
        _read(path, target="diagnosis")


def test_no_target_given_is_a_config_error(tmp_path):
    path = _write(tmp_path, "t.csv", _numbers_csv())
    with pytest.raises(ConfigError, match="no target column given"):
        Tabular().read(path, DataConfig())


def test_empty_file_is_refused(tmp_path):
    path = _write(tmp_path, "empty.csv", "")
    with pytest.raises(DataError, match="empty.csv is empty"):
        _read(path)


def test_blank_lines_only_file_is_refused(tmp_path):
    path = _write(tmp_path, "blank.csv", "\n\n\n")
    with pytest.raises(DataError, match="empty"):
        _read(path)


def test_header_only_csv_is_refused(tmp_path):
    path = _write(tmp_path, "header.csv", f"bmi,age,{TARGET}\n")
    with pytest.raises(DataError, match="has a header but no rows"):
        _read(path)


def test_target_with_one_class_is_refused(tmp_path):
    records = _read(_write(tmp_path, "t.csv", _numbers_csv(labels=(1,))))
    with pytest.raises(DataError, match=r"single class \(1\)"):
        infer_task(records.target)


def test_target_with_no_values_is_refused(tmp_path):
    path = _write(tmp_path, "t.csv", f"x,{TARGET}\n1,?\n2,\n")
    with pytest.raises(DataError, match=f"target column '{TARGET}' has no values"):
        _read(path)


def test_text_in_a_numeric_column_is_refused_with_row_and_value(tmp_path):
    path = _write(tmp_path, "t.csv", _numbers_csv(garbage_row=17))
    with pytest.raises(DataError, match=r"column 'bmi' is numeric but row 18 holds 'abc'"):
        _read(path)


def test_text_in_a_numeric_column_of_distinct_values_is_refused_not_dropped(tmp_path):
    """A measurement column where every value differs (common in small tables) and one cell holds
    text must be refused like any other numeric column, not silently dropped as a text identifier."""
    path = _write(tmp_path, "t.csv", _numbers_csv(garbage_row=17, unique_values=True))
    with pytest.raises(DataError, match=r"column 'bmi' is numeric but row 18 holds 'abc'"):
        _read(path)


def test_text_in_a_numeric_column_is_accepted_when_declared_categorical(tmp_path):
    path = _write(tmp_path, "t.csv", _numbers_csv(garbage_row=17))
    assert "abc" in set(_read(path, categorical_columns=["bmi"]).inputs["bmi"])


def test_random_binary_bytes_are_refused(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    path = _write(tmp_path, "noise.csv", noise)
    with pytest.raises(DataError, match="noise.csv"):
        _read(path)


def test_png_image_named_csv_is_refused(tmp_path):
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x02\x00\x00\x00" + bytes(range(256)) * 8
    path = _write(tmp_path, "scan.csv", png)
    with pytest.raises(DataError, match="scan.csv is not a text table"):
        _read(path)


def test_nonexistent_path_is_refused(tmp_path):
    with pytest.raises(DataError, match="not found"):
        detect_modality(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="not found"):
        read_table(tmp_path / "nope.csv")


def test_ragged_csv_is_refused_with_the_parser_message(tmp_path):
    path = _write(tmp_path, "ragged.csv", f"a,b,{TARGET}\n1,2,0\n1,2,3,4,5\n")
    with pytest.raises(DataError, match="cannot read .*ragged.csv as a table"):
        _read(path)


def test_missing_group_column_is_named(clinical_frame):
    with pytest.raises(DataError, match=r"group column\(s\) 'patient' not found"):
        _read(clinical_frame, group_column="patient")


def test_table_with_only_a_target_has_no_features(tmp_path):
    path = _write(tmp_path, "t.csv", f"{TARGET}\n0\n1\n")
    with pytest.raises(DataError, match="no feature columns"):
        _read(path)
