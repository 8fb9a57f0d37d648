"""The MedMNIST catalog: names and facts, local copies (the shared ones are not official), downloads.

Nothing here touches the network: downloads are served from local bytes by a stand-in for
``urllib.request.urlopen``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from medtorch.config import DataConfig
from medtorch.data.base import get_modality
from medtorch.datasets import DatasetInfo, dataset_info, fetch, list_datasets
from medtorch.datasets import medmnist
from medtorch.errors import DataError
from medtorch.tasks import infer_task

TWO_D = [
    "bloodmnist", "breastmnist", "chestmnist", "dermamnist", "octmnist", "organamnist",
    "organcmnist", "organsmnist", "pathmnist", "pneumoniamnist", "retinamnist", "tissuemnist",
]  # fmt: skip
SHARED = {  # folder in ../shared/data -> official split sizes
    "pneumoniamnist": {"train": 4708, "val": 524, "test": 624},
    "breastmnist": {"train": 546, "val": 78, "test": 156},
}


# --------------------------------------------------------------------------- the catalog
def test_catalog_lists_the_twelve_2d_sets_at_every_size():
    assert list_datasets(size=28) == TWO_D
    for size in (64, 128, 224):
        assert list_datasets(size=size) == [f"{name}_{size}" for name in TWO_D]
    assert list_datasets() == sorted(list_datasets(size=28) + [n for s in (64, 128, 224) for n in list_datasets(size=s)])


@pytest.mark.parametrize("name", list_datasets())
def test_every_entry_is_complete_and_consistent(name):
    info = dataset_info(name)
    assert isinstance(info, DatasetInfo) and info.name == name
    assert info.task in ("binary", "multiclass", "multilabel")
    assert re.fullmatch(r"[0-9a-f]{32}", info.md5)
    assert info.filename == f"{name}.npz"
    assert info.url == f"https://zenodo.org/records/10519652/files/{info.filename}?download=1"
    assert info.channels in (1, 3) and info.size in (28, 64, 128, 224)
    assert list(info.n_samples) == ["train", "val", "test"] and min(info.n_samples.values()) > 0
    assert len(info.labels) == len(set(info.labels)) >= 2
    assert (info.task == "binary") == (len(info.labels) == 2)
    base = dataset_info(info.base)
    for field in ("task", "labels", "channels", "n_samples", "license"):
        assert getattr(info, field) == getattr(base, field), field


def test_checksums_are_distinct_per_file():
    md5s = [dataset_info(name).md5 for name in list_datasets()]
    assert len(set(md5s)) == len(md5s)


@pytest.mark.parametrize("name", list(SHARED))
def test_binary_sets_have_the_official_split_sizes(name):
    info = dataset_info(name)
    assert info.task == "binary" and info.channels == 1 and info.size == 28
    assert dict(info.n_samples) == SHARED[name]


def test_known_official_facts():
    pneumonia, breast = dataset_info("pneumoniamnist"), dataset_info("breastmnist")
    assert pneumonia.md5 == "28209eda62fecd6e6a2d98b1501bb15f" and pneumonia.labels == ("normal", "pneumonia")
    assert breast.md5 == "750601b1f35ba3300ea97c75c52ff8f6" and breast.labels == ("malignant", "normal, benign")
    assert dataset_info("chestmnist").task == "multilabel" and len(dataset_info("chestmnist").labels) == 14
    assert dataset_info("retinamnist").task == "multiclass"  # ordinal 5-grade DR, trained as multiclass
    assert dataset_info("dermamnist").license == "CC BY-NC 4.0"
    assert dataset_info("pathmnist_224").md5 == "2c51a510bcdc9cf8ddb2af93af1eadec"


def test_names_are_case_insensitive_and_28_is_the_plain_name():
    assert dataset_info("PneumoniaMNIST") is dataset_info("pneumoniamnist") is dataset_info("pneumoniamnist_28")


@pytest.mark.parametrize(("typo", "suggestion"), [("pneumonimnist", "pneumoniamnist"), ("breastmnist_46", "breastmnist_64")])
def test_unknown_name_suggests_the_closest(typo, suggestion, tmp_path):
    with pytest.raises(DataError, match=f"unknown dataset '{typo}' \\(did you mean '{suggestion}'\\?\\)"):
        dataset_info(typo)
    with pytest.raises(DataError, match="did you mean"):
        fetch(typo, root=tmp_path)


def test_unknown_name_without_a_close_match_points_at_the_list():
    with pytest.raises(DataError, match="list_datasets") as caught:
        dataset_info("imagenet")
    assert "did you mean" not in str(caught.value)


def test_import_is_light():
    heavy = "{'numpy', 'torch', 'pandas', 'rich', 'urllib.request'}"
    code = f"import sys, medtorch.datasets; print(sorted({heavy} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- the shared (non-official) copies
@pytest.mark.shared_data
@pytest.mark.parametrize("name", list(SHARED))
def test_shared_copy_is_returned_without_verification(name, shared_data):
    folder = shared_data / name
    expected = folder / f"{name}.npz"
    assert fetch(name, root=folder, verify=False) == expected  # root/<file>
    assert fetch(name, root=shared_data, verify=False) == shared_data / name / f"{name}.npz"  # root/<name>/<file>
    assert fetch(name, root=expected, verify=False) == expected  # root is the file itself


@pytest.mark.shared_data
@pytest.mark.parametrize("name", list(SHARED))
def test_shared_copy_fails_verification_with_a_way_out(name, shared_data):
    """The shared copies were re-assembled (pneumonia) or re-saved (breast), so their MD5 is not official."""
    with pytest.raises(DataError) as caught:
        fetch(name, root=shared_data / name)
    message = str(caught.value)
    assert "differs from the official" in message and "verify=False" in message
    assert dataset_info(name).md5 in message and medmnist.file_md5(shared_data / name / f"{name}.npz") in message


@pytest.mark.shared_data
def test_a_present_file_is_never_downloaded_again(shared_data, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    path = fetch("breastmnist", root=shared_data / "breastmnist", download=True, verify=False)
    assert path == shared_data / "breastmnist" / "breastmnist.npz"


@pytest.mark.shared_data
@pytest.mark.parametrize("name", list(SHARED))
def test_fetched_file_reads_as_images_with_the_official_splits(name, shared_data):
    info = dataset_info(name)
    path = fetch(name, root=shared_data / name, verify=False)
    modality = get_modality("image")
    assert modality.can_read(path)
    records = modality.read(path, DataConfig())
    assert len(records) == sum(info.n_samples.values())
    assert records.inputs.shape[1:] == (info.size, info.size)
    splits, counts = np.unique(records.split, return_counts=True)
    assert dict(zip(splits.tolist(), counts.tolist())) == dict(info.n_samples)
    assert infer_task(records.target).type == info.task
    assert sorted(np.unique(records.target).tolist()) == list(range(len(info.labels)))
    preprocessor = modality.preprocessor(DataConfig()).fit(records.subset(np.arange(64)))
    assert tuple(preprocessor.transform(records.inputs[:4]).shape) == (4, info.channels, info.size, info.size)


@pytest.mark.shared_data
def test_fetched_file_trains_on_its_official_train_split(shared_data):
    """One optimisation step of the image pipeline's small CNN on the official train split."""
    import torch

    from medtorch.registry import create_model

    info = dataset_info("breastmnist")
    path = fetch("breastmnist", root=shared_data, verify=False)
    modality = get_modality("image")
    records = modality.read(path, DataConfig())
    train = records.subset(np.flatnonzero(records.split == "train"))
    assert len(train) == info.n_samples["train"]
    preprocessor = modality.preprocessor(DataConfig(augment=False)).fit(train)
    inputs, targets = next(iter(torch.utils.data.DataLoader(preprocessor.dataset(train.inputs, train.target), batch_size=64)))
    torch.manual_seed(0)
    model = create_model("small_cnn", **preprocessor.model_kwargs(), out_features=1)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(inputs)[:, 0], targets.float())
    loss.backward()
    optimiser.step()
    assert inputs.shape == (64, info.channels, info.size, info.size) and torch.isfinite(loss)


