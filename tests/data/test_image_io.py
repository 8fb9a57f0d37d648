"""Image file readers: shapes, axis order and intensities with known values, and clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from medtorch.data.image_io import IMAGE_SUFFIXES, dicom_hounsfield, is_image_file, load_image
from medtorch.errors import DataError

import pydicom
import nibabel as nib
from PIL import Image

from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.pixels import apply_modality_lut  # noqa: E402
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid  # noqa: E402

CR_CHEST = "torchxrayvision_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", **attributes) -> Path:
    """A small uncompressed DICOM file (CT unless ``Modality`` says otherwise); 3-D pixels are frames."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, generate_uid(), "CT"
    ds.set_pixel_data(pixels, photometric, 8 * pixels.itemsize)
    for name, value in attributes.items():
        setattr(ds, name, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def shipped(name: str) -> str:
    """A test file shipped inside the installed pydicom wheel (never downloaded)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom does not ship {name}")
    return path


def raises_naming(path: Path | str, match: str = ""):
    """DataError whose message names the file (and says ``match``)."""
    return pytest.raises(DataError, match=f"(?=.*{re.escape(Path(path).name)})(?=.*{match})")


# -- DICOM: modality LUT, VOI, photometric ----------------------------------------------------

STORED = np.array([[0, 432, 492, 532, 632, 2000]], dtype=np.int16)
HU = np.array([[-1024, -160, -40, 40, 240, 2976]], dtype=np.float32)  # stored * 2 - 1024
RESCALE = {"RescaleSlope": 2, "RescaleIntercept": -1024}


def test_dicom_hounsfield_applies_rescale_slope_and_intercept(tmp_path):
    path = write_dicom(tmp_path / "ct.dcm", STORED, **RESCALE)
    hu = dicom_hounsfield(path)
    assert hu.dtype == np.float32
    np.testing.assert_array_equal(hu, HU[np.newaxis])


def test_explicit_window_maps_centre_and_edges_and_clips(tmp_path):
    path = write_dicom(tmp_path / "ct.dcm", STORED, **RESCALE)
    image = load_image(path, window=(40, 400))  # -160 .. 240 HU
    np.testing.assert_allclose(image, [[[0.0, 0.0, 0.3, 0.5, 1.0, 1.0]]], atol=1e-6)


def test_explicit_window_overrides_the_files_window(tmp_path):
    path = write_dicom(tmp_path / "ct.dcm", STORED, **RESCALE, WindowCenter=1000, WindowWidth=10)
    np.testing.assert_allclose(load_image(path, window=(40, 400))[0, 0, 3], 0.5, atol=1e-6)


def test_files_own_window_is_applied_by_the_dicom_formula(tmp_path):
    path = write_dicom(tmp_path / "ct.dcm", STORED, **RESCALE, WindowCenter=40, WindowWidth=400)
    # PS3.3 C.11.2.1.2: ((x - (c - 0.5)) / (w - 1) + 0.5), clipped to 0..1
    expected = np.clip((HU - 39.5) / 399 + 0.5, 0, 1)
    np.testing.assert_allclose(load_image(path), expected[np.newaxis], atol=1e-6)


def test_first_of_several_file_windows_is_used(tmp_path):
    path = write_dicom(tmp_path / "ct.dcm", STORED, **RESCALE, WindowCenter=[40, 500], WindowWidth=[400, 2000])
    single = write_dicom(tmp_path / "one.dcm", STORED, **RESCALE, WindowCenter=40, WindowWidth=400)
    np.testing.assert_array_equal(load_image(path), load_image(single))


def test_ct_without_window_uses_the_full_hounsfield_range(tmp_path):
    stored = np.array([[-1024, 0, 3071, 4000]], dtype=np.int16)
    path = write_dicom(tmp_path / "ct.dcm", stored, RescaleSlope=1, RescaleIntercept=0)
    np.testing.assert_allclose(load_image(path), [[[0.0, 1024 / 4095, 1.0, 1.0]]], atol=1e-6)


def test_non_ct_without_window_is_scaled_by_its_min_max(tmp_path):
    path = write_dicom(tmp_path / "mr.dcm", np.array([[100, 150], [200, 500]], dtype=np.uint16), Modality="MR")
    np.testing.assert_allclose(load_image(path), [[[0.0, 0.125], [0.25, 1.0]]], atol=1e-6)


def test_monochrome1_is_inverted_so_higher_is_brighter(tmp_path):
    stored = np.array([[0, 100], [200, 400]], dtype=np.uint16)
    normal = load_image(write_dicom(tmp_path / "m2.dcm", stored, "MONOCHROME2", Modality="CR"))
    inverted = load_image(write_dicom(tmp_path / "m1.dcm", stored, "MONOCHROME1", Modality="CR"))
    np.testing.assert_allclose(normal, [[[0.0, 0.25], [0.5, 1.0]]], atol=1e-6)
    np.testing.assert_allclose(inverted, 1 - normal, atol=1e-6)


def test_multiframe_dicom_is_a_volume_in_frame_order(tmp_path):
    frames = np.stack([np.full((4, 5), 10 * i, dtype=np.uint16) for i in range(3)])
    path = write_dicom(tmp_path / "frames.dcm", frames, Modality="MR")
    image = load_image(path)
    assert image.shape == (1, 3, 4, 5)
    np.testing.assert_allclose(image[0, :, 0, 0], [0.0, 0.5, 1.0])


def test_enhanced_multiframe_rescale_is_applied_per_frame(tmp_path):
    def rescale(slope: float, intercept: float) -> Dataset:
        transform, group = Dataset(), Dataset()
        transform.RescaleSlope, transform.RescaleIntercept = slope, intercept
        group.PixelValueTransformationSequence = [transform]
        return group

    frames = np.full((2, 2, 2), 100, dtype=np.int16)
    groups = [rescale(1, -1024), rescale(2, 0)]
    path = write_dicom(tmp_path / "enhanced.dcm", frames, PerFrameFunctionalGroupsSequence=groups)
    np.testing.assert_array_equal(dicom_hounsfield(path)[0, :, 0, 0], [-924, 200])


def test_shipped_multiframe_rtdose_is_a_volume():
    image = load_image(shipped("rtdose.dcm"))
    assert image.shape == (1, 15, 10, 10) and image.min() == 0.0 and image.max() == 1.0


def test_rgb_dicom_has_three_channels_over_255():
    path = shipped("examples_rgb_color.dcm")
    image = load_image(path)
    assert image.shape == (3, 240, 320)
    np.testing.assert_allclose(image, pydicom.dcmread(path).pixel_array.transpose(2, 0, 1) / 255, atol=1e-6)


def test_palette_dicom_becomes_rgb():
    image = load_image(shipped("examples_palette.dcm"))
    assert image.shape == (3, 350, 800) and 0 <= image.min() and image.max() <= 1


def test_suffixless_dicom_is_detected_and_loaded(tmp_path):
    path = write_dicom(tmp_path / "IM0001", np.array([[0, 255]], dtype=np.uint16), Modality="MR")
    (tmp_path / "notes").write_text("not an image")
    assert is_image_file(path) and not is_image_file(tmp_path / "notes")
    np.testing.assert_allclose(load_image(path), [[[0.0, 1.0]]])


def check_ct_small(path: Path | str) -> None:
    """pydicom's CT_small: signed 16-bit, rescale intercept -1024, no window (so the full HU range)."""
    image, hu = load_image(path), dicom_hounsfield(path)
    ds = pydicom.dcmread(path)
    expected = apply_modality_lut(ds.pixel_array, ds)
    assert ds.pixel_array.dtype == np.int16
    assert image.shape == hu.shape == (1, 128, 128)
    assert np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
    assert (hu.min(), hu.max()) == (expected.min(), expected.max()) == (-896, 1167)
    np.testing.assert_allclose(image, (hu + 1024) / 4095, atol=1e-6)


def test_shipped_signed_16_bit_ct_loads_with_plausible_hounsfield():
    check_ct_small(shipped("CT_small.dcm"))


@pytest.mark.shared_data
def test_shared_signed_16_bit_ct_loads_with_plausible_hounsfield(shared_data):
    check_ct_small(shared_data / "medical_image_files" / "dicom" / "pydicom_CT_small.dcm")


def test_files_voi_lut_sequence_is_applied_and_scaled_by_the_lut_range(tmp_path):
    lut = Dataset()
    lut.LUTDescriptor = [4, 1, 12]  # 4 entries, first mapped value 1, 12-bit output
    lut.add_new("LUTData", "US", [0, 1000, 2000, 4095])
    stored = np.array([[0, 1, 2, 3, 4, 9]], dtype=np.uint16)
    path = write_dicom(tmp_path / "lut.dcm", stored, Modality="CR", VOILUTSequence=[lut])
    np.testing.assert_allclose(load_image(path), [[[0, 0, 1000 / 4095, 2000 / 4095, 1, 1]]], atol=1e-6)


@pytest.mark.shared_data
def test_cr_chest_jpeg_compressed_loads_full_size(shared_data):
    image = load_image(shared_data / "medical_image_files" / "dicom" / CR_CHEST)
    assert image.shape == (1, 1024, 1024) and image.dtype == np.float32
    assert image.min() == 0.0 and image.max() == 1.0


# -- NIfTI ------------------------------------------------------------------------------------


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return path


def xyz_volume() -> np.ndarray:
    x, y, z = np.meshgrid(np.arange(4), np.arange(3), np.arange(2), indexing="ij")
    return (100 * x + 10 * y + z).astype(np.float32)  # each voxel's value spells its (x, y, z)


def test_nifti_round_trips_in_z_y_x_order(tmp_path):
    data = xyz_volume()
    path = write_nifti(tmp_path / "vol.nii.gz", data)
    image = load_image(path, window=(321 / 2, 321))  # 0 .. 321: value / 321
    assert image.shape == (1, 2, 3, 4)
    np.testing.assert_allclose(image[0] * 321, data.transpose(2, 1, 0), atol=1e-3)
    assert image[0, 1, 2, 3] * 321 == pytest.approx(321, abs=1e-3)  # [z, y, x]


def test_nifti_is_reoriented_to_ras(tmp_path):
    data = xyz_volume()
    path = write_nifti(tmp_path / "las.nii", data, np.diag([-1.0, 1.0, 1.0, 1.0]))  # x runs right to left
    image = load_image(path, window=(321 / 2, 321))
    np.testing.assert_allclose(image[0] * 321, data[::-1].transpose(2, 1, 0), atol=1e-3)


def test_nifti_is_scaled_by_its_percentiles(tmp_path):
    data = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    image = load_image(write_nifti(tmp_path / "ramp.nii", data))
    low, high = np.percentile(data, [0.5, 99.5])  # 4.995, 994.005
    expected = np.clip((data.transpose(2, 1, 0) - low) / (high - low), 0, 1)
    np.testing.assert_allclose(image[0], expected, atol=1e-6)
    assert (image == 0).sum() == 5 and (image == 1).sum() == 5


def test_4d_nifti_takes_channels_from_the_last_axis(tmp_path):
    data = np.stack([xyz_volume(), 2 * xyz_volume()], axis=-1)
    image = load_image(write_nifti(tmp_path / "two.nii", data), window=(321, 642))
    assert image.shape == (2, 2, 3, 4)
    np.testing.assert_allclose(image[1] * 642, 2 * data[..., 0].transpose(2, 1, 0), atol=1e-3)


def test_2d_nifti_is_a_2d_image_in_y_x_order(tmp_path):
    data = np.array([[0, 1, 2], [10, 11, 12]], dtype=np.float32)  # (x, y)
    image = load_image(write_nifti(tmp_path / "slice.nii", data), window=(6, 12))
    np.testing.assert_allclose(image * 12, data.T[np.newaxis], atol=1e-5)


@pytest.mark.shared_data
def test_shared_anatomical_nifti_loads_in_ras_z_y_x_order(shared_data):
    path = shared_data / "medical_image_files" / "nifti" / "monai_anatomical.nii"
    raw = nib.load(path)
    assert nib.aff2axcodes(raw.affine) == ("L", "A", "S") and raw.shape == (33, 41, 25)
    image = load_image(path, window=(0, 2**17))
    assert image.shape == (1, 25, 41, 33)
    stored = raw.get_fdata()[::-1].transpose(2, 1, 0)  # L->R flip, then (z, y, x)
    np.testing.assert_allclose(image[0], stored / 2**17 + 0.5, atol=1e-6)
    scaled = load_image(path)
    assert scaled.min() == 0.0 and scaled.max() == 1.0


# -- PNG and friends --------------------------------------------------------------------------


def save(path: Path, pixels: np.ndarray, mode: str | None = None) -> Path:
    image = Image.fromarray(pixels)
    (image.convert(mode) if mode else image).save(path)
    return path


def test_grey_8_bit_png(tmp_path):
    image = load_image(save(tmp_path / "g.png", np.array([[0, 128, 255]], dtype=np.uint8)))
    assert image.shape == (1, 1, 3)
    np.testing.assert_allclose(image[0, 0], [0, 128 / 255, 1.0])


def test_grey_16_bit_png(tmp_path):
    image = load_image(save(tmp_path / "g16.png", np.array([[0, 1000, 65535]], dtype=np.uint16)))
    assert image.shape == (1, 1, 3)
    np.testing.assert_allclose(image[0, 0], [0, 1000 / 65535, 1.0])


def test_rgb_png_has_three_channels(tmp_path):
    pixels = np.array([[[255, 0, 128], [0, 64, 255]]], dtype=np.uint8)
    image = load_image(save(tmp_path / "c.png", pixels))
    assert image.shape == (3, 1, 2)
    np.testing.assert_allclose(image[:, 0, 0], [1.0, 0.0, 128 / 255])
    np.testing.assert_allclose(image[:, 0, 1], [0.0, 64 / 255, 1.0])


def test_rgba_drops_alpha_and_la_stays_grey(tmp_path):
    rgba = np.array([[[255, 0, 128, 7]]], dtype=np.uint8)
    np.testing.assert_allclose(load_image(save(tmp_path / "a.png", rgba))[:, 0, 0], [1.0, 0.0, 128 / 255])
    grey = np.array([[[128, 9]]], dtype=np.uint8)
    np.testing.assert_allclose(load_image(save(tmp_path / "la.png", grey)), [[[128 / 255]]])


def test_palette_png_is_grey_when_its_palette_is(tmp_path):
    grey = load_image(save(tmp_path / "p.png", np.array([[0, 128, 255]], dtype=np.uint8), "P"))
    assert grey.shape == (1, 1, 3)
    colour = load_image(save(tmp_path / "q.png", np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.uint8), "P"))
    np.testing.assert_allclose(colour[:, 0, 0], [1.0, 0.0, 0.0])


