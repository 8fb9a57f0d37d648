"""The image modality: which sources it claims, how it reads them, and the input contract it learns."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import medtorch
from medtorch.config import DataConfig
from medtorch.data.base import Records, detect_modality
from medtorch.data.imaging import BatchAugmentation, ImageDataset, ImagePreprocessor, Imaging
from medtorch.errors import DataError

CR_CHEST = "torchxrayvision_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"


def write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def class_folder(root: Path, per_class: int = 3, size: int = 16, classes: tuple[str, ...] = ("normal", "pneumonia")) -> Path:
    """``root/<class>/<n>.png``: grey noise images, a few per class."""
    for c, name in enumerate(classes):
        for i in range(per_class):
            write_png(root / name / f"{i}.png", noise((size, size), seed=10 * c + i))
    return root


def truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[:60])
    return path


def fitted(inputs, **settings) -> ImagePreprocessor:
    return Imaging().preprocessor(DataConfig(**settings)).fit(Records(inputs=inputs))


# ---------------------------------------------------------------- what the modality claims
def test_can_read_a_class_folder(tmp_path):
    assert Imaging.can_read(class_folder(tmp_path / "xrays"))


def test_can_read_a_manifest_csv_with_a_path_column(tmp_path):
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"path": ["a.png", "b.png"], "label": [0, 1]}).to_csv(manifest, index=False)
    assert Imaging.can_read(manifest)


def test_can_read_an_npz_archive(tmp_path):
    np.savez(tmp_path / "mnist.npz", train_images=noise((4, 8, 8)), train_labels=np.zeros((4, 1)))
    assert Imaging.can_read(tmp_path / "mnist.npz")


@pytest.mark.parametrize("name", ["chest.png", "chest.JPG", "scan.nii.gz"])
def test_can_read_a_single_image_file(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".nii.gz"):
        import nibabel as nib

        nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), dtype=np.float32), np.eye(4)), path)
    else:
        Image.fromarray(noise((8, 8))).save(path, format="JPEG" if name.lower().endswith(".jpg") else "PNG")
    assert Imaging.can_read(path)


def test_cannot_read_a_plain_clinical_csv(clinical_csv):
    assert not Imaging.can_read(clinical_csv)


def test_a_plain_clinical_csv_is_detected_as_tabular(clinical_csv):
    assert detect_modality(clinical_csv).name == "tabular"


def test_a_manifest_csv_is_detected_as_image(tmp_path):
    write_png(tmp_path / "a.png", noise((8, 8)))
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"patient_id": ["P1"], "image_path": ["a.png"], "label": [1]}).to_csv(manifest, index=False)
    assert detect_modality(manifest).name == "image"


def test_a_class_folder_is_detected_as_image(tmp_path):
    assert detect_modality(class_folder(tmp_path / "xrays")).name == "image"


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["dicom/pydicom_CT_small.dcm", "dicom/pydicom_MR_small.dcm", f"dicom/{CR_CHEST}", "nifti/monai_anatomical.nii"])
def test_shared_medical_image_files_are_claimed_by_the_image_modality(shared_data, name):
    path = shared_data / "medical_image_files" / name
    assert Imaging.can_read(path)
    assert detect_modality(path).name == "image"


# ---------------------------------------------------------------- class folders
def test_class_folder_labels_come_from_sub_folder_names(tmp_path):
    root = class_folder(tmp_path / "xrays", per_class=2)
    records = Imaging().read(root, DataConfig())
    assert list(records.target) == ["normal", "normal", "pneumonia", "pneumonia"]
    assert [Path(p).relative_to(root).as_posix() for p in records.inputs] == ["normal/0.png", "normal/1.png", "pneumonia/0.png", "pneumonia/1.png"]


def test_class_folder_ignores_non_image_files(tmp_path):
    root = class_folder(tmp_path / "xrays", per_class=2)
    (root / "normal" / "notes.txt").write_text("not an image")
    (root / "README.md").write_text("about")
    assert len(Imaging().read(root, DataConfig())) == 4


def test_class_folder_ignores_files_in_hidden_folders(tmp_path):
    """Jupyter's .ipynb_checkpoints (and .git, .thumbnails ...) are not data: their copies would leak into training."""
    root = class_folder(tmp_path / "xrays", per_class=2)
    write_png(root / "normal" / ".ipynb_checkpoints" / "0-checkpoint.png", noise((16, 16)))
    records = Imaging().read(root, DataConfig())
    assert len(records) == 4
    assert not any("/." in p for p in records.inputs)


