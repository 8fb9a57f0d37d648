"""Medical image files (PNG/JPEG/BMP/TIFF, DICOM, NIfTI) as float32 arrays in [0, 1].

Every reader returns ``(channels, H, W)`` for a 2-D image and ``(channels, D, H, W)`` for a
volume (DICOM multi-frame, multi-page TIFF, NIfTI), with ``channels`` 1 (grey) or 3 (RGB);
alpha is dropped. How intensities reach [0, 1]:

- PNG/JPEG/BMP/TIFF: 8-bit / 255, 16-bit / 65535; 32-bit int and float images by their min-max.
- DICOM: the modality LUT (rescale slope/intercept: Hounsfield units for CT), then the VOI
  transform: ``window`` if given, else the file's VOI LUT or first WindowCenter/WindowWidth
  (DICOM PS3.3 C.11.2 formula), else for CT the full range -1024..3071 HU, else the image's
  min-max. MONOCHROME1 is inverted so that higher is always brighter. Colour: / (2**BitsStored - 1).
- NIfTI: voxels reoriented to the closest RAS+ orientation, then axes ordered (z, y, x):
  D runs inferior->superior, H posterior->anterior, W left->right; a 4-D image's last axis is
  the channels. Scaled by its 0.5th-99.5th percentiles per channel.

``window=(centre, width)`` maps raw greyscale values (HU for DICOM, stored values otherwise)
from ``centre - width/2`` .. ``centre + width/2`` to 0 .. 1. Values outside any range are clipped.
An unreadable file raises :class:`DataError` with one line naming the file.

>>> image = load_image("chest.dcm", window=(40, 400))   # (1, 512, 512) float32
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from medtorch.errors import ConfigError, DataError

if TYPE_CHECKING:
    from PIL import Image
    from pydicom import Dataset

PILLOW_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
NIFTI_SUFFIXES = frozenset({".nii", ".nii.gz"})
IMAGE_SUFFIXES = PILLOW_SUFFIXES | DICOM_SUFFIXES | NIFTI_SUFFIXES
CT_RANGE = (-1024.0, 3071.0)  # the 12-bit HU range CT scanners store: air to dense bone and metal
NIFTI_PERCENTILES = (0.5, 99.5)

Window = tuple[float, float]


def is_image_file(path: str | Path) -> bool:
    """A file :func:`load_image` can read: an image suffix, or DICOM content under any other name."""
    path = Path(path)
    if not path.is_file():
        return False
    return _suffix(path) in IMAGE_SUFFIXES or _has_dicom_header(path)


def load_image(path: str | Path, *, window: Window | None = None) -> np.ndarray:
    """The image at ``path`` as float32 in [0, 1], ``(C, H, W)`` or ``(C, D, H, W)`` (see the module doc)."""
    path = Path(path)
    reader = _reader(path)
    return np.ascontiguousarray(reader(path, window), dtype=np.float32)


def dicom_hounsfield(path: str | Path) -> np.ndarray:
    """A greyscale DICOM's values after the modality LUT only (HU for CT), float32, (1, H, W) or (1, F, H, W)."""
    path = Path(path)
    ds = _read_dicom(path)
    pixels = _dicom_pixels(ds, path)
    if ds.get("SamplesPerPixel", 1) != 1 or _photometric(ds) == "PALETTE COLOR":
        raise DataError(f"{path} is a colour DICOM; Hounsfield units exist only for greyscale images")
    return _modality_lut(ds, pixels, path)[np.newaxis].astype(np.float32)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _has_dicom_header(path: Path) -> bool:
    """The DICOM file signature: a 128-byte preamble, then ``DICM``."""
    try:
        with path.open("rb") as file:
            return file.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _reader(path: Path) -> Callable[[Path, Window | None], np.ndarray]:
    if not path.is_file():
        raise DataError(f"image file not found: {path}")
    suffix = _suffix(path)
    if suffix in DICOM_SUFFIXES or _has_dicom_header(path):
        return _load_dicom
    if suffix in NIFTI_SUFFIXES:
        return _load_nifti
    if suffix in PILLOW_SUFFIXES:
        return _load_pillow
    known = " ".join(sorted(IMAGE_SUFFIXES))
    raise DataError(f"{path}: unknown image format {suffix or '(no suffix)'!r}; readable: {known}, or DICOM by content")