def test_jpeg_is_read_approximately(tmp_path):
    image = load_image(save(tmp_path / "g.jpg", np.full((8, 8), 200, dtype=np.uint8)))
    assert image.shape == (1, 8, 8)
    np.testing.assert_allclose(image, 200 / 255, atol=2 / 255)


def test_multipage_tiff_is_a_volume(tmp_path):
    pages = [Image.fromarray(np.full((2, 3), v, dtype=np.uint8)) for v in (0, 51, 255)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    image = load_image(tmp_path / "stack.tif")
    assert image.shape == (1, 3, 2, 3)
    np.testing.assert_allclose(image[0, :, 0, 0], [0.0, 0.2, 1.0])


def test_window_applies_to_raw_grey_png_values(tmp_path):
    path = save(tmp_path / "g.png", np.array([[0, 100, 150, 200]], dtype=np.uint8))
    np.testing.assert_allclose(load_image(path, window=(150, 100))[0, 0], [0.0, 0.0, 0.5, 1.0])


# -- detection and errors ---------------------------------------------------------------------


def test_image_suffixes_are_recognised_case_insensitively(tmp_path):
    assert {".png", ".dcm", ".nii", ".nii.gz", ".tiff"} <= IMAGE_SUFFIXES
    for name in ("A.PNG", "scan.nii.gz", "x.DCM"):
        (tmp_path / name).write_bytes(b"")
        assert is_image_file(tmp_path / name)
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    assert not is_image_file(tmp_path / "table.csv") and not is_image_file(tmp_path / "missing.png")
    assert not is_image_file(tmp_path)


def test_truncated_png_is_a_data_error(tmp_path):
    path = save(tmp_path / "cut.png", np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:200])
    with raises_naming(path, "truncated"):
        load_image(path)


