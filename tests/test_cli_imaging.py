"""The ``medtorch`` command on images, run in a subprocess the way a user runs it; we read the run folder.

Each source (PNG class folder, CSV manifest, MedMNIST-style npz, DICOM folder, NIfTI volumes)
carries the same known answer: positives hold a bright square (a cube for volumes).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import medtorch

SIZE, SQUARE, PER_CLASS = 16, 5, 20
CLASSES = ("clear", "lesion")
FAST_CONFIG = """\
model: {width: 8}
train: {batch_size: 8}
evaluate: {bootstrap: 0, baselines: false}
"""
# augmentation is the default, and runs in the 2-D (PNG) and 3-D (NIfTI) runs; the others skip it to stay fast
NO_AUGMENT = "data: {augment: false}\n"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def squares(n: int, seed: int, size: int = SIZE, spatial_dims: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """uint8 noise images (or volumes); every other one (label 1) carries a bright square at a random place."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 90, size=(n,) + (size,) * spatial_dims).astype(np.uint8)
    labels = np.arange(n) % 2
    for image, label in zip(images, labels):
        if label:
            corner = rng.integers(0, size - SQUARE, size=spatial_dims)
            image[tuple(slice(c, c + SQUARE) for c in corner)] = 230
    return images, labels


def write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def write_ct(path: Path, pixels: np.ndarray) -> Path:
    """A small CT DICOM: stored values ``pixels * 4``, rescaled by -1024 (so 0 reads as air, -1024 HU)."""
    from pydicom.dataset import Dataset
    from pydicom.uid import CTImageStorage, generate_uid

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, generate_uid(), "CT"
    ds.PatientID = path.stem
    ds.set_pixel_data((pixels.astype(np.int16) * 4), "MONOCHROME2", 16)
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_nifti(path: Path, volume: np.ndarray) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(volume.astype(np.int16), np.eye(4)), path)
    return path


def class_folder(root: Path, writer, suffix: str, spatial_dims: int = 2, seed: int = 0) -> Path:
    images, labels = squares(2 * PER_CLASS, seed, spatial_dims=spatial_dims)
    for i, (image, label) in enumerate(zip(images, labels)):
        writer(root / CLASSES[label] / f"{i:03d}{suffix}", image)
    return root


def truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[:60])
    return path


# ---------------------------------------------------------------- sources
def png_folder(root: Path) -> tuple[Path, list[str]]:
    """A PNG class folder holding one truncated file; trained with --skip-bad-files."""
    folder = class_folder(root / "png", write_png, ".png")
    truncate(folder / "lesion" / "001.png")
    return folder, ["--skip-bad-files"]


def csv_manifest(root: Path) -> tuple[Path, list[str]]:
    images, labels = squares(2 * PER_CLASS, seed=1)
    rows = []
    for i, (image, label) in enumerate(zip(images, labels)):
        write_png(root / "study" / "images" / f"{i:03d}.png", image)
        rows.append({"path": f"images/{i:03d}.png", "patient_id": f"P{i // 2:02d}", "finding": CLASSES[label]})
    manifest = root / "study" / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest, ["--target", "finding"]


def npz_archive(root: Path) -> tuple[Path, list[str]]:
    arrays = {}
    for split, n, seed in (("train", 32, 2), ("val", 8, 3), ("test", 8, 4)):
        images, labels = squares(n, seed)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels[:, None]
    path = root / "squares.npz"
    np.savez(path, **arrays)
    return path, []


def dicom_folder(root: Path) -> tuple[Path, list[str]]:
    return class_folder(root / "dicom", write_ct, ".dcm", seed=5), []


def nifti_folder(root: Path) -> tuple[Path, list[str]]:
    return class_folder(root / "nifti", write_nifti, ".nii.gz", spatial_dims=3, seed=6), []


SOURCES = {"png_folder": png_folder, "csv_manifest": csv_manifest, "npz": npz_archive, "dicom_folder": dicom_folder, "nifti": nifti_folder}
AUGMENTED = {"png_folder", "nifti"}
SPATIAL_DIMS = {"nifti": 3}


@pytest.fixture(scope="module")
def fast_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "fast.yaml"
    path.write_text(FAST_CONFIG)
    return path


