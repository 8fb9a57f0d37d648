"""The MedMNIST 2-D image sets: names, official files, checksums, and a local or downloaded copy.

Each set comes at 28 px (``pneumoniamnist``) and, from MedMNIST+, at 64, 128 and 224 px
(``pneumoniamnist_64`` ...). A fetched file is a MedMNIST ``.npz`` with the official
train/val/test split, which ``medtorch train --data PATH`` reads as it is.

>>> path = fetch("pneumoniamnist", root="data", download=True)

The catalog follows ``medmnist/info.py`` of the ``medmnist`` package 3.0.2 (github.com/MedMNIST/MedMNIST),
whose files live in Zenodo record 10519652. The 28 px files of nine sets are byte-identical to
MedMNIST v2 (record 6496656); OrganA/C/S were re-issued in v3 with a few images removed, so
their checksums and counts differ from v2's. RetinaMNIST is an ordinal 5-grade task, listed here
as multiclass (the task medtorch trains); DermaMNIST is CC BY-NC 4.0, every other set CC BY 4.0.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping

from medtorch.errors import DataError

ZENODO = "https://zenodo.org/records/10519652/files"
SIZES = (28, 64, 128, 224)
CHUNK = 1 << 20

_ORGANS = (
    "bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right",
    "liver", "lung-left", "lung-right", "pancreas", "spleen",
)  # fmt: skip

# name: (task, channels, (train, val, test), labels, licence, MD5 at 28, 64, 128 and 224 px)
_CATALOG: dict[str, tuple[str, int, tuple[int, int, int], tuple[str, ...], str, tuple[str, str, str, str]]] = {
    "pathmnist": (
        "multiclass", 3, (89996, 10004, 7180),
        ("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle", "normal colon mucosa",
         "cancer-associated stroma", "colorectal adenocarcinoma epithelium"),
        "CC BY 4.0",
        ("a8b06965200029087d5bd730944a56c1", "55aa9c1e0525abe5a6b9d8343a507616",
         "ac42d08fb904d92c244187169d1fd1d9", "2c51a510bcdc9cf8ddb2af93af1eadec"),
    ),
    "chestmnist": (
        "multilabel", 1, (78468, 11219, 22433),
        ("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
         "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia"),
        "CC BY 4.0",
        ("02c8a6516a18b556561a56cbdd36c4a8", "9de6cd0b934ebb5b7426cfba5efbae16",
         "db107e5590b27930b62dbaf558aebee3", "45bd33e6f06c3e8cdb481c74a89152aa"),
    ),
    "dermamnist": (
        "multiclass", 3, (7007, 1003, 2005),
        ("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma", "benign keratosis-like lesions",
         "dermatofibroma", "melanoma", "melanocytic nevi", "vascular lesions"),
        "CC BY-NC 4.0",
        ("0744692d530f8e62ec473284d019b0c7", "b70a2f5635c6199aeaa28c31d7202e1f",
         "2defd784463fa5243564e855ed717de1", "8974907d8e169bef5f5b96bc506ae45d"),
    ),
    "octmnist": (
        "multiclass", 1, (97477, 10832, 1000),
        ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
        "CC BY 4.0",
        ("c68d92d5b585d8d81f7112f81e2d0842", "e229e9440236b774d9f0dfef9d07bdaf",
         "0a97e76651ace45c5d943ee3f65b63ae", "abc493b6d529d5de7569faaef2773ba3"),
    ),
    "pneumoniamnist": (
        "binary", 1, (4708, 524, 624),
        ("normal", "pneumonia"),
        "CC BY 4.0",
        ("28209eda62fecd6e6a2d98b1501bb15f", "8f4eceb4ccffa70c672198ea285246c6",
         "05b46931834c231683c68f40c47b2971", "d6a3c71de1b945ea11211b03746c1fe1"),
    ),
    "retinamnist": (
        "multiclass", 3, (1080, 120, 400),
        ("0", "1", "2", "3", "4"),
        "CC BY 4.0",
        ("bd4c0672f1bba3e3a89f0e4e876791e4", "afda852cc34dcda56f86ad2b2457dbcc",
         "e48e916a24454daf90583d4e6efb1a18", "eae7e3b6f3fcbda4ae613ebdcbe35348"),
    ),
    "breastmnist": (
        "binary", 1, (546, 78, 156),
        ("malignant", "normal, benign"),
        "CC BY 4.0",
        ("750601b1f35ba3300ea97c75c52ff8f6", "742edef2a1fd1524b2efff4bd7ba9364",
         "363e4b3f8d712e9b5de15470a2aaadf1", "b56378a6eefa9fed602bb16d192d4c8b"),
    ),
    "bloodmnist": (
        "multiclass", 3, (11959, 1712, 3421),
        ("basophil", "eosinophil", "erythroblast",
         "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)", "lymphocyte", "monocyte",
         "neutrophil", "platelet"),
        "CC BY 4.0",
        ("7053d0359d879ad8a5505303e11de1dc", "2b94928a2ae4916078ca51e05b6b800b",
         "adace1e0ed228fccda1f39692059dd4c", "b718ff6835fcbdb22ba9eacccd7b2601"),
    ),
    "tissuemnist": (
        "multiclass", 1, (165466, 23640, 47280),
        ("Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule", "Glomerular endothelial cells",
         "Interstitial endothelial cells", "Leukocytes", "Podocytes", "Proximal Tubule Segments",
         "Thick Ascending Limb"),
        "CC BY 4.0",
        ("ebe78ee8b05294063de985d821c1c34b", "123ece2eba09d0aa5d698fda57103344",
         "61b955355d7425a89687b06cca3ce0c2", "b077128c4a949f0a4eb01517f9037b9c"),
    ),
    "organamnist": (
        "multiclass", 1, (34561, 6491, 17778), _ORGANS, "CC BY 4.0",
        ("68e3f8846a6bd62f0c9bf841c0d9eacc", "2dcccc29b88e6da5a01161ef20cda288",
         "eeae80d0a227a8d099027e1b3cfd3b60", "50747347e05c87dd3aaf92c49f9f3170"),
    ),
    "organcmnist": (
        "multiclass", 1, (12975, 2392, 8216), _ORGANS, "CC BY 4.0",
        ("b9ceb9546e10131b32923c5bbeaea2b1", "3ce34a8724ea6f548e6db4744d03b6a9",
         "773c1f009daa3fe5d9a2a201b2a7ed94", "050f5e875dc056f6768abf94ec9995d1"),
    ),
    "organsmnist": (
        "multiclass", 1, (13932, 2452, 8827), _ORGANS, "CC BY 4.0",
        ("9ab87b696fb54e2a387ebe992d6ed5f1", "53a6d115339d874c25e309a994ff46d3",
         "ded0c5fa01a95dc4978b956f613e9b8e", "b354719e553fbbb2513d5533f52a4cb1"),
    ),
}  # fmt: skip


@dataclass(frozen=True)
class DatasetInfo:
    """One downloadable file: a MedMNIST set at one image size.

    ``task`` is a medtorch task type (binary, multiclass, multilabel); ``labels[i]`` names class
    (or, for multilabel, column) ``i``; ``n_samples`` maps train/val/test to their sizes.

    >>> dataset_info("breastmnist").n_samples["test"]
    156
    """

    name: str
    task: str
    labels: tuple[str, ...]
    channels: int
    size: int
    n_samples: Mapping[str, int]
    url: str
    md5: str
    filename: str
    license: str = "CC BY 4.0"

    @property
    def base(self) -> str:
        """The set's name without the size suffix (``pneumoniamnist`` for ``pneumoniamnist_64``)."""
        return self.name if self.size == 28 else self.name.rsplit("_", 1)[0]