def test_random_bytes_named_dcm_is_a_data_error(tmp_path):
    path = tmp_path / "noise.dcm"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with raises_naming(path, "not a DICOM file"):
        load_image(path)


def test_dicom_without_pixel_data_is_a_data_error(tmp_path):
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality, ds.PatientID = CTImageStorage, generate_uid(), "SR", "P1"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(tmp_path / "report.dcm", enforce_file_format=True)
    with raises_naming(tmp_path / "report.dcm", "without pixel data"):
        load_image(tmp_path / "report.dcm")


def test_truncated_dicom_pixels_are_a_data_error():
    with raises_naming(shipped("MR_truncated.dcm"), "pixel data"):
        load_image(shipped("MR_truncated.dcm"))


def test_unknown_suffix_and_missing_file_are_data_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with raises_naming(tmp_path / "notes.txt", "unknown image format"):
        load_image(tmp_path / "notes.txt")
    with raises_naming(tmp_path / "gone.png", "not found"):
        load_image(tmp_path / "gone.png")


@pytest.mark.parametrize("content", [b"", b"not a nifti file at all" * 20, b"\x1f\x8b\x08\x00garbage"])
def test_corrupt_nifti_is_a_data_error(tmp_path, content):
    path = tmp_path / "bad.nii.gz"
    path.write_bytes(content)
    with raises_naming(path):
        load_image(path)


def test_truncated_nifti_is_a_data_error(tmp_path):
    path = write_nifti(tmp_path / "cut.nii", np.ones((20, 20, 20), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:1000])
    with raises_naming(path):
        load_image(path)


def test_error_messages_are_one_line(tmp_path):
    path = tmp_path / "noise.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(DataError) as error:
        load_image(path)
    assert "\n" not in str(error.value) and path.name in str(error.value)