@pytest.fixture(scope="module")
def no_augment_config(fast_config) -> Path:
    path = fast_config.with_name("no_augment.yaml")
    path.write_text(FAST_CONFIG + NO_AUGMENT)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fast_config, no_augment_config, run_cli):
    """``trained(source)``: the run folder of one finished `medtorch train` on that source (trained once per module)."""
    runs: dict[str, tuple[Path, object]] = {}

    def get(source: str) -> Path:
        if source not in runs:  # a failed run is kept too, so it is not retried by every test that needs it
            root = tmp_path_factory.mktemp(source)
            data, extra = SOURCES[source](root)
            config = fast_config if source in AUGMENTED else no_augment_config
            args = ("train", "--data", data, "--out", root / "run", "--model", "small_cnn", "--epochs", 2, "--config", config, "--quiet", *extra)
            runs[source] = (root / "run", run_cli(*args))
        out, process = runs[source]
        assert process.returncode == 0, process.stderr
        return out

    return get


def _assert_one_line_error(process) -> str:
    assert process.returncode == 2, f"exit {process.returncode}; stderr: {process.stderr}"
    assert "Traceback" not in process.stderr + process.stdout
    lines = process.stderr.splitlines()
    assert len(lines) == 1, f"stderr has {len(lines)} lines: {process.stderr!r}"
    assert lines[0].startswith("medtorch: error: ")
    return lines[0]


def _contract(run: Path) -> dict:
    return json.loads((run / "bundle" / "medtorch.json").read_text())["preprocessing"]


# ---------------------------------------------------------------- train, every source
@pytest.mark.slow
@pytest.mark.parametrize("source", list(SOURCES))
def test_train_records_the_input_contract_in_the_bundle(trained, source):
    contract = _contract(trained(source))
    spatial_dims = SPATIAL_DIMS.get(source, 2)
    assert contract["image_size"] == SIZE
    assert contract["channels"] == 1
    assert contract["spatial_dims"] == spatial_dims
    assert len(contract["mean"]) == len(contract["std"]) == 1
    assert 0 < contract["mean"][0] < 1 and 0 < contract["std"][0] < 1
    assert "mean" in contract["intensity"] and "std" in contract["intensity"]


@pytest.mark.slow
@pytest.mark.parametrize("source", list(SOURCES))
def test_train_reports_auroc_in_metrics_json(trained, source):
    metrics = json.loads((trained(source) / "metrics.json").read_text())
    assert metrics["model"] == "small_cnn"
    assert metrics["task"] == "binary"
    assert 0 <= metrics["metrics"]["auroc"]["value"] <= 1


@pytest.mark.slow
@pytest.mark.parametrize("source", list(SOURCES))
def test_train_bundle_loads_with_the_model_sized_to_the_contract(trained, source):
    bundle = medtorch.load_bundle(trained(source) / "bundle")
    assert bundle.modality.name == "image"
    assert bundle.model_kwargs["image_size"] == SIZE
    assert bundle.model_kwargs["spatial_dims"] == SPATIAL_DIMS.get(source, 2)
    assert bundle.model_kwargs["in_channels"] == 1


@pytest.mark.slow
def test_npz_run_keeps_the_official_split(trained):
    metrics = json.loads((trained("npz") / "metrics.json").read_text())
    assert [metrics["splits"][part]["n"] for part in ("train", "val", "test")] == [32, 8, 8]
    assert metrics["evaluated_on"] == "test"


@pytest.mark.slow
def test_evaluate_scores_one_split_of_an_npz_with_the_bundle(trained, run_cli, tmp_path):
    run = trained("npz")
    out = tmp_path / "evaluation"
    process = run_cli("evaluate", run / "bundle", "--data", run.parent / "squares.npz", "--split", "test", "--out", out, "--bootstrap", 0, "-q")
    assert process.returncode == 0, process.stderr
    evaluated = json.loads((out / "metrics.json").read_text())
    trained_metrics = json.loads((run / "metrics.json").read_text())
    assert evaluated["n"] == 8 and evaluated["evaluated_on"] == "external"
    assert evaluated["metrics"]["auroc"]["value"] == pytest.approx(trained_metrics["metrics"]["auroc"]["value"])
    assert "near_duplicates" in evaluated["checks"]


@pytest.mark.slow
def test_evaluate_with_a_split_the_data_lacks_exits_2(trained, run_cli, tmp_path):
    run = trained("npz")
    message = _assert_one_line_error(run_cli("evaluate", run / "bundle", "--data", run.parent / "squares.npz", "--split", "holdout", "--out", tmp_path / "e"))
    assert "no rows in split 'holdout'" in message


