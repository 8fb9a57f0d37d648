"""Tabular benchmark: the default deep model against the MLP and two scikit-learn baselines.

Usage::

    python benchmarks/tabular.py
    python benchmarks/tabular.py --datasets heart_disease --folds 2 --epochs 3 --out /tmp/smoke.md

Six binary clinical tables (scikit-learn's breast cancer, and from ``../shared/data``: UCI
heart disease (Cleveland), Pima diabetes, heart-failure clinical records, HCV and stroke)
are each split into 5 stratified folds, the same folds for every model. Inside each training
fold a stratified 20% validation part is carved out; every model is fitted through
:func:`medtorch.pipeline.fit_bundle` with the library's defaults (no per-dataset tuning),
and the held-out fold is scored by AUROC. The report (mean AUROC with a 95% t-interval over
folds, wall-clock seconds) goes to ``docs/benchmarks/tabular.md``, the per-fold numbers to
``docs/benchmarks/tabular.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from medtorch.data.base import Modality, Records
    from medtorch.tasks import Task

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "benchmarks" / "tabular.md"
BASELINE_MODELS = ("mlp", "logistic_regression", "hist_gradient_boosting")
REFERENCE_MODEL = "hist_gradient_boosting"
GOAL = (4, 6)  # the default deep model should match or beat REFERENCE_MODEL on 4 of the 6 datasets


# ----------------------------------------------------------------------------- datasets
@dataclass
class Table:
    """A dataset as the benchmark sees it: a DataFrame, how to read it, and what was changed."""

    frame: pd.DataFrame
    data_config: dict[str, Any]
    source: str
    notes: list[str] = field(default_factory=list)


Loader = Callable[[Path], Table]
DATASETS: dict[str, Loader] = {}


def relative(path: Path, root: Path) -> str:
    """``path`` as written in the report: relative to the data root, which differs between machines."""
    return f"<data-root>/{path.relative_to(root).as_posix()}"


def dataset(name: str) -> Callable[[Loader], Loader]:
    """Register a loader ``root -> Table`` under ``name``."""

    def decorator(loader: Loader) -> Loader:
        DATASETS[name] = loader
        return loader

    return decorator


@dataset("breast_cancer")
def breast_cancer(root: Path) -> Table:
    """Wisconsin diagnostic breast cancer (scikit-learn); target ``malignant`` (1 = malignant)."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.data.copy()
    frame["malignant"] = (bunch.target == 0).astype(int)  # scikit-learn codes malignant as 0
    return Table(frame, {"target": "malignant", "id_columns": []}, "sklearn.datasets.load_breast_cancer")


@dataset("heart_disease")
def heart_disease(root: Path) -> Table:
    """UCI heart disease, Cleveland; target ``disease`` = ``num > 0``."""
    import pandas as pd

    columns = ["age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach", "exang", "oldpeak", "slope", "ca", "thal", "num"]
    path = root / "heart_disease_uci" / "processed.cleveland.data"
    frame = pd.read_csv(path, header=None, names=columns, na_values="?")
    frame["disease"] = (frame.pop("num") > 0).astype(int)
    config = {"target": "disease", "id_columns": [], "categorical_columns": ["cp", "restecg", "slope", "thal"]}
    notes = ["target num > 0 (0: no disease, 1-4: disease)", "cp, restecg, slope, thal categorical"]
    return Table(frame, config, relative(path, root), notes)


@dataset("pima_diabetes")
def pima_diabetes(root: Path) -> Table:
    """Pima Indians diabetes; target ``Outcome``; a zero means missing in five measurements."""
    import pandas as pd

    path = root / "pima_diabetes" / "diabetes.csv"
    zero_is_missing = ["Glucose", "BloodPressure", "SkinThickness", "Insulin", "BMI"]
    config = {"target": "Outcome", "id_columns": [], "column_missing_values": {c: [0] for c in zero_is_missing}}
    return Table(pd.read_csv(path), config, relative(path, root), [f"0 read as missing in {', '.join(zero_is_missing)}"])


@dataset("heart_failure")
def heart_failure(root: Path) -> Table:
    """Heart-failure clinical records (Chicco & Jurman 2020); target ``DEATH_EVENT``."""
    import pandas as pd

    path = root / "heart_failure_clinical" / "heart_failure_clinical_records_dataset.csv"
    frame = pd.read_csv(path).drop(columns=["time"])
    note = "`time` dropped: the follow-up period ends at death, so it leaks the outcome"
    return Table(frame, {"target": "DEATH_EVENT", "id_columns": []}, relative(path, root), [note])


