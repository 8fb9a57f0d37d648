"""Medical images (X-ray, CT, MRI, ultrasound, fundus) as a modality.

Sources:

- a folder with one sub-folder per class (PNG, JPEG, DICOM, NIfTI mixed), the
  ``flow_from_directory`` layout;
- a CSV manifest with a ``path`` column (relative to the CSV), a label column (or several,
  for multi-label), and optionally ``patient_id`` and subgroup columns;
- a MedMNIST-style ``.npz`` (``train_images``, ``train_labels``, ``val_*``, ``test_*``), whose
  official split is kept;
- for prediction, also a single image file or a folder of images.

Every image is read to float32 in [0, 1] (DICOM through its modality and VOI LUTs), then
resized and normalised by the input contract that :class:`ImagePreprocessor` learns on
training images and saves in the bundle.

>>> records = Imaging().read("xrays/", DataConfig())
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from medtorch.config import DataConfig
from medtorch.data.base import Explanations, Fingerprints, Modality, Preprocessor, Records, register_modality
from medtorch.errors import ConfigError, DataError

PATH_COLUMNS = ("path", "image", "file", "filename", "image_path")
GROUP_COLUMNS = ("patient_id", "patientid", "subject_id", "mrn", "patient")
MAX_DEFAULT_SIZE = {2: 128, 3: 64}
STATISTICS_SAMPLE = 2000


def _io() -> Any:
    from medtorch.data import image_io

    return image_io


@register_modality
class Imaging(Modality):
    """2-D images and 3-D volumes, one label (or several) per image."""

    name = "image"
    default_model = "small_cnn"  # CPU-first: ~15x the throughput of ResNet-18 at 28 px; see docs/benchmarks/imaging.md
    baselines = ("prior", "logistic_regression")
    priority = 10
    train_defaults = {"epochs": 30, "patience": 8, "schedule": "cosine", "monitor": "primary"}

    @classmethod
    def can_read(cls, source: Any) -> bool:
        if not isinstance(source, (str, Path)):
            return False
        path = Path(source)
        if path.is_dir():
            return any(_io().is_image_file(p) for p in _files_under(path, limit=200))
        suffix = path.suffix.lower()
        if suffix == ".npz":
            return True
        if suffix == ".csv":
            try:
                header = pd.read_csv(path, nrows=0).columns
            except (ValueError, OSError):  # empty or not text: not a manifest; the table reader explains why
                return False
            return any(str(c).strip().lower() in PATH_COLUMNS for c in header)
        return _io().is_image_file(path)

    def read(self, source: Any, data_config: DataConfig, *, with_target: bool = True) -> Records:
        path = Path(source)
        if path.suffix.lower() == ".npz":
            return _read_npz(path, with_target)
        if path.suffix.lower() == ".csv":
            records = _read_manifest(path, data_config, with_target)
        elif path.is_dir():
            records = _read_folder(path, with_target)
        else:
            records = Records(inputs=[str(path)])
        records = _drop_unreadable(records, data_config)
        return _as_slices(records, data_config) if data_config.volume_slices else records

    def input_names(self, records: Records) -> list[str] | None:
        if not isinstance(records.inputs, list):
            return None
        return [f"{item[0]}#slice{item[1]}" if isinstance(item, tuple) else item for item in records.inputs]

    def explain(self, bundle: Any, records: Records, per_kind: int = 3) -> Explanations:
        """Grad-CAM overlays for the first few correctly and wrongly predicted test images."""
        import io

        from medtorch.explain import explain_image, save_overlay

        if bundle.kind != "torch" or records.target is None or bundle.task.type not in ("binary", "multiclass"):
            return Explanations()
        predicted = bundle.describe_scores(bundle.predict_scores(records.inputs))["prediction"].to_numpy()
        truth = np.asarray(records.target)
        correct = np.array([str(p) == str(t) for p, t in zip(predicted, truth)])
        chosen = [*np.flatnonzero(correct)[:per_kind], *np.flatnonzero(~correct)[:per_kind]]
        examples = []
        for index in chosen:
            buffer = io.BytesIO()
            save_overlay(explain_image(bundle, records.inputs[index]), buffer)
            verdict = "correct" if correct[index] else "wrong"
            examples.append((buffer.getvalue(), f"{verdict}: true {truth[index]}, predicted {predicted[index]}"))
        return Explanations(title="Grad-CAM: where the model looked (correct and wrong test cases)", figures=examples)

    def fingerprints(self, records: Records, preprocessor: Preprocessor) -> Fingerprints:
        """A hash of each image's pixels at the input contract's size, and its perceptual hash."""
        import hashlib

        exact, perceptual = [], []
        for item in records.inputs:
            image = preprocessor.resized(item).numpy()
            exact.append(hashlib.sha1(image.tobytes()).hexdigest())
            picture = image.mean(axis=0)  # grey; a volume is hashed by its middle slice
            perceptual.append(perceptual_hash(picture[picture.shape[0] // 2] if picture.ndim == 3 else picture))
        return Fingerprints(exact=np.asarray(exact, dtype=object), perceptual=np.asarray(perceptual, dtype=np.uint64))

    def preprocessor(self, data_config: DataConfig) -> ImagePreprocessor:
        return ImagePreprocessor(
            image_size=data_config.image_size,
            window=list(data_config.window) if data_config.window else None,
            augment=data_config.augment,
        )

    def preprocessor_from_config(self, config: dict[str, Any]) -> ImagePreprocessor:
        return ImagePreprocessor.from_config(config)


# --------------------------------------------------------------------------- readers
def _files_under(folder: Path, limit: int | None = None) -> list[Path]:
    """Files below ``folder``, skipping anything hidden (``.ipynb_checkpoints``, ``.DS_Store`` ...)."""
    files = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts):
            files.append(path)
            if limit and len(files) >= limit:
                break
    return files


def _read_folder(folder: Path, with_target: bool) -> Records:
    """One sub-folder per class; for prediction, any image under ``folder``."""
    image_io = _io()
    if not with_target:
        return Records(inputs=[str(p) for p in _files_under(folder) if image_io.is_image_file(p)])
    paths, labels = [], []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in _files_under(class_dir):
            if image_io.is_image_file(path):
                paths.append(str(path))
                labels.append(class_dir.name)
    if not paths:
        raise DataError(f"{folder} has no class sub-folders with images (expected {folder}/<class>/<image>)")
    return Records(inputs=paths, target=np.asarray(labels, dtype=object))


def _read_manifest(path: Path, data_config: DataConfig, with_target: bool) -> Records:
    frame = pd.read_csv(path, skipinitialspace=True)
    frame.columns = [str(c).strip() for c in frame.columns]
    path_column = next(c for c in frame.columns if c.lower() in PATH_COLUMNS)
    paths = [str((path.parent / str(p)).resolve()) if not Path(str(p)).is_absolute() else str(p) for p in frame[path_column]]
    group = data_config.group_column or next((c for c in frame.columns if c.lower() in GROUP_COLUMNS), None)
    target = None
    if with_target:
        targets = data_config.target or ("label" if "label" in frame.columns else None)
        if targets is None:
            raise ConfigError(f"no target column given and {path.name} has no 'label' column (--target COLUMN)")
        names = [targets] if isinstance(targets, str) else list(targets)
        missing = [c for c in names if c not in frame.columns]
        if missing:
            raise DataError(f"target column(s) {', '.join(map(repr, missing))} not found in {path.name}; columns: {', '.join(frame.columns)}")
        target = frame[names].to_numpy() if len(names) > 1 else frame[names[0]].to_numpy()
    attributes = data_config.attribute_columns or []
    if not with_target or data_config.optional_columns:  # new data need not carry subgroups
        attributes = [c for c in attributes if c in frame.columns]
    absent = [c for c in attributes if c not in frame.columns]
    if absent:
        raise DataError(f"attribute column(s) {', '.join(map(repr, absent))} not found in {path.name}; columns: {', '.join(frame.columns)}")
    return Records(
        inputs=paths,
        target=target,
        groups=None if group is None or group not in frame.columns else frame[group].astype(str).to_numpy(),
        attributes=frame[attributes].reset_index(drop=True) if attributes else None,
    )


def _npz_splits(archive: Any) -> list[str]:
    splits = [s for s in ("train", "val", "test") if f"{s}_images" in archive.files]
    if not splits:
        raise DataError("an .npz dataset needs train_images/train_labels (and val_*, test_*) arrays, as MedMNIST ships them")
    return splits


def _read_npz(path: Path, with_target: bool) -> Records:
    """A MedMNIST-style archive: uint8 images (N, H, W[, C]) and labels (N,) or (N, L)."""
    try:
        with np.load(path) as archive:
            splits = _npz_splits(archive)
            images = np.concatenate([archive[f"{s}_images"] for s in splits])
            split = np.concatenate([[s] * len(archive[f"{s}_images"]) for s in splits])
            labels = np.concatenate([archive[f"{s}_labels"] for s in splits]) if with_target else None
    except (OSError, ValueError, KeyError) as error:
        raise DataError(f"cannot read {path} as an .npz dataset: {error}") from None
    if labels is not None and labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    return Records(inputs=images, target=labels, split=split)


def _drop_unreadable(records: Records, data_config: DataConfig) -> Records:
    """Check every file opens; stop with a list of the bad ones, or skip them when asked to."""
    if isinstance(records.inputs, np.ndarray):
        return records
    image_io = _io()
    problems: dict[str, str] = {}  # path -> the reader's message, which names the file
    for path in records.inputs:
        try:
            image_io.load_image(path)
        except DataError as error:
            problems[path] = str(error)
    if not problems:
        return records
    if not data_config.skip_bad_files:
        messages = list(problems.values())
        shown = "; ".join(messages[:3]) + (f"; and {len(messages) - 3} more" if len(messages) > 3 else "")
        raise DataError(f"{len(messages)} unreadable image file(s): {shown} (fix them, or pass --skip-bad-files)")
    keep = np.array([i for i, p in enumerate(records.inputs) if p not in problems], dtype=int)
    if not len(keep):
        raise DataError("every image file is unreadable")
    kept = records.subset(keep)
    kept.skipped = list(problems.values())
    return kept


def _as_slices(records: Records, data_config: DataConfig) -> Records:
    """Each volume becomes its slices along the first spatial axis; a slice's group is its volume
    (or the volume's patient), so no volume is split between training and test."""
    window = list(data_config.window) if data_config.window else None
    items, owners = [], []
    for index, path in enumerate(records.inputs):
        volume = _load_cached(path, tuple(window) if window else None)
        if volume.ndim != 4:
            raise DataError(f"{path} is not a volume; volume_slices needs 3-D images (NIfTI, multi-frame DICOM)")
        items += [(path, k) for k in range(volume.shape[1])]
        owners += [index] * volume.shape[1]
    owners_array = np.asarray(owners)
    expanded = records.subset(owners_array)
    expanded.inputs = items
    expanded.groups = (records.groups if records.groups is not None else np.asarray(records.inputs, dtype=object))[owners_array]
    expanded.skipped = records.skipped
    return expanded


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, window: tuple[float, float] | None) -> np.ndarray:
    """Recently read volumes, so the slices of one volume read its file once."""
    return _io().load_image(path, window=window)