@pytest.mark.slow
def test_manifest_run_keeps_each_patient_on_one_side(trained):
    metrics = json.loads((trained("csv_manifest") / "metrics.json").read_text())
    assert sum(metrics["splits"][part]["patients"] for part in ("train", "val", "test")) == PER_CLASS


@pytest.mark.slow
def test_npz_run_learns_the_bright_square(trained):
    """A strong signal: even two epochs of a narrow CNN separate the classes on the official test split."""
    metrics = json.loads((trained("npz") / "metrics.json").read_text())
    assert metrics["metrics"]["auroc"]["value"] >= 0.75


# ---------------------------------------------------------------- unreadable files
def test_train_on_a_folder_with_a_corrupt_image_exits_2_naming_it(run_cli, tmp_path, fast_config):
    folder, _ = png_folder(tmp_path)
    process = run_cli("train", "--data", folder, "--out", tmp_path / "run", "--model", "small_cnn", "--epochs", 1, "--config", fast_config)
    message = _assert_one_line_error(process)
    assert str(folder / "lesion" / "001.png") in message
    assert "--skip-bad-files" in message
    assert not (tmp_path / "run").exists()  # stopped before training: no run folder at all


@pytest.mark.slow
def test_skip_bad_files_trains_and_lists_the_skipped_file_in_the_run_folder(trained):
    run = trained("png_folder")
    skipped = (run / "skipped_files.txt").read_text().splitlines()
    assert len(skipped) == 1
    assert "lesion/001.png" in skipped[0]
    metrics = json.loads((run / "metrics.json").read_text())
    assert sum(metrics["splits"][part]["n"] for part in ("train", "val", "test")) == 2 * PER_CLASS - 1


@pytest.mark.slow
def test_a_run_without_bad_files_writes_no_skipped_files_list(trained):
    assert not (trained("dicom_folder") / "skipped_files.txt").exists()


# ---------------------------------------------------------------- predict
def _predict(run_cli, bundle: Path, data: Path, out: Path) -> pd.DataFrame:
    process = run_cli("predict", bundle, data, "--out", out)
    assert process.returncode == 0, process.stderr
    assert "wrote 1 predictions" in process.stdout
    return pd.read_csv(out)


def _assert_same_predictions(from_cli: pd.DataFrame, from_api: pd.DataFrame) -> None:
    column = f"probability_{CLASSES[1]}"
    assert list(from_cli.columns) == ["input", column, "prediction", "prediction_set", "uncertain"]
    np.testing.assert_allclose(from_cli[column], from_api[column], atol=1e-6, rtol=0)
    for name in ("prediction", "prediction_set", "uncertain"):
        assert list(from_cli[name].astype(str)) == list(from_api[name].astype(str).replace("", "nan")), name


@pytest.fixture(scope="module")
def png_prediction(trained, run_cli, tmp_path_factory) -> tuple[Path, Path, pd.DataFrame]:
    """`medtorch predict` of the PNG bundle on one new PNG: (bundle, the PNG, the CSV written)."""
    folder = tmp_path_factory.mktemp("predict_png")
    bundle = trained("png_folder") / "bundle"
    image = write_png(folder / "new.png", squares(2, seed=11)[0][1])
    return bundle, image, _predict(run_cli, bundle, image, folder / "preds.csv")


@pytest.mark.slow
def test_predict_on_a_png_matches_the_python_api(png_prediction):
    bundle, image, from_cli = png_prediction
    _assert_same_predictions(from_cli, medtorch.load_bundle(bundle).predict(image))


@pytest.mark.slow
def test_predict_on_a_dicom_matches_the_python_api(trained, run_cli, tmp_path):
    bundle = trained("dicom_folder") / "bundle"
    image = write_ct(tmp_path / "new.dcm", squares(2, seed=12)[0][1])
    from_cli = _predict(run_cli, bundle, image, tmp_path / "preds.csv")
    _assert_same_predictions(from_cli, medtorch.load_bundle(bundle).predict(image))


@pytest.mark.slow
@pytest.mark.shared_data
def test_predict_on_the_shared_ct_dicom_matches_the_python_api(trained, run_cli, tmp_path, shared_data):
    bundle = trained("dicom_folder") / "bundle"
    image = shared_data / "medical_image_files" / "dicom" / "pydicom_CT_small.dcm"  # 128 x 128, resized by the contract
    from_cli = _predict(run_cli, bundle, image, tmp_path / "preds.csv")
    _assert_same_predictions(from_cli, medtorch.load_bundle(bundle).predict(image))