@dataset("hcv")
def hcv(root: Path) -> Table:
    """HCV lab data; target ``disease``: blood donor (0) vs hepatitis, fibrosis or cirrhosis (1)."""
    import pandas as pd

    path = root / "hcv_hepatitis_c" / "hcvdat0.csv"
    frame = pd.read_csv(path, index_col=0)  # the first, unnamed column is a row number
    suspect = frame["Category"] == "0s=suspect Blood Donor"
    frame = frame.loc[~suspect].reset_index(drop=True)
    frame["disease"] = (frame.pop("Category") != "0=Blood Donor").astype(int)
    notes = [f"{int(suspect.sum())} '0s=suspect Blood Donor' rows dropped", "unnamed row-number column dropped"]
    return Table(frame, {"target": "disease", "id_columns": []}, relative(path, root), notes)


@dataset("stroke")
def stroke(root: Path) -> Table:
    """Stroke prediction (Kaggle, fedesoriano); target ``stroke``; ``id`` is an identifier."""
    import pandas as pd

    path = root / "stroke_prediction" / "healthcare-dataset-stroke-data.csv"
    frame = pd.read_csv(path, dtype={"bmi": str})  # 'N/A' bmi is left to medtorch's missing codes
    notes = ["`id` is an identifier, not a feature", "bmi 'N/A' read as missing"]
    return Table(frame, {"target": "stroke", "id_columns": ["id"]}, relative(path, root), notes)


# ----------------------------------------------------------------------------- protocol
@dataclass
class Prepared:
    """A dataset read by the tabular modality, with its task and folds."""

    name: str
    table: Table
    modality: Modality
    records: Records
    task: Task
    folds: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (train, val, test) indices per fold

    @property
    def n_features(self) -> int:
        return int(self.records.inputs.shape[1])

    @property
    def positives(self) -> int:
        return int(self.task.encode(self.records.target).sum())


def prepare(name: str, root: Path, n_folds: int) -> Prepared:
    """Read ``name`` with the tabular modality, infer its task, make the folds and validation parts."""
    from medtorch.config import DataConfig
    from medtorch.data.base import get_modality
    from medtorch.data.splits import group_kfold, train_val_test_split
    from medtorch.tasks import infer_task

    table = DATASETS[name](root)
    modality = get_modality("tabular")
    records = modality.read(table.frame, DataConfig(**table.data_config))
    task = infer_task(records.target)
    if task.type != "binary":
        raise SystemExit(f"{name}: expected a binary target, got a {task.type} task")
    folds = []
    for k, (train_fold, test) in enumerate(group_kfold(records.target, None, n_splits=n_folds, seed=0)):
        train, val, _ = train_val_test_split(records.target[train_fold], None, val_size=0.2, test_size=0, seed=k)
        folds.append((train_fold[train], train_fold[val], test))
    return Prepared(name, table, modality, records, task, folds)


def run_fold(data: Prepared, model: str, k: int, epochs: int | None) -> dict[str, Any]:
    """Fit ``model`` on fold ``k``'s training part with the library defaults; AUROC on its test fold."""
    from sklearn.metrics import roc_auc_score

    from medtorch.config import parse_config
    from medtorch.pipeline import fit_bundle, resolve_config

    train, val, test = data.folds[k]
    raw: dict[str, Any] = {"data": data.table.data_config, "model": {"name": model}, "train": {"seed": k}}
    if epochs is not None:
        raw["train"]["epochs"] = epochs
    cfg = resolve_config(parse_config(raw), data.modality, data.task, len(train))
    start = time.perf_counter()
    fitted = fit_bundle(data.modality, data.records, train, val, data.task, cfg, progress=False)
    held_out = data.records.subset(test)
    scores = fitted.bundle.predict_scores(held_out.inputs)
    seconds = time.perf_counter() - start
    auroc = float(roc_auc_score(data.task.encode(held_out.target), scores))
    return {"auroc": auroc, "seconds": seconds, "epochs_run": fitted.training.get("epochs_run")}