def _reason(error: BaseException) -> str:
    """An exception as one short line (library messages can span several)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _scale(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``low`` .. ``high`` mapped linearly to 0 .. 1 and clipped (NaN to 0); all zeros when the range is empty."""
    if not high > low:
        return np.zeros(values.shape, dtype=np.float32)
    scaled = (values.astype(np.float32) - np.float32(low)) / np.float32(high - low)
    return np.nan_to_num(np.clip(scaled, 0.0, 1.0), nan=0.0)


def _window_range(window: Window) -> tuple[float, float]:
    try:
        centre, width = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ConfigError(f"window must be (centre, width), got {window!r}") from None
    if not width > 0:
        raise ConfigError(f"window width must be positive, got {width}")
    return centre - width / 2, centre + width / 2


def _min_max(values: np.ndarray) -> np.ndarray:
    finite = values[np.isfinite(values)]
    return _scale(values, float(finite.min()), float(finite.max())) if finite.size else _scale(values, 0, 0)


def _channels_first(pixels: np.ndarray, colour: bool) -> np.ndarray:
    """(H, W) or (F, H, W) grey, (H, W, 3) or (F, H, W, 3) colour -> (C, H, W) or (C, F, H, W)."""
    return np.moveaxis(pixels, -1, 0) if colour else pixels[np.newaxis]


# -- PNG, JPEG, BMP, TIFF ---------------------------------------------------------------------


def _load_pillow(path: Path, window: Window | None) -> np.ndarray:
    from PIL import Image, ImageOps, ImageSequence

    try:
        with Image.open(path) as image:
            frames = [frame.copy() for frame in ImageSequence.Iterator(image)]
            if len(frames) == 1:
                frames = [ImageOps.exif_transpose(frames[0])]
            # a page of another size or mode (a TIFF thumbnail or pyramid level) is not a slice
            frames = [f for f in frames if f.size == frames[0].size and f.mode == frames[0].mode]
            planes = [_pillow_pixels(frame) for frame in frames]
    except Exception as error:  # Pillow reports damage as OSError, SyntaxError, struct.error ...
        raise DataError(f"cannot read {path} as an image: {_reason(error)}") from None
    pixels = np.stack(planes) if len(planes) > 1 else planes[0]
    colour = planes[0].ndim == 3
    if window is not None:
        if colour:
            raise DataError(f"{path} is a colour image; an intensity window applies to greyscale images only")
        scaled = _scale(pixels, *_window_range(window))
    elif pixels.dtype == np.uint8:
        scaled = pixels / np.float32(255)
    elif pixels.dtype == np.uint16:
        scaled = pixels / np.float32(65535)
    else:
        scaled = _min_max(pixels)  # 32-bit integer or float pixels have no fixed range
    return _channels_first(scaled, colour)


def _pillow_pixels(image: Image.Image) -> np.ndarray:
    """Grey as (H, W) at its native depth, anything else as (H, W, 3) uint8."""
    mode = image.mode
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)
    if mode in ("I", "F"):
        return np.asarray(image)
    if mode in ("1", "L", "LA", "La"):
        return np.asarray(image.convert("L"))
    if mode in ("P", "PA") and _grey_palette(image):
        return np.asarray(image.convert("L"))
    return np.asarray(image.convert("RGB"))