@pytest.mark.slow
def test_predict_applies_the_bundles_contract(png_prediction):
    """The probability equals the model applied by hand: pixels / 255, then (x - mean) / std, then the
    temperature, each read from medtorch.json."""
    bundle, image, from_cli = png_prediction
    pixels = np.asarray(Image.open(image))
    contract = _contract(bundle.parent)
    calibration = json.loads((bundle / "medtorch.json").read_text())["calibration"]
    assert calibration["method"] == "temperature"
    x = (torch.from_numpy(pixels.astype(np.float32) / 255) - contract["mean"][0]) / contract["std"][0]
    with torch.no_grad():
        logit = medtorch.load_bundle(bundle).model.eval()(x[None, None])
        expected = torch.sigmoid(logit / calibration["params"]["temperature"]).item()
    assert from_cli[f"probability_{CLASSES[1]}"].iloc[0] == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
def test_predict_converts_an_rgb_png_for_a_grey_model(trained, run_cli, tmp_path):
    """An RGB file with equal channels is the same picture as its grey twin, and gets the same probability."""
    bundle = trained("png_folder") / "bundle"
    pixels = squares(2, seed=14)[0][1]
    rgb = write_png(tmp_path / "rgb.png", np.repeat(pixels[..., None], 3, axis=-1))
    grey = write_png(tmp_path / "grey.png", pixels)
    from_cli = _predict(run_cli, bundle, rgb, tmp_path / "preds.csv")
    _assert_same_predictions(from_cli, medtorch.load_bundle(bundle).predict(grey))


@pytest.mark.slow
def test_predict_on_a_volume_with_a_2d_model_exits_2(trained, run_cli, tmp_path):
    volume = write_nifti(tmp_path / "volume.nii.gz", squares(2, seed=15, spatial_dims=3)[0][1])
    process = run_cli("predict", trained("png_folder") / "bundle", volume, "--out", tmp_path / "preds.csv")
    message = _assert_one_line_error(process)
    assert "3-D image was given to a model trained on 2-D images" in message
    assert not (tmp_path / "preds.csv").exists()


@pytest.mark.slow
def test_predictions_on_a_folder_name_the_image_of_each_row(trained, tmp_path):
    """`medtorch predict BUNDLE folder/` writes this table; without file names its rows cannot be matched to images."""
    images = [write_png(tmp_path / "new" / f"{name}.png", squares(2, seed=18)[0][i]) for i, name in enumerate(("first", "second"))]
    table = medtorch.load_bundle(trained("png_folder") / "bundle").predict(tmp_path / "new")
    assert len(table) == 2
    named = [column for column in table.columns if table[column].astype(str).str.contains("first.png").any()]
    assert named, f"no column names the images; columns: {list(table.columns)}"
    assert [Path(str(v)).name for v in table[named[0]]] == [p.name for p in images]


# ---------------------------------------------------------------- explain
@pytest.mark.slow
def test_explain_writes_a_png_heatmap(trained, run_cli, tmp_path):
    image = write_png(tmp_path / "new.png", squares(2, seed=16)[0][1])
    out = tmp_path / "heat.png"
    process = run_cli("explain", trained("png_folder") / "bundle", image, "--out", out)
    assert process.returncode == 0, process.stderr
    assert f"heatmap written to {out}" in process.stdout
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_explain_on_a_tabular_bundle_exits_2(run_cli, tmp_path, clinical_frame):
    from medtorch.bundle import Bundle, save_bundle
    from medtorch.config import DataConfig
    from medtorch.data.base import get_modality
    from medtorch.registry import create_model
    from medtorch.tasks import infer_task

    tabular = get_modality("tabular")
    records = tabular.read(clinical_frame, DataConfig(target="outcome"))
    preprocessor = tabular.preprocessor(DataConfig()).fit(records)
    kwargs = {**preprocessor.model_kwargs(), "out_features": 1, "hidden": [8]}
    bundle = save_bundle(Bundle(create_model("mlp", **kwargs), "mlp", kwargs, infer_task(records.target), tabular, preprocessor), tmp_path / "bundle")
    image = write_png(tmp_path / "new.png", squares(2, seed=17)[0][1])
    message = _assert_one_line_error(run_cli("explain", bundle, image, "--out", tmp_path / "heat.png"))
    assert "image bundles" in message
    assert not (tmp_path / "heat.png").exists()