def t_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and a t-distribution confidence interval (df = n - 1), clipped to [0, 1]."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, df=n - 1)) * sd / math.sqrt(n)
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def benchmark(data: Prepared, models: list[str], epochs: int | None) -> dict[str, Any]:
    """Every model on every fold of one dataset; prints one line per fold as it goes."""
    results: dict[str, Any] = {}
    for model in models:
        folds = []
        for k in range(len(data.folds)):
            fold = run_fold(data, model, k, epochs)
            folds.append(fold)
            ran = f", {fold['epochs_run']} epochs" if fold["epochs_run"] is not None else ""
            where = f"{data.name:14s} {model:24s} fold {k + 1}/{len(data.folds)}"
            print(f"{where}  AUROC {fold['auroc']:.4f}  ({fold['seconds']:.1f} s{ran})", flush=True)
        aurocs = [f["auroc"] for f in folds]
        mean, low, high = t_interval(aurocs)
        results[model] = {
            "fold_auroc": aurocs,
            "mean_auroc": mean,
            "ci95": [low, high],
            "seconds": sum(f["seconds"] for f in folds),
            "fold_seconds": [f["seconds"] for f in folds],
            "fold_epochs_run": [f["epochs_run"] for f in folds],
        }
        print(f"{data.name:14s} {model:24s} mean AUROC {mean:.4f} [{low:.4f}, {high:.4f}]  {results[model]['seconds']:.1f} s", flush=True)
    return results


# ----------------------------------------------------------------------------- report
def machine() -> dict[str, Any]:
    """Where the numbers were measured."""
    import sklearn
    import torch

    from medtorch.version import __version__

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "scikit-learn": sklearn.__version__,
        "medtorch": __version__,
    }


def summary(results: dict[str, Any], default: str) -> tuple[list[str], list[str]] | None:
    """(datasets compared, datasets where ``default``'s mean AUROC >= the reference model's)."""
    if default == REFERENCE_MODEL:
        return None
    compared = [d for d, r in results.items() if default in r["models"] and REFERENCE_MODEL in r["models"]]
    mean = lambda d, model: results[d]["models"][model]["mean_auroc"]  # noqa: E731
    wins = [d for d in compared if mean(d, default) >= mean(d, REFERENCE_MODEL)]
    return (compared, wins) if compared else None


def table(header: list[str], rows: list[list[Any]], align: str = "") -> list[str]:
    """A markdown table; ``align`` has one ``l`` or ``r`` per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    return ["| " + " | ".join(map(str, row)) + " |" for row in (header, rule, *rows)]


def auroc_cell(stats: dict[str, Any], best: float) -> str:
    """``mean [low, high]``, bold when it is the best mean of its row."""
    low, high = stats["ci95"]
    cell = f"{stats['mean_auroc']:.3f} [{low:.3f}, {high:.3f}]"
    return f"**{cell}**" if stats["mean_auroc"] == best else cell


def markdown(run: dict[str, Any]) -> str:
    """The report: command, date, machine, protocol, datasets, AUROC and time tables, summary."""
    default, models, results, folds = run["default_model"], run["models"], run["datasets"], run["folds"]
    m = run["machine"]
    gpu = f"GPU {m['gpu']}" if m["gpu"] else "no GPU"
    header = ["dataset"] + [f"{n} (default)" if n == default else n for n in models]
    notes = [f"- {name}: {'; '.join(r['notes'])}." for name, r in results.items() if r["notes"]]
    lines = [
        "# Tabular benchmark",
        "",
        f"`{run['command']}`",
        "",
        f"- Date: {run['date']}",
        f"- Machine: {m['cores']}-core CPU ({m['cpu']}), {gpu}; torch {m['torch']} ({m['torch_threads']} threads), "
        f"scikit-learn {m['scikit-learn']}, Python {m['python']}, medtorch {m['medtorch']}",
        "",
        "## Protocol",
        "",
        f"Each dataset is split once into {folds} stratified folds (`group_kfold(target, None, n_splits={folds}, seed=0)`); "
        "every model sees the same folds. Inside each training fold a stratified 20% validation part is carved out "
        "(`train_val_test_split(..., val_size=0.2, test_size=0, seed=fold)`): the deep models use it for early stopping, "
        "every model uses it for its decision threshold, and all models, the scikit-learn baselines included, are fitted "
        "on the remaining 80%. Every model goes through `medtorch.pipeline.fit_bundle` with the configuration "
        "`resolve_config` derives from the library's defaults (seed = fold index): no per-dataset tuning. "
        "The held-out fold is scored by AUROC; the table gives the mean over folds with a 95% confidence interval from "
        f"the t-distribution (df = {folds - 1}) over the fold AUROCs, clipped to [0, 1]. Time is wall-clock seconds "
        "for fitting and predicting, summed over all folds. Per-fold AUROCs are in the JSON file beside this one.",
        "",
        "Data handling:",
        "",
        *notes,
        "",
    ]
    if run["epochs"] is not None:
        lines += [f"**Smoke run: training was capped at {run['epochs']} epochs (`--epochs`); not benchmark numbers.**", ""]
    lines += ["## Datasets", ""]
    lines += table(
        ["dataset", "rows", "features", "positives", "positive rate", "source"],
        [[d, r["rows"], r["features"], r["positives"], f"{r['positive_rate']:.1%}", f"`{r['source']}`"] for d, r in results.items()],
        align="lrrrrl",
    )
    lines += ["", "## Mean AUROC [95% CI]", ""]
    rows = []
    for name, r in results.items():
        best = max(r["models"][n]["mean_auroc"] for n in models)
        rows.append([name] + [auroc_cell(r["models"][n], best) for n in models])
    lines += table(header, rows)
    lines += ["", "Bold: the best mean of the row.", "", "## Wall-clock seconds (fit + predict, all folds)", ""]
    lines += table(header, [[name] + [f"{r['models'][n]['seconds']:.1f}" for n in models] for name, r in results.items()])
    lines += ["", "## Summary", ""]
    outcome = summary(results, default)
    if outcome is None:
        lines.append(f"No comparison: the run needs both the default model ({default}) and {REFERENCE_MODEL}.")
    else:
        compared, wins = outcome
        lines.append(
            f"The default deep model ({default}) matches or beats {REFERENCE_MODEL}'s mean AUROC on "
            f"**{len(wins)} of {len(compared)}** datasets ({', '.join(wins) or 'none'}). "
            f"Goal: at least {GOAL[0]} of the {GOAL[1]} benchmark datasets."
        )
    return "\n".join(lines) + "\n"


def write_report(run: dict[str, Any], out: Path) -> None:
    """Write the markdown report and the JSON of per-fold numbers beside it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(run))
    out.with_suffix(".json").write_text(json.dumps(run, indent=2) + "\n")