def _grey_palette(image: Image.Image) -> bool:
    palette = image.getpalette() or []
    entries = np.asarray(palette[: len(palette) // 3 * 3]).reshape(-1, 3)
    return bool((entries == entries[:, :1]).all())


# -- DICOM ------------------------------------------------------------------------------------


def _read_dicom(path: Path) -> Dataset:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return _require_pixels(pydicom.dcmread(path), path)
    except InvalidDicomError:
        pass  # no file header: an older (ACR-NEMA style) file may still be a plain dataset
    except DataError:
        raise
    except Exception as error:  # pydicom reports a damaged file with many exception types
        raise DataError(f"cannot read {path} as DICOM: {_reason(error)}") from None
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception:
        ds = None
    if ds is None or not ("SOPClassUID" in ds or "Modality" in ds or _has_pixel_data(ds)):
        raise DataError(f"{path} is not a DICOM file (no 'DICM' header, and no DICOM dataset in it)")
    return _require_pixels(ds, path)


def _has_pixel_data(ds: Dataset) -> bool:
    return any(name in ds for name in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def _require_pixels(ds: Dataset, path: Path) -> Dataset:
    if not _has_pixel_data(ds):
        kind = ds.get("Modality") or "non-image"
        raise DataError(f"{path} is a DICOM file without pixel data ({kind} object), not an image")
    return ds


def _photometric(ds: Dataset) -> str:
    return str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()


def _dicom_pixels(ds: Dataset, path: Path) -> np.ndarray:
    """Decoded pixels: (H, W) or (F, H, W), with a trailing 3 for colour (YBR is converted to RGB)."""
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        _set_transfer_syntax(ds)
    try:
        return ds.pixel_array
    except Exception as error:  # truncated data, a codec not installed, inconsistent attributes
        raise DataError(f"cannot decode the pixels of {path}: {_reason(error)}") from None


def _set_transfer_syntax(ds: Dataset) -> None:
    """A headerless dataset names no transfer syntax; use the encoding it was read with."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    implicit, little = getattr(ds, "original_encoding", (True, True))
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    if implicit is not False:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if little is not False else ExplicitVRBigEndian


def _load_dicom(path: Path, window: Window | None) -> np.ndarray:
    from pydicom.pixels import apply_color_lut

    ds = _read_dicom(path)
    pixels = _dicom_pixels(ds, path)
    photometric = _photometric(ds)
    if photometric == "PALETTE COLOR" or ds.get("SamplesPerPixel", 1) == 3:
        if window is not None:
            raise DataError(f"{path} is a colour DICOM; an intensity window applies to greyscale images only")
        if photometric == "PALETTE COLOR":
            try:
                pixels = apply_color_lut(pixels, ds)
            except Exception as error:
                raise DataError(f"cannot apply the colour palette of {path}: {_reason(error)}") from None
            top = np.iinfo(pixels.dtype).max
        else:
            top = 2 ** int(ds.get("BitsStored", 8)) - 1
        return _channels_first(pixels / np.float32(top), colour=True)
    values = _modality_lut(ds, pixels, path)
    if window is not None:
        scaled = _scale(values, *_window_range(window))
    else:
        scaled = _file_voi(ds, values, path)
        if scaled is None and str(ds.get("Modality", "")).upper() == "CT":
            scaled = _scale(values, *CT_RANGE)
        elif scaled is None:
            scaled = _min_max(values)
    if photometric == "MONOCHROME1":  # stored with 0 as white
        scaled = 1 - scaled
    return scaled[np.newaxis]


def _functional_item(ds: Dataset, macro: str, frame: int = 0) -> Any:
    """The first item of a functional-group macro (enhanced multi-frame files): shared, else of ``frame``."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    for item in (shared[0] if shared else None, per_frame[frame] if per_frame and frame < len(per_frame) else None):
        if item is not None and item.get(macro):
            return item[macro][0]
    return None


def _modality_lut(ds: Dataset, pixels: np.ndarray, path: Path) -> np.ndarray:
    """Stored values through the modality LUT or rescale: top level, else per frame (enhanced multi-frame)."""
    from pydicom.pixels import apply_modality_lut

    top_level = ds.get("ModalityLUTSequence") or "RescaleSlope" in ds
    try:
        if top_level or _functional_item(ds, "PixelValueTransformationSequence") is None:
            return apply_modality_lut(pixels, ds).astype(np.float32)
        frames = pixels.reshape(-1, *pixels.shape[-2:]).astype(np.float32)
        for index, frame in enumerate(frames):
            item = _functional_item(ds, "PixelValueTransformationSequence", index)
            frames[index] = frame * float(item.get("RescaleSlope", 1)) + float(item.get("RescaleIntercept", 0))
        return frames.reshape(pixels.shape)
    except Exception as error:
        raise DataError(f"cannot apply the modality LUT (rescale) of {path}: {_reason(error)}") from None


def _file_voi(ds: Dataset, values: np.ndarray, path: Path) -> np.ndarray | None:
    """The file's own VOI LUT or first window scaled to [0, 1] per the standard; None when it has none."""
    from pydicom import Dataset
    from pydicom.pixels import apply_voi, apply_windowing

    if ds.get("VOILUTSequence"):
        try:
            item = ds.VOILUTSequence[0]
            entries, first = int(item.LUTDescriptor[0] or 2**16), int(item.LUTDescriptor[1])
            table = apply_voi(np.arange(first, first + entries), ds)
            indices = np.clip(np.rint(values), first, first + entries - 1).astype(np.int64)  # pydicom wraps, not clips
            return _scale(apply_voi(indices, ds), float(table.min()), float(table.max()))
        except Exception as error:
            raise DataError(f"cannot apply the VOI LUT of {path}: {_reason(error)}") from None
    source = ds if "WindowWidth" in ds else _functional_item(ds, "FrameVOILUTSequence")
    if source is None or "WindowWidth" not in source or "WindowCenter" not in source:
        return None
    # a stand-in dataset whose output range is exactly 0..1 (unsigned, 1 bit stored, no rescale)
    unit = Dataset()
    unit.PhotometricInterpretation, unit.PixelRepresentation, unit.BitsStored = "MONOCHROME2", 0, 1
    unit.WindowCenter, unit.WindowWidth = source.WindowCenter, source.WindowWidth
    if "VOILUTFunction" in source:
        unit.VOILUTFunction = source.VOILUTFunction
    try:
        return apply_windowing(values, unit).astype(np.float32)
    except (ValueError, TypeError, IndexError):
        return None  # an unusable window (width < 1, unknown function) is ignored, as viewers do


# -- NIfTI ------------------------------------------------------------------------------------


def _load_nifti(path: Path, window: Window | None) -> np.ndarray:
    import nibabel as nib
    from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

    try:
        image = nib.load(path)
        values = np.asarray(image.get_fdata(dtype=np.float32))
        orientation = io_orientation(image.affine)
    except Exception as error:  # nibabel, gzip and zlib each report damage their own way
        raise DataError(f"cannot read {path} as NIfTI: {_reason(error)}") from None
    if values.ndim == 5 and values.shape[3] == 1:  # vector data is stored (x, y, z, 1, c)
        values = values[:, :, :, 0]
    if values.ndim not in (2, 3, 4):
        raise DataError(f"{path} holds a {values.ndim}-D NIfTI image of shape {values.shape}; expected 2-D, 3-D or 4-D")
    flat = values.ndim == 2
    if flat:
        values = values[:, :, np.newaxis]
    if not np.isnan(orientation).any():  # a degenerate affine leaves the voxel order as stored
        values = apply_orientation(values, ornt_transform(orientation, axcodes2ornt("RAS")))
    if values.ndim == 3:
        values = values[..., np.newaxis]
    volume = values.transpose(3, 2, 1, 0)  # (x, y, z, c) -> (c, z, y, x)
    if window is not None:
        scaled = _scale(volume, *_window_range(window))
    else:
        scaled = np.stack([_robust_scale(channel) for channel in volume])
    return scaled[:, 0] if flat else scaled


def _robust_scale(values: np.ndarray) -> np.ndarray:
    """Scaled by the 0.5th-99.5th percentiles, so a few extreme voxels do not squash the rest."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return _scale(values, 0, 0)
    low, high = np.percentile(finite, NIFTI_PERCENTILES)
    if not high > low:
        low, high = finite.min(), finite.max()
    return _scale(values, float(low), float(high))