def test_folder_without_class_sub_folders_is_a_data_error(tmp_path):
    write_png(tmp_path / "flat" / "a.png", noise((8, 8)))
    with pytest.raises(DataError, match="class sub-folders"):
        Imaging().read(tmp_path / "flat", DataConfig())


# ---------------------------------------------------------------- manifests
@pytest.fixture
def manifest(tmp_path) -> Path:
    """``study/manifest.csv`` naming ``images/<n>.png`` relative to itself; two patients, two labels."""
    study = tmp_path / "study"
    for i in range(4):
        write_png(study / "images" / f"{i}.png", noise((12, 12), seed=i))
    path = study / "manifest.csv"
    pd.DataFrame(
        {
            "path": [f"images/{i}.png" for i in range(4)],
            "patient_id": [101, 101, 202, 202],
            "effusion": [0, 1, 1, 0],
            "nodule": [1, 1, 0, 0],
        }
    ).to_csv(path, index=False)
    return path


def test_manifest_paths_are_resolved_relative_to_the_csv(manifest, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anywhere but the manifest's folder
    records = Imaging().read(manifest, DataConfig(target="effusion"))
    assert records.inputs == [str((manifest.parent / "images" / f"{i}.png").resolve()) for i in range(4)]
    assert all(Path(p).is_file() for p in records.inputs)


def test_manifest_patient_id_becomes_the_groups(manifest):
    records = Imaging().read(manifest, DataConfig(target="effusion"))
    assert list(records.groups) == ["101", "101", "202", "202"]


def test_manifest_with_several_label_columns_gives_a_2d_target(manifest):
    records = Imaging().read(manifest, DataConfig(target=["effusion", "nodule"]))
    assert records.target.shape == (4, 2)
    np.testing.assert_array_equal(records.target, [[0, 1], [1, 1], [1, 0], [0, 0]])


def test_manifest_absolute_paths_are_kept(manifest, tmp_path):
    elsewhere = write_png(tmp_path / "elsewhere" / "x.png", noise((12, 12)))
    path = manifest.with_name("absolute.csv")
    pd.DataFrame({"path": [str(elsewhere)], "label": [1]}).to_csv(path, index=False)
    assert Imaging().read(path, DataConfig()).inputs == [str(elsewhere)]


def test_manifest_missing_the_target_column_names_it(manifest):
    with pytest.raises(DataError, match="'cardiomegaly' not found in manifest.csv"):
        Imaging().read(manifest, DataConfig(target="cardiomegaly"))


# ---------------------------------------------------------------- npz archives
@pytest.fixture
def archive(tmp_path) -> Path:
    path = tmp_path / "mnist.npz"
    np.savez(
        path,
        train_images=noise((5, 10, 10), 1),
        train_labels=np.array([[0], [1], [0], [1], [1]]),
        val_images=noise((2, 10, 10), 2),
        val_labels=np.array([[0], [1]]),
        test_images=noise((3, 10, 10), 3),
        test_labels=np.array([[1], [0], [1]]),
    )
    return path


def test_npz_keeps_the_official_split(archive):
    labels = Imaging().read(archive, DataConfig()).split
    assert list(labels) == ["train"] * 5 + ["val"] * 2 + ["test"] * 3


def test_npz_labels_of_shape_n_by_1_are_flattened(archive):
    records = Imaging().read(archive, DataConfig())
    assert records.target.shape == (10,)
    np.testing.assert_array_equal(records.target, [0, 1, 0, 1, 1, 0, 1, 1, 0, 1])


def test_npz_images_are_kept_in_split_order(archive):
    records = Imaging().read(archive, DataConfig())
    with np.load(archive) as arrays:
        expected = np.concatenate([arrays["train_images"], arrays["val_images"], arrays["test_images"]])
    np.testing.assert_array_equal(records.inputs, expected)


def test_npz_of_3d_volumes_gives_a_3d_contract(tmp_path):
    """MedMNIST's 3-D sets (OrganMNIST3D, NoduleMNIST3D ...) store volumes as (N, 28, 28, 28), without a channel axis."""
    path = tmp_path / "nodule3d.npz"
    np.savez(path, train_images=noise((4, 16, 16, 16)), train_labels=np.array([[0], [1], [0], [1]]))
    preprocessor = fitted(Imaging().read(path, DataConfig()).inputs)
    assert (preprocessor.spatial_dims, preprocessor.channels, preprocessor.image_size) == (3, 1, 16)


def test_a_class_folder_has_no_predefined_split(tmp_path):
    assert Imaging().read(class_folder(tmp_path / "xrays"), DataConfig()).split is None


# ---------------------------------------------------------------- the input contract
def test_grey_images_give_one_channel():
    preprocessor = fitted(noise((3, 16, 16)))
    assert preprocessor.channels == 1
    assert preprocessor.load(noise((16, 16))).shape == (1, 16, 16)


def test_rgb_images_give_three_channels():
    preprocessor = fitted(noise((3, 16, 16, 3)))
    assert preprocessor.channels == 3
    assert preprocessor.load(noise((16, 16, 3))).shape == (3, 16, 16)


def test_a_folder_mixing_grey_and_rgb_gives_three_channels(tmp_path):
    grey = write_png(tmp_path / "xrays" / "normal" / "grey.png", noise((16, 16), 1))
    write_png(tmp_path / "xrays" / "pneumonia" / "rgb.png", noise((16, 16, 3), 2))
    records = Imaging().read(tmp_path / "xrays", DataConfig())
    preprocessor = Imaging().preprocessor(DataConfig()).fit(records)
    assert preprocessor.channels == 3
    assert preprocessor.load(str(grey)).shape == (3, 16, 16)


def test_grey_image_under_an_rgb_contract_is_repeated_into_every_channel():
    grey = noise((16, 16), 1)
    preprocessor = fitted(noise((3, 16, 16, 3)))
    mean, std = torch.tensor(preprocessor.mean).view(3, 1, 1), torch.tensor(preprocessor.std).view(3, 1, 1)
    raw = preprocessor.load(grey) * std + mean  # undo the normalisation
    expected = torch.from_numpy(grey.astype(np.float32) / 255).expand(3, 16, 16)
    torch.testing.assert_close(raw, expected, rtol=0, atol=1e-5)


def test_rgb_image_under_a_grey_contract_is_averaged_to_one_channel():
    rgb = noise((16, 16, 3), 1)
    preprocessor = fitted(noise((3, 16, 16)))
    raw = preprocessor.load(rgb) * preprocessor.std[0] + preprocessor.mean[0]
    expected = torch.from_numpy(rgb.astype(np.float32).mean(axis=-1) / 255)[None]
    torch.testing.assert_close(raw, expected, rtol=0, atol=1e-5)


def test_default_image_size_is_the_native_size_up_to_128():
    assert fitted(noise((3, 20, 20))).image_size == 20
    assert fitted(noise((3, 128, 128))).image_size == 128


def test_default_image_size_is_128_for_larger_images():
    preprocessor = fitted(noise((2, 200, 200)))
    assert preprocessor.image_size == 128
    assert preprocessor.load(noise((200, 200))).shape == (1, 128, 128)


def test_data_image_size_overrides_the_default():
    preprocessor = fitted(noise((2, 200, 200)), image_size=24)
    assert preprocessor.image_size == 24
    assert preprocessor.model_kwargs() == {"in_channels": 1, "image_size": 24, "spatial_dims": 2}
    assert preprocessor.load(noise((50, 30))).shape == (1, 24, 24)


def test_mean_and_std_are_the_training_images_statistics():
    images = np.stack([np.full((8, 8), 51, np.uint8), np.full((8, 8), 153, np.uint8)])  # 0.2 and 0.6
    preprocessor = fitted(images)
    assert preprocessor.mean == [pytest.approx(0.4, abs=1e-6)]
    assert preprocessor.std == [pytest.approx(np.std([0.2] * 64 + [0.6] * 64, ddof=1), abs=1e-6)]


def test_normalised_training_images_have_zero_mean_and_unit_std():
    images = noise((6, 16, 16, 3))
    preprocessor = fitted(images)
    batch = preprocessor.transform(images)
    torch.testing.assert_close(batch.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(batch.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_training_fits_mean_and_std_on_training_images_only(tmp_path):
    """Official npz split: train images are 0.2 / 0.4, val and test images white; the contract must not see white."""
    n = 8
    train = np.concatenate([np.full((n // 2, 16, 16), 51, np.uint8), np.full((n // 2, 16, 16), 102, np.uint8)])
    white = np.full((4, 16, 16), 255, np.uint8)
    labels = np.array([0] * (n // 2) + [1] * (n // 2))[:, None]
    np.savez(tmp_path / "d.npz", train_images=train, train_labels=labels, val_images=white, val_labels=labels[::2], test_images=white, test_labels=labels[::2])
    overrides = {"model": {"name": "small_cnn", "width": 4}, "train": {"epochs": 1}, "evaluate": {"bootstrap": 0, "baselines": False}}
    run = medtorch.train(tmp_path / "d.npz", out=tmp_path / "run", overrides=overrides, progress=False)
    contract = json.loads((run.out_dir / "bundle" / "medtorch.json").read_text())["preprocessing"]
    assert contract["mean"] == [pytest.approx(0.3, abs=1e-6)]
    assert contract["std"] == [pytest.approx(np.std([0.2] * 256 * (n // 2) + [0.4] * 256 * (n // 2), ddof=1), abs=1e-5)]


def test_config_round_trip_gives_identical_transforms():
    images = noise((5, 20, 24, 3))
    preprocessor = fitted(images, image_size=16, window=None)
    config = json.loads(json.dumps(preprocessor.get_config()))  # as the bundle stores it
    rebuilt = ImagePreprocessor.from_config(config)
    assert rebuilt.get_config() == preprocessor.get_config()
    assert torch.equal(rebuilt.transform(images), preprocessor.transform(images))


def test_config_records_the_whole_input_contract():
    config = fitted(noise((3, 16, 16)), window=[40, 400]).get_config()
    assert {"image_size", "channels", "spatial_dims", "mean", "std", "window", "intensity"} <= set(config)
    assert config["window"] == [40, 400]
    assert config["image_size"] == 16 and config["channels"] == 1 and config["spatial_dims"] == 2


def write_ct(path: Path, hounsfield: np.ndarray) -> Path:
    from pydicom.dataset import Dataset
    from pydicom.uid import CTImageStorage, generate_uid

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, generate_uid(), "CT"
    ds.set_pixel_data((hounsfield + 1024).astype(np.uint16), "MONOCHROME2", 16)
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.save_as(path, enforce_file_format=True)
    return path


def test_a_saved_window_is_applied_when_the_contract_is_reloaded(tmp_path):
    """Trained with window (40, 400): -160 HU is 0, 40 HU is 0.5, 240 HU is 1, also after a bundle round trip."""
    training = [str(write_ct(tmp_path / f"{i}.dcm", np.full((6, 6), hu, np.int16))) for i, hu in enumerate((-160, 240))]
    preprocessor = ImagePreprocessor.from_config(json.loads(json.dumps(fitted(training, window=[40, 400]).get_config())))
    assert preprocessor.window == [40, 400]
    assert preprocessor.mean == [pytest.approx(0.5, abs=1e-6)]
    ramp = write_ct(tmp_path / "ramp.dcm", np.array([[-1000, -160, -40, 40, 240, 2000]] * 6, np.int16))
    raw = preprocessor.load(str(ramp))[0] * preprocessor.std[0] + preprocessor.mean[0]
    torch.testing.assert_close(raw, torch.tensor([0.0, 0.0, 0.3, 0.5, 1.0, 1.0]).expand(6, 6), rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape", [(16, 16), (16, 16, 3)], ids=["grey", "rgb"])
@pytest.mark.parametrize("image_size", [16, 24], ids=["native", "resized"])
def test_png_and_npz_array_of_the_same_pixels_load_to_the_same_tensor(tmp_path, shape, image_size):
    pixels = noise(shape, seed=4)
    png = write_png(tmp_path / "same.png", pixels)
    preprocessor = fitted(noise((4, *shape), seed=5), image_size=image_size)
    torch.testing.assert_close(preprocessor.load(str(png)), preprocessor.load(pixels), rtol=0, atol=1e-6)


def test_16_bit_png_and_uint16_array_load_to_the_same_tensor(tmp_path):
    pixels = np.random.default_rng(6).integers(0, 65536, size=(16, 16), dtype=np.uint16)
    png = tmp_path / "deep.png"
    Image.fromarray(pixels).save(png)
    preprocessor = fitted(noise((2, 16, 16)))
    torch.testing.assert_close(preprocessor.load(str(png)), preprocessor.load(pixels), rtol=0, atol=1e-6)


def test_an_image_of_other_dimensionality_than_the_contract_is_a_data_error():
    preprocessor = fitted(noise((2, 16, 16)))
    with pytest.raises(DataError, match="3-D image was given to a model trained on 2-D images"):
        preprocessor.load(np.zeros((8, 8, 8, 1), np.float32))  # (D, H, W, C): a one-channel volume


@pytest.mark.shared_data
def test_shared_nifti_volume_gives_a_3d_contract_at_its_native_size(shared_data):
    path = shared_data / "medical_image_files" / "nifti" / "monai_anatomical.nii"  # 33 x 41 x 25
    preprocessor = fitted([str(path)])
    assert (preprocessor.spatial_dims, preprocessor.channels, preprocessor.image_size) == (3, 1, 41)
    assert preprocessor.load(str(path)).shape == (1, 41, 41, 41)


@pytest.mark.shared_data
def test_shared_ct_dicom_gives_a_grey_2d_contract(shared_data):
    path = shared_data / "medical_image_files" / "dicom" / "pydicom_CT_small.dcm"  # 128 x 128
    preprocessor = fitted([str(path)])
    assert (preprocessor.spatial_dims, preprocessor.channels, preprocessor.image_size) == (2, 1, 128)


# ---------------------------------------------------------------- unreadable files
@pytest.fixture
def folder_with_a_bad_png(tmp_path) -> tuple[Path, Path]:
    root = class_folder(tmp_path / "xrays", per_class=3)
    return root, truncate(root / "pneumonia" / "1.png")


def test_unreadable_file_stops_reading_with_a_data_error_naming_it(folder_with_a_bad_png):
    root, bad = folder_with_a_bad_png
    with pytest.raises(DataError) as error:
        Imaging().read(root, DataConfig())
    message = str(error.value)
    assert str(bad) in message
    assert "1 unreadable image file(s)" in message and "--skip-bad-files" in message
    assert "\n" not in message


def test_unreadable_files_are_all_counted_in_the_error(tmp_path):
    root = class_folder(tmp_path / "xrays", per_class=3)
    for name in ("normal/0.png", "normal/1.png", "pneumonia/0.png", "pneumonia/2.png"):
        truncate(root / name)
    with pytest.raises(DataError, match=r"4 unreadable image file\(s\): .*; and 1 more"):
        Imaging().read(root, DataConfig())


def test_skip_bad_files_drops_the_unreadable_file_and_lists_it(folder_with_a_bad_png):
    root, bad = folder_with_a_bad_png
    records = Imaging().read(root, DataConfig(skip_bad_files=True))
    assert len(records) == 5
    assert str(bad) not in records.inputs
    assert list(records.target) == ["normal"] * 3 + ["pneumonia"] * 2
    assert len(records.skipped) == 1 and str(bad) in records.skipped[0]


def test_skip_bad_files_keeps_manifest_groups_aligned(manifest):
    bad = truncate(manifest.parent / "images" / "1.png")
    records = Imaging().read(manifest, DataConfig(target="effusion", skip_bad_files=True))
    assert [Path(p).name for p in records.inputs] == ["0.png", "2.png", "3.png"]
    assert list(records.groups) == ["101", "202", "202"]
    assert list(records.target) == [0, 1, 0]
    assert str(bad) in records.skipped[0]


def test_a_manifest_naming_a_missing_file_is_a_data_error(manifest):
    os.remove(manifest.parent / "images" / "2.png")
    with pytest.raises(DataError, match="2.png"):
        Imaging().read(manifest, DataConfig(target="effusion"))


def test_every_file_unreadable_is_a_data_error_even_when_skipping(tmp_path):
    root = class_folder(tmp_path / "xrays", per_class=1)
    for path in root.rglob("*.png"):
        truncate(path)
    with pytest.raises(DataError, match="every image file is unreadable"):
        Imaging().read(root, DataConfig(skip_bad_files=True))


def test_volumes_as_slices_train_a_2d_model_and_keep_each_volume_in_one_split(tmp_path):
    import nibabel

    import medtorch

    rng = np.random.default_rng(0)
    for label in ("healthy", "lesion"):
        (tmp_path / "volumes" / label).mkdir(parents=True)
        for i in range(6):
            volume = rng.normal(0, 1, size=(12, 12, 8)).astype(np.float32)
            if label == "lesion":
                volume[3:9, 3:9, :] += 6
            nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), tmp_path / "volumes" / label / f"{i}.nii.gz")
    config = DataConfig(volume_slices=True)
    records = Imaging().read(tmp_path / "volumes", config)
    assert len(records) == 12 * 8
    assert len(np.unique(records.groups)) == 12
    overrides = {
        "data": {"volume_slices": True, "augment": False},
        "model": {"name": "small_cnn"},
        "train": {"epochs": 3},
        "evaluate": {"bootstrap": 0, "baselines": False},
    }
    run = medtorch.train(tmp_path / "volumes", out=tmp_path / "run", overrides=overrides, progress=False)
    splits = run.metrics["splits"]
    assert sum(splits[s]["n"] for s in ("train", "val", "test")) == 96
    assert all(splits[s]["n"] % 8 == 0 for s in ("train", "val", "test"))  # whole volumes only
    assert run.bundle.preprocessor.spatial_dims == 2
    predictions = medtorch.load_bundle(tmp_path / "run" / "bundle").predict(tmp_path / "volumes" / "lesion" / "0.nii.gz")
    assert len(predictions) == 8
    assert predictions["input"].iloc[3].endswith("0.nii.gz#slice3")


# ------------------------------------------------------------------ augmentation
def bright_dot(n: int, size: int = 32, spatial_dims: int = 2) -> torch.Tensor:
    images = torch.zeros((n, 1) + (size,) * spatial_dims)
    centre = (slice(None), 0) + (slice(size // 2 - 1, size // 2 + 1),) * spatial_dims
    images[centre] = 1.0
    return images


def centroid(image: torch.Tensor) -> torch.Tensor:
    mass = image.clamp(min=0)
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in image.shape], indexing="ij")
    return torch.stack([(g * mass).sum() / mass.sum() for g in grids])


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_augmentation_keeps_the_batch_shape_and_moves_most_images(spatial_dims):
    images = bright_dot(64, size=16, spatial_dims=spatial_dims)
    torch.manual_seed(0)
    augmented = BatchAugmentation(spatial_dims)(images)
    assert augmented.shape == images.shape and torch.isfinite(augmented).all()
    moved = [not torch.allclose(a, b, atol=1e-4) for a, b in zip(augmented, images)]
    assert 0.6 < np.mean(moved) <= 1.0


def test_augmentation_keeps_a_centred_dot_near_the_centre():
    """Rotation ±10°, scale ±10%, shift ±6% of the side: the dot moves at most a few pixels."""
    size = 32
    torch.manual_seed(0)
    augmented = BatchAugmentation(2, intensity=0.0)(bright_dot(200, size))
    offsets = torch.stack([centroid(image[0]) for image in augmented]) - (size / 2 - 0.5)
    assert offsets.abs().max() <= 0.06 * size + 1.0
    assert offsets.abs().max() > 0.5  # and it does move


def test_augmentation_repeats_under_the_same_torch_seed_and_differs_under_another():
    images, augment = bright_dot(8), BatchAugmentation(2)
    torch.manual_seed(1)
    first = augment(images)
    torch.manual_seed(1)
    again = augment(images)
    torch.manual_seed(2)
    other = augment(images)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_augmentation_keeps_the_images_dtype():
    torch.manual_seed(0)
    assert BatchAugmentation(2)(bright_dot(4).double()).dtype == torch.float64


def test_intensity_augmentation_scales_and_shifts_by_at_most_ten_percent():
    torch.manual_seed(0)
    augmented = BatchAugmentation(2, rotate=0.0, scale=0.0, shift=0.0)(torch.ones(500, 1, 8, 8))
    values = augmented[:, 0, 0, 0]
    assert torch.allclose(augmented, values.view(-1, 1, 1, 1).expand_as(augmented))  # one factor per image
    assert values.min() >= 1 - 0.1 - 0.1 - 1e-6 and values.max() <= 1.1 * 1.1 + 1e-6
    assert (values == 1).float().mean() > 0.1  # some images are left alone


def test_a_dataset_batch_equals_its_items_stacked():
    preprocessor = ImagePreprocessor(augment=False).fit(Records(inputs=np.random.default_rng(0).random((6, 12, 12)), target=np.arange(6) % 2))
    dataset = ImageDataset(preprocessor, np.random.default_rng(1).random((6, 12, 12)), np.arange(6) % 2)
    images, targets = dataset.batch(torch.tensor([4, 1, 2]))
    assert torch.equal(images, torch.stack([dataset[i][0] for i in (4, 1, 2)]))
    assert targets.tolist() == [0, 1, 0]
