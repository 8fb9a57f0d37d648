"""``medtorch demo``: the embedded default run on the Wisconsin breast-cancer data (569 patients).

The data ships with scikit-learn, so the demo needs no download. It is written to
``OUT/data/breast_cancer.csv`` and trained through the same pipeline as any user file.

>>> result = run_demo("runs/demo")
"""

from __future__ import annotations

from pathlib import Path

from medtorch.pipeline import RunResult, train

TARGET = "diagnosis"


def breast_cancer_csv(path: str | Path) -> Path:
    """Write scikit-learn's breast-cancer data as a CSV with a ``diagnosis`` column (malignant/benign)."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.data.copy()
    frame[TARGET] = bunch.target.map(dict(enumerate(bunch.target_names)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def run_demo(out: str | Path = "runs/demo", *, model: str | None = None, epochs: int | None = None, progress: bool = True) -> RunResult:
    """Train, evaluate and bundle a malignant-vs-benign classifier; returns the run."""
    out = Path(out)
    csv = breast_cancer_csv(out / "data" / "breast_cancer.csv")
    overrides = {"task": {"positive": "malignant"}, "model": {"name": model}, "train": {"epochs": epochs}}
    return train(csv, target=TARGET, out=out, overrides=overrides, overwrite=True, progress=progress)