# --------------------------------------------------------------------------- downloads (served locally)
class FakeResponse(io.BytesIO):
    """What ``urlopen`` returns: readable bytes with headers, usable as a context manager."""

    def __init__(self, payload: bytes, *, length: bool = True, fail_after: int | None = None):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))} if length else {}
        self.fail_after = fail_after

    def read(self, size: int = -1) -> bytes:
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise self.error
        return super().read(size)

    error: BaseException = ConnectionResetError("connection reset by peer")


def _no_network(*args, **kwargs):
    raise AssertionError("the network was used")


@pytest.fixture
def fake_npz() -> bytes:
    """A tiny MedMNIST-style archive (12 grey 28x28 images, binary labels)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 6), ("val", 3), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).astype(np.uint8)[:, None]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.fixture
def serve(monkeypatch, fake_npz):
    """Point the catalog's pneumoniamnist at the fake archive and serve it; returns the requests seen."""
    info = dataclasses.replace(
        dataset_info("pneumoniamnist"),
        md5=hashlib.md5(fake_npz).hexdigest(),
        n_samples={"train": 6, "val": 3, "test": 3},
    )
    monkeypatch.setitem(medmnist.DATASETS, "pneumoniamnist", info)
    monkeypatch.setattr(medmnist, "CHUNK", 1024)  # several reads, so progress advances more than once
    requests: list[urllib.request.Request] = []

    def start(response_kwargs: dict | None = None) -> list[urllib.request.Request]:
        def urlopen(request, timeout=None):
            requests.append(request)
            return FakeResponse(fake_npz, **(response_kwargs or {}))

        monkeypatch.setattr(urllib.request, "urlopen", urlopen)
        return requests

    return start


