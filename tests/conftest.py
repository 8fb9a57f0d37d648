"""Shared fixtures: small synthetic clinical tables, the shared real datasets, and the CLI.

Everything here is tiny on purpose (a few hundred rows), so the whole suite runs on a
two-core laptop without a GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
TARGET = "outcome"


def make_clinical_frame(
    n: int = 300,
    *,
    seed: int = 0,
    rows_per_patient: int | None = None,
    missing: bool = True,
    with_id: bool = False,
    signal: float = 2.5,
    target: str = TARGET,
    labels: tuple[object, object] = (0, 1),
) -> pd.DataFrame:
    """A synthetic clinical table whose target depends on the features.

    Columns: ``age`` (int), ``sex`` (F/M), ``sbp`` and ``glucose`` (floats, with NaN when
    ``missing``), ``smoker`` (never/former/current, with NaN when ``missing``), ``target``
    (``labels[1]`` is the positive, driven mostly by glucose and smoking). With
    ``rows_per_patient`` a ``patient_id`` column gives several visits per patient; with
    ``with_id`` a unique integer ``id`` column (an identifier, not a feature) comes first.
    """
    rng = np.random.default_rng(seed)
    age = rng.integers(25, 90, n)
    sex = rng.choice(["F", "M"], n)
    sbp = rng.normal(130, 18, n).round(1)
    glucose = rng.normal(105, 25, n).round(1)
    smoker = rng.choice(["never", "former", "current"], n, p=[0.5, 0.3, 0.2])
    logit = signal * ((glucose - 105) / 25) + 1.2 * (smoker == "current") + 0.02 * (age - 57) - 0.4
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame(
        {
            "age": age,
            "sex": sex,
            "sbp": sbp,
            "glucose": glucose,
            "smoker": smoker,
            target: np.where(y, labels[1], labels[0]),
        }
    )
    if missing:
        frame.loc[rng.random(n) < 0.1, "sbp"] = np.nan
        frame.loc[rng.random(n) < 0.08, "smoker"] = np.nan
    if rows_per_patient:
        frame.insert(0, "patient_id", [f"P{i // rows_per_patient:04d}" for i in range(n)])
    if with_id:
        frame.insert(0, "id", np.arange(10_000, 10_000 + n))
    return frame


@pytest.fixture(scope="session")
def make_frame() -> Callable[..., pd.DataFrame]:
    """The synthetic table maker (see :func:`make_clinical_frame`)."""
    return make_clinical_frame


@pytest.fixture
def clinical_frame() -> pd.DataFrame:
    """300 rows, numeric + categorical features with missing values, a binary target with signal."""
    return make_clinical_frame()


@pytest.fixture
def make_csv(tmp_path: Path) -> Callable[..., Path]:
    """Write a synthetic table (or a given DataFrame) to a CSV in ``tmp_path``; returns the path."""

    def write(frame: pd.DataFrame | None = None, name: str = "clinical.csv", **kwargs) -> Path:
        frame = make_clinical_frame(**kwargs) if frame is None else frame
        path = tmp_path / name
        frame.to_csv(path, index=False)
        return path

    return write


@pytest.fixture
def clinical_csv(make_csv: Callable[..., Path]) -> Path:
    return make_csv()


def _data_required() -> bool:
    return os.environ.get("MEDTORCH_REQUIRE_DATA") == "1" or bool(os.environ.get("CI"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets folder (``$MEDTORCH_DATA`` or ``<repo>/../shared/data``).

    Missing data skips the test on a laptop but fails it where it must run (CI, or
    ``MEDTORCH_REQUIRE_DATA=1``), so a CI job can never pass by silently skipping.
    """
    path = Path(os.environ.get("MEDTORCH_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        message = f"shared datasets not found at {path}; set MEDTORCH_DATA"
        if _data_required():
            pytest.fail(message)
        pytest.skip(message)
    return path


def run_medtorch(*args: object, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m medtorch ARGS`` the way a user runs it; returns the completed process (text)."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "medtorch", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """The CLI runner (see :func:`run_medtorch`)."""
    return run_medtorch


@pytest.fixture
def one_torch_thread():
    """Tiny CPU models train fastest on one thread, and runs stay quick on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def untrained_image_bundle():
    """A factory: ``untrained_image_bundle(name, channels=1)`` is a bundle of an untrained ``name`` at 28 px
    whose image preprocessor was fitted on a few uint8 arrays."""

    def build(name: str, channels: int = 1):
        import torch

        from medtorch.bundle import Bundle
        from medtorch.config import DataConfig
        from medtorch.data.base import Records, get_modality
        from medtorch.registry import create_model
        from medtorch.tasks import infer_task

        rng = np.random.default_rng(0)
        shape = (6, 20, 20) if channels == 1 else (6, 20, 20, channels)
        records = Records(inputs=rng.integers(0, 256, size=shape, dtype=np.uint8), target=np.array([0, 1] * 3))
        imaging = get_modality("image")
        preprocessor = imaging.preprocessor(DataConfig(image_size=28)).fit(records)
        task = infer_task(records.target)
        torch.manual_seed(0)
        kwargs = {**preprocessor.model_kwargs(), "out_features": task.out_features}
        return Bundle(create_model(name, **kwargs).eval(), name, kwargs, task, imaging, preprocessor, threshold=0.5)

    return build