def _build() -> dict[str, DatasetInfo]:
    entries = {}
    for base, (task, channels, splits, labels, licence, md5s) in _CATALOG.items():
        for size, md5 in zip(SIZES, md5s):
            name = base if size == 28 else f"{base}_{size}"
            entries[name] = DatasetInfo(
                name=name,
                task=task,
                labels=labels,
                channels=channels,
                size=size,
                n_samples=MappingProxyType(dict(zip(("train", "val", "test"), splits))),
                url=f"{ZENODO}/{name}.npz?download=1",
                md5=md5,
                filename=f"{name}.npz",
                license=licence,
            )
    return entries


DATASETS: dict[str, DatasetInfo] = _build()


def list_datasets(size: int | None = None) -> list[str]:
    """Names of the catalogued sets, sorted; ``size`` (28, 64, 128, 224) keeps one image size.

    >>> list_datasets(size=28)[:2]
    ['bloodmnist', 'breastmnist']
    """
    return sorted(name for name, info in DATASETS.items() if size is None or info.size == size)


def dataset_info(name: str) -> DatasetInfo:
    """The catalog entry for ``name`` (``pneumoniamnist``, ``pneumoniamnist_64`` ...).

    >>> dataset_info("pneumoniamnist").task
    'binary'
    """
    key = name.strip().lower()
    key = key.removesuffix("_28")
    if key not in DATASETS:
        close = difflib.get_close_matches(key, list(DATASETS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"unknown dataset {name!r}{hint}; medtorch.datasets.list_datasets() names them all")
    return DATASETS[key]


def fetch(
    name: str,
    root: str | Path = "data",
    *,
    download: bool = False,
    verify: bool = True,
    progress: bool = True,
) -> Path:
    """The path of ``name``'s ``.npz`` under ``root``, downloaded first when asked to.

    ``root`` is a folder holding ``<name>.npz`` (or ``<name>/<name>.npz``), or the file itself.
    With ``verify`` the file's MD5 must equal the official release's; ``verify=False`` accepts
    a re-saved or re-assembled copy. A missing file is downloaded with ``download=True`` (to
    ``root/<name>.npz``, atomically: a failed download leaves nothing under that name).

    >>> path = fetch("pneumoniamnist", root="data", download=True)   # then: medtorch train --data PATH
    """
    info = dataset_info(name)
    root = Path(root).expanduser()
    for path in _candidates(info, root):
        if path.is_file():
            if verify:
                _check_local(path, info)
            return path
    target = root if root.suffix.lower() == ".npz" else root / info.filename
    if not download:
        raise DataError(
            f"{info.name} not found at {target}; download it with fetch({info.name!r}, root={str(target.parent)!r}, "
            f"download=True), or fetch {info.url} yourself (MD5 {info.md5}) and pass its folder as root"
        )
    return _download(info, target, verify=verify, progress=progress)


def _candidates(info: DatasetInfo, root: Path) -> list[Path]:
    if root.is_file() or root.suffix.lower() == ".npz":
        return [root]
    folders = dict.fromkeys([root, root / info.name, root / info.base])
    return [folder / info.filename for folder in folders]


def file_md5(path: str | Path) -> str:
    """The hex MD5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _check_local(path: Path, info: DatasetInfo) -> None:
    actual = file_md5(path)
    if actual != info.md5:
        raise DataError(
            f"{path} differs from the official {info.name} release (MD5 {actual}, expected {info.md5} for {info.url}): "
            f"it is a modified, re-saved or incomplete copy; to use it as it is, pass verify=False "
            f"(fetch({info.name!r}, ..., verify=False)), or delete it and fetch again with download=True"
        )


def _download(info: DatasetInfo, target: Path, *, verify: bool, progress: bool) -> Path:
    """Stream ``info.url`` into a temporary file beside ``target``, check it, then rename it into place."""
    import urllib.error
    import urllib.request

    from medtorch.version import __version__

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False)
    except OSError as error:
        raise DataError(f"cannot write to {target.parent}: {error.strerror or error}") from None
    partial = Path(handle.name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        request = urllib.request.Request(info.url, headers={"User-Agent": f"medtorch/{__version__}"})
        with handle, urllib.request.urlopen(request, timeout=60) as response:
            total = _content_length(response)
            with _progress(info.filename, total, progress) as advance:
                while chunk := response.read(CHUNK):
                    handle.write(chunk)
                    digest.update(chunk)
                    advance(len(chunk))
        if verify and digest.hexdigest() != info.md5:
            raise DataError(
                f"the download of {info.name} from {info.url} has MD5 {digest.hexdigest()}, not the official {info.md5}: "
                "it is corrupt or the release changed, and nothing was saved; try again, or pass verify=False to keep it"
            )
        os.replace(partial, target)
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        partial.unlink(missing_ok=True)
        reason = getattr(error, "reason", None) or error
        raise DataError(
            f"downloading {info.name} from {info.url} failed ({reason}); check the connection, "
            f"or download the file yourself into {target.parent}"
        ) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target


def _content_length(response: Any) -> int | None:
    headers = getattr(response, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    return int(value) if value and str(value).isdigit() else None


@contextmanager
def _progress(label: str, total: int | None, show: bool) -> Iterator[Callable[[int], None]]:
    """A rich download bar (bytes, speed, time left) on stderr; yields ``advance(n_bytes)``."""
    if not show:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(f"downloading {label}", total=total)
        yield lambda n: bar.advance(task, n)