def test_missing_file_without_download_names_the_url_and_the_option(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    with pytest.raises(DataError) as caught:
        fetch("pneumoniamnist", root=tmp_path)
    message = str(caught.value)
    assert dataset_info("pneumoniamnist").url in message and "download=True" in message
    assert list(tmp_path.iterdir()) == []


def test_download_saves_the_verified_file_atomically(serve, fake_npz, tmp_path):
    requests = serve()
    root = tmp_path / "new" / "folder"
    path = fetch("pneumoniamnist", root=root, download=True, progress=False)
    assert path == root / "pneumoniamnist.npz"
    assert path.read_bytes() == fake_npz
    assert [p.name for p in root.iterdir()] == ["pneumoniamnist.npz"]  # no temporary file left
    assert [r.full_url for r in requests] == [dataset_info("pneumoniamnist").url]
    assert requests[0].get_header("User-agent").startswith("medtorch/")
    records = get_modality("image").read(path, DataConfig())
    assert len(records) == 12
    # found (and verified) the second time, without the network
    assert fetch("pneumoniamnist", root=root, download=True) == path
    assert len(requests) == 1


def test_download_to_a_file_path(serve, fake_npz, tmp_path):
    serve()
    target = tmp_path / "mine.npz"
    assert fetch("pneumoniamnist", root=target, download=True, progress=False) == target
    assert target.read_bytes() == fake_npz


def test_download_shows_a_progress_bar(serve, fake_npz, tmp_path, capsys):
    serve()
    fetch("pneumoniamnist", root=tmp_path, download=True, progress=True)
    captured = capsys.readouterr()
    assert "downloading pneumoniamnist.npz" in captured.err
    assert captured.out == ""


def test_progress_advances_by_every_byte(serve, fake_npz, tmp_path, monkeypatch):
    import rich.progress

    advanced: list[int] = []
    original = rich.progress.Progress.advance
    monkeypatch.setattr(rich.progress.Progress, "advance", lambda self, task, n: (advanced.append(n), original(self, task, n)))
    serve({"length": False})  # no Content-Length: the bar runs without a total
    fetch("pneumoniamnist", root=tmp_path, download=True, progress=True)
    assert sum(advanced) == len(fake_npz) and len(advanced) > 1


def test_checksum_failure_leaves_no_file_behind(serve, tmp_path, monkeypatch):
    serve()
    info = dataclasses.replace(medmnist.DATASETS["pneumoniamnist"], md5="0" * 32)
    monkeypatch.setitem(medmnist.DATASETS, "pneumoniamnist", info)
    with pytest.raises(DataError, match="not the official 0{32}.*nothing was saved"):
        fetch("pneumoniamnist", root=tmp_path, download=True, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unverified_download_keeps_a_changed_file(serve, fake_npz, tmp_path, monkeypatch):
    serve()
    info = dataclasses.replace(medmnist.DATASETS["pneumoniamnist"], md5="0" * 32)
    monkeypatch.setitem(medmnist.DATASETS, "pneumoniamnist", info)
    path = fetch("pneumoniamnist", root=tmp_path, download=True, verify=False, progress=False)
    assert path.read_bytes() == fake_npz


def test_connection_lost_mid_download_leaves_no_file_behind(serve, tmp_path):
    serve({"fail_after": 2048})
    with pytest.raises(DataError, match="downloading pneumoniamnist from .* failed .*connection reset"):
        fetch("pneumoniamnist", root=tmp_path, download=True, progress=True)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_leaves_no_file_behind(serve, tmp_path, monkeypatch):
    monkeypatch.setattr(FakeResponse, "error", KeyboardInterrupt())
    serve({"fail_after": 1024})
    with pytest.raises(KeyboardInterrupt):
        fetch("pneumoniamnist", root=tmp_path, download=True, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_is_a_data_error(tmp_path, monkeypatch):
    def refuse(request, timeout=None):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(DataError, match="failed \\(Name or service not known\\).*download the file yourself"):
        fetch("breastmnist", root=tmp_path, download=True, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_http_error_is_a_data_error(tmp_path, monkeypatch):
    def not_found(request, timeout=None):
        raise urllib.error.HTTPError(request.full_url, 404, "NOT FOUND", {}, None)

    monkeypatch.setattr(urllib.request, "urlopen", not_found)
    with pytest.raises(DataError, match="NOT FOUND"):
        fetch("breastmnist_64", root=tmp_path, download=True, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_root_is_a_data_error(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match="cannot write to"):
        fetch("breastmnist", root=blocker / "sub", download=True, progress=False)