def perceptual_hash(picture: np.ndarray) -> int:
    """The 64-bit DCT hash (pHash) of a 2-D picture: the 8x8 lowest frequencies of a 32x32 copy against their median.

    Written here: a few lines over SciPy's DCT, where imagehash would add PyWavelets and PIL round trips.
    """
    from scipy.fft import dctn

    tensor = torch.as_tensor(np.asarray(picture, dtype=np.float32))[None, None]
    small = torch.nn.functional.interpolate(tensor, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)[0, 0]
    low = dctn(small.numpy().astype(np.float64), norm="ortho")[:8, :8]
    return int(np.packbits((low > np.median(low)).ravel()).view(">u8")[0])


# --------------------------------------------------------------------------- preprocessing
def _as_array(item: Any, window: list[float] | None) -> np.ndarray:
    """One image as float32 (C, H, W) or (C, D, H, W) in [0, 1]: from a path, a (volume path, slice)
    pair, or a raw array (npz)."""
    if isinstance(item, tuple):
        path, index = item
        return _load_cached(path, tuple(window) if window else None)[:, index]
    if isinstance(item, (str, Path)):
        return _io().load_image(item, window=tuple(window) if window else None)
    array = np.asarray(item)
    scale = 255.0 if array.dtype == np.uint8 else (65535.0 if array.dtype == np.uint16 else 1.0)
    array = array.astype(np.float32) / scale
    channels_last = array.ndim == 4 or (array.ndim == 3 and array.shape[-1] in (1, 3, 4))
    if channels_last:  # (H, W, C) or (D, H, W, C), as MedMNIST stores colour; alpha dropped
        return np.moveaxis(array, -1, 0)[:3]
    return array[None]  # (H, W) grey, or (D, H, W) a volume