# ----------------------------------------------------------------------------- command line
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS), metavar="NAME",
                        help=f"datasets to run (default: all of {', '.join(DATASETS)})")
    parser.add_argument("--models", nargs="+", default=None, metavar="NAME",
                        help="registered model names; 'default' is the tabular modality's default model "
                        f"(default: default {' '.join(BASELINE_MODELS)})")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: 5)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="cap on training epochs, for smoke tests only (default: the library's)")
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("MEDTORCH_DATA", REPO.parent / "shared" / "data")),
                        help="folder holding the shared datasets (default: $MEDTORCH_DATA or <repo>/../shared/data)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="markdown report; the JSON goes beside it (default: docs/benchmarks/tabular.md)")
    parser.add_argument("--check-data", action="store_true", help="only load and describe the datasets, train nothing")
    args = parser.parse_args(argv)
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    return args


def resolve_models(names: list[str] | None) -> tuple[str, list[str]]:
    """The tabular default model's name, and the models to run (each once, in order)."""
    from medtorch.data.base import get_modality
    from medtorch.errors import ConfigError
    from medtorch.registry import get_model_entry

    default = get_modality("tabular").default_model
    names = [default if n == "default" else n for n in (names or ["default", *BASELINE_MODELS])]
    for name in names:
        try:
            get_model_entry(name)  # an unknown name fails here, before any training
        except ConfigError as error:
            raise SystemExit(f"tabular.py: {error}") from None
    return default, list(dict.fromkeys(names))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    default, models = resolve_models(args.models)
    run: dict[str, Any] = {
        "command": "python " + shlex.join(sys.argv if argv is None else ["benchmarks/tabular.py", *argv]),
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "folds": args.folds,
        "epochs": args.epochs,
        "default_model": default,
        "models": models,
        "datasets": {},
    }
    for name in args.datasets:
        data = prepare(name, args.data_root, args.folds)
        rate = data.positives / len(data.records)
        print(f"{name}: {len(data.records)} rows, {data.n_features} features, {data.positives} positives ({rate:.1%})", flush=True)
        entry = {
            "rows": len(data.records),
            "features": data.n_features,
            "positives": data.positives,
            "positive_rate": rate,
            "source": data.table.source,
            "notes": data.table.notes,
            "folds": [{"train": len(a), "val": len(b), "test": len(c)} for a, b, c in data.folds],
        }
        if args.check_data:
            continue
        entry["models"] = benchmark(data, models, args.epochs)
        run["datasets"][name] = entry
        write_report(run, args.out)  # after every dataset, so a long run leaves partial results
    if not args.check_data:
        print(f"wrote {args.out} and {args.out.with_suffix('.json')}", flush=True)


if __name__ == "__main__":
    main()