class ImagePreprocessor(Preprocessor):
    """The input contract: spatial size, channels, window, and the training set's mean and std.

    ``predict`` and ``serve`` apply the same contract, so an image is never fed in the wrong
    range or shape.
    """

    def __init__(
        self,
        image_size: int | None = None,
        window: list[float] | None = None,
        augment: bool = True,
        channels: int | None = None,
        spatial_dims: int | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ):
        self.image_size, self.window, self.augment = image_size, window, augment
        self.channels, self.spatial_dims, self.mean, self.std = channels, spatial_dims, mean, std

    def fit(self, records: Records) -> ImagePreprocessor:
        rng = np.random.default_rng(0)
        chosen = rng.choice(len(records), size=min(len(records), STATISTICS_SAMPLE), replace=False)
        sample = [_as_array(records.inputs[i], self.window) for i in sorted(chosen)]
        self.spatial_dims = sample[0].ndim - 1
        self.channels = max(a.shape[0] for a in sample)
        if self.image_size is None:
            native = int(np.median([max(a.shape[1:]) for a in sample]))
            self.image_size = min(native, MAX_DEFAULT_SIZE[self.spatial_dims])
        stacked = torch.stack([self._shape(a) for a in sample])
        reduce = [0, *range(2, stacked.ndim)]
        self.mean = stacked.mean(dim=reduce).tolist()
        self.std = stacked.std(dim=reduce).clamp(min=1e-3).tolist()
        return self

    def _shape(self, array: np.ndarray) -> torch.Tensor:
        """Channels matched (grey repeated to RGB, RGB averaged to grey), resized to the contract."""
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        if tensor.ndim - 1 != self.spatial_dims:
            raise DataError(f"a {tensor.ndim - 1}-D image was given to a model trained on {self.spatial_dims}-D images")
        if tensor.shape[0] != self.channels:
            tensor = tensor.mean(dim=0, keepdim=True) if self.channels == 1 else tensor[:1].expand(self.channels, *tensor.shape[1:])
        size = (self.image_size,) * self.spatial_dims
        if tuple(tensor.shape[1:]) != size:
            mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
            tensor = torch.nn.functional.interpolate(tensor[None], size=size, mode=mode, align_corners=False, antialias=self.spatial_dims == 2)[0]
        return tensor

    def _normalise(self, tensor: torch.Tensor) -> torch.Tensor:
        view = (-1,) + (1,) * self.spatial_dims
        return (tensor - torch.tensor(self.mean).view(view)) / torch.tensor(self.std).view(view)

    def resized(self, item: Any) -> torch.Tensor:
        """One image read, with the contract's channels and size, in [0, 1] (for display)."""
        return self._shape(_as_array(item, self.window))

    def load(self, item: Any) -> torch.Tensor:
        """One image ready for the model: read, channels, size, normalisation."""
        return self._normalise(self.resized(item))

    def transform(self, inputs: Any) -> torch.Tensor:
        return torch.stack([self.load(item) for item in inputs])

    def dataset(self, inputs: Any, targets: np.ndarray, *, train: bool = False) -> Dataset:
        augmentation = BatchAugmentation(self.spatial_dims) if train and self.augment else None
        return ImageDataset(self, inputs, targets, augmentation)

    def feature_matrix(self, inputs: Any) -> np.ndarray:
        """Baseline features: the image average-pooled to at most 16 pixels a side, flattened."""
        images = self.transform(inputs)
        pool = torch.nn.functional.adaptive_avg_pool2d if self.spatial_dims == 2 else torch.nn.functional.adaptive_avg_pool3d
        pooled = pool(images, min(16, self.image_size) if self.spatial_dims == 2 else min(8, self.image_size))
        return pooled.reshape(len(images), -1).numpy()

    def model_kwargs(self) -> dict[str, Any]:
        return {"in_channels": self.channels, "image_size": self.image_size, "spatial_dims": self.spatial_dims}

    def get_config(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "spatial_dims": self.spatial_dims,
            "channels": self.channels,
            "intensity": "each image read to [0, 1] (DICOM via modality + VOI LUT), then (x - mean) / std",
            "window": self.window,
            "mean": self.mean,
            "std": self.std,
            "augment": self.augment,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ImagePreprocessor:
        keys = ("image_size", "window", "augment", "channels", "spatial_dims", "mean", "std")
        return cls(**{k: config[k] for k in keys})


class BatchAugmentation:
    """Mild, anatomy-preserving augmentation of a whole batch at once (no flips: left and right
    differ in a chest X-ray): a random rotation (±10°), scale (±10%) and shift (±6% of the side)
    with probability 0.8, then a random intensity scale and shift (±10%) each with probability 0.5.

    Batched through MONAI's ``AffineTransform`` layer (one resampling call per batch): MONAI's
    per-image ``RandAffine`` cost more than the model at 28 px. Random numbers come from torch's
    generator, which the trainer seeds per epoch, so augmentation is repeatable and resumable.

    >>> augmented = BatchAugmentation(spatial_dims=2)(images)  # (B, C, H, W)
    """

    def __init__(self, spatial_dims: int, rotate: float = 0.17, scale: float = 0.1, shift: float = 0.06, intensity: float = 0.1):
        self.spatial_dims, self.rotate, self.scale, self.shift, self.intensity = spatial_dims, rotate, scale, shift, intensity

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        from monai.networks.layers import AffineTransform

        n, dims = len(images), self.spatial_dims
        theta = self._affines(n)
        moved = torch.rand(n) < 0.8
        theta[~moved] = torch.eye(dims, dims + 1)
        theta = theta.to(dtype=images.dtype, device=images.device)
        resample = AffineTransform(normalized=True, mode="bilinear", padding_mode="border", align_corners=False)
        images = resample(images, theta)
        view = (n,) + (1,) * (images.ndim - 1)
        factor = 1 + self.intensity * (2 * torch.rand(n) - 1) * (torch.rand(n) < 0.5)
        offset = self.intensity * (2 * torch.rand(n) - 1) * (torch.rand(n) < 0.5)
        return images * factor.to(images).view(view) + offset.to(images).view(view)

    def _affines(self, n: int) -> torch.Tensor:
        """(n, d, d + 1) matrices mapping output to input coordinates in [-1, 1]."""
        dims = self.spatial_dims
        rotation = torch.eye(dims).repeat(n, 1, 1)
        for axes in ([(0, 1)] if dims == 2 else [(1, 2), (0, 2), (0, 1)]):
            angle = self.rotate * (2 * torch.rand(n) - 1)
            turn = torch.eye(dims).repeat(n, 1, 1)
            i, j = axes
            turn[:, i, i], turn[:, i, j], turn[:, j, i], turn[:, j, j] = angle.cos(), -angle.sin(), angle.sin(), angle.cos()
            rotation = turn @ rotation
        zoom = 1 + self.scale * (2 * torch.rand(n, 1, 1) - 1)
        shift = 2 * self.shift * (2 * torch.rand(n, dims, 1) - 1)  # a fraction of the side; [-1, 1] spans 2
        return torch.cat([rotation / zoom, shift], dim=2)


class ImageDataset(Dataset):
    """Images loaded (and augmented) one at a time, so the dataset may be larger than memory.

    Small in-memory arrays (``.npz``) are preprocessed once and cached. :meth:`batch` gives a
    whole batch at once, augmented in one call; the trainer uses it when a dataset has it.
    """

    def __init__(self, preprocessor: ImagePreprocessor, inputs: Any, targets: np.ndarray, augmentation: Any = None):
        self.preprocessor, self.inputs, self.augmentation = preprocessor, inputs, augmentation
        self.targets = np.asarray(targets)
        self.cache = preprocessor.transform(inputs) if isinstance(inputs, np.ndarray) else None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = self.batch(torch.tensor([index]))
        return images[0], targets[0]

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and targets of ``indices``, augmented when training."""
        if self.cache is not None:
            images = self.cache[indices]
        else:
            images = torch.stack([self.preprocessor.load(self.inputs[i]) for i in indices.tolist()])
        if self.augmentation is not None:
            images = self.augmentation(images)
        return images, torch.as_tensor(self.targets[indices.numpy()])
