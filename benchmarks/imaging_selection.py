"""Choose the imaging defaults on validation data only (the official test split is never read).

Each candidate trains on 85% of the official train split (15% held out for early stopping) and
is scored on the official *validation* split, which plays the pipeline's test role here. The
official test split is not loaded. Log loss is on the model's own probabilities (no
recalibration, unless a candidate's recipe names one: it is then fitted on the 15% held out of
train, never on the split that scores it), so candidates compare on equal terms. Rule, fixed before the runs: the lowest
validation log loss (AUROC and accuracy saturate on PneumoniaMNIST's validation split) among
the candidates whose training fits the 15-minute CPU budget. Results go to ``docs/benchmarks/imaging_selection.json``
(``imaging_selection_cv.json`` with ``--cv``); ``benchmarks/imaging.py --render`` puts them in ``imaging.md``.

``--cv K`` scores candidates by cross-validation instead (still without the test split): the
official train and validation splits are pooled and cut into K stratified folds; each fold is
scored once by a run trained on the rest (85% to fit, 15% for early stopping and any
recalibration), and the out-of-fold probabilities of all pooled images give the score. On
BreastMNIST that scores 624 images instead of 78, whose noise was larger than the differences
between candidates. An ensemble's first k members are scored as the k-member ensemble (mean
logits, the recipe's recalibration refitted on the same 15%), so one run of ten members also
scores five.

Usage::

    python benchmarks/imaging_selection.py
    python benchmarks/imaging_selection.py --datasets breastmnist --candidates small_cnn
    python benchmarks/imaging_selection.py --datasets breastmnist --cv 5 --candidates resnet18_bf16_12ep_ens10_platt
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {"pneumoniamnist": "pneumoniamnist/pneumoniamnist.npz", "breastmnist": "breastmnist/breastmnist.npz"}
CANDIDATES = {
    "small_cnn": {},
    "small_cnn_w64": {"model": {"name": "small_cnn", "width": 64}},
    "small_cnn_balanced": {"train": {"class_weights": "balanced"}},
    "small_cnn_tta8": {"evaluate": {"test_time_augmentation": 8}},
    "resnet18_12ep": {"model": {"name": "resnet18"}, "train": {"epochs": 12}},
    "resnet18_bf16_12ep": {"model": {"name": "resnet18"}, "train": {"epochs": 12, "mixed_precision": True}},
    "resnet18_bf16_30ep": {"model": {"name": "resnet18"}, "train": {"mixed_precision": True}},
    "resnet18_bf16_12ep_ens2": {"model": {"name": "resnet18"}, "train": {"epochs": 12, "mixed_precision": True, "ensemble": 2}},
    "resnet18_bf16_12ep_ens5": {"model": {"name": "resnet18"}, "train": {"epochs": 12, "mixed_precision": True, "ensemble": 5}},
    "resnet18_bf16_12ep_ens3": {"model": {"name": "resnet18"}, "train": {"epochs": 12, "mixed_precision": True, "ensemble": 3}},
    "resnet18_bf16_30ep_ens3": {"model": {"name": "resnet18"}, "train": {"mixed_precision": True, "ensemble": 3}},
    "resnet18_bf16_30ep_ens5": {"model": {"name": "resnet18"}, "train": {"mixed_precision": True, "ensemble": 5}},
    "resnet18_bf16_30ep_ens5_tta8": {
        "model": {"name": "resnet18"}, "train": {"mixed_precision": True, "ensemble": 5}, "evaluate": {"test_time_augmentation": 8},
    },
    "small_cnn_w64_ens10": {"model": {"name": "small_cnn", "width": 64}, "train": {"ensemble": 10}},
    "resnet18_bf16_12ep_ens5_platt": {
        "model": {"name": "resnet18"}, "train": {"epochs": 12, "mixed_precision": True, "ensemble": 5}, "evaluate": {"calibration": "platt"},
    },
    "resnet18_bf16_12ep_ens8_platt": {  # the first 8 of ens10_platt: the lowest cross-validated log loss (imaging.md)
        "model": {"name": "resnet18"}, "train": {"epochs": 12, "mixed_precision": True, "ensemble": 8}, "evaluate": {"calibration": "platt"},
    },
    "resnet18_bf16_12ep_ens10_platt": {
        "model": {"name": "resnet18"}, "train": {"epochs": 12, "mixed_precision": True, "ensemble": 10}, "evaluate": {"calibration": "platt"},
    },
    "resnet18_bf16_12ep_ens5_tta8_platt": {
        "model": {"name": "resnet18"}, "train": {"epochs": 12, "mixed_precision": True, "ensemble": 5},
        "evaluate": {"calibration": "platt", "test_time_augmentation": 8},
    },
    "convnext_bf16_30ep": {"model": {"name": "convnext"}, "train": {"mixed_precision": True}},
    "convnext_bf16_30ep_ens3": {"model": {"name": "convnext"}, "train": {"mixed_precision": True, "ensemble": 3}},
    "vit_bf16_30ep": {"model": {"name": "vit"}, "train": {"mixed_precision": True}},
    "vit_bf16_30ep_ens3": {"model": {"name": "vit"}, "train": {"mixed_precision": True, "ensemble": 3}},
}


def validation_only_npz(source: Path, out: Path, seed: int = 0) -> Path:
    """A copy whose 'test' split is the official validation split; the official test split is dropped."""
    with np.load(source) as archive:
        images, labels = archive["train_images"], archive["train_labels"]
        return _fit_and_scored_npz(out, images, labels, np.arange(len(images)), archive["val_images"], archive["val_labels"], seed)


def cross_validation_npzs(source: Path, out_dir: Path, folds: int, seed: int = 0) -> list[Path]:
    """K copies of train+val, each scoring one stratified fold (as 'test') after training on the rest;
    the official test split is dropped."""
    from sklearn.model_selection import StratifiedKFold

    with np.load(source) as archive:
        images = np.concatenate([archive["train_images"], archive["val_images"]])
        labels = np.concatenate([archive["train_labels"], archive["val_labels"]])
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return [
        _fit_and_scored_npz(out_dir / f"fold{fold}.npz", images, labels, rest, images[scored], labels[scored], seed + fold)
        for fold, (rest, scored) in enumerate(splitter.split(images, labels.reshape(len(labels), -1)[:, 0]))
    ]


def _fit_and_scored_npz(out: Path, images, labels, pool: np.ndarray, scored_images, scored_labels, seed: int) -> Path:
    """An npz whose train/val splits are 85/15% of ``pool`` (shuffled with ``seed``) and whose 'test' split is the scored set."""
    order = np.random.default_rng(seed).permutation(pool)
    cut = int(0.85 * len(order))
    np.savez(
        out,
        train_images=images[order[:cut]], train_labels=labels[order[:cut]],
        val_images=images[order[cut:]], val_labels=labels[order[cut:]],
        test_images=scored_images, test_labels=scored_labels,
    )
    return out


def run_cross_validation(npzs: list[Path], name: str, overrides: dict, runs: Path) -> dict:
    """Out-of-fold scores of a candidate and of its ensemble's first k members, for every k."""
    import medtorch
    from medtorch.config import DataConfig
    from medtorch.data.base import get_modality
    from medtorch.evaluation.calibration import fit_calibrator
    from medtorch.inference import model_outputs
    from medtorch.models.ensemble import Ensemble
    from scipy.special import expit

    evaluate_overrides = overrides.get("evaluate", {})
    if evaluate_overrides.get("test_time_augmentation"):
        raise SystemExit(f"{name}: --cv scores members without test-time augmentation; leave TTA candidates out")
    calibration = evaluate_overrides.get("calibration", "none")
    overrides = {**overrides, "evaluate": {"bootstrap": 0, "baselines": False, "calibration": "none"}}
    labels, by_k, seconds = [], {}, 0.0
    for fold, npz in enumerate(npzs):
        shutil.rmtree(runs / name / f"fold{fold}", ignore_errors=True)
        start = time.perf_counter()
        run = medtorch.train(npz, out=runs / name / f"fold{fold}", overrides=overrides, overwrite=True, progress=False)
        seconds += time.perf_counter() - start
        if run.bundle.task.type != "binary":
            raise SystemExit(f"{name}: --cv scores binary tasks only (log loss and Platt on one probability)")
        records = get_modality("image").read(npz, DataConfig())
        members = run.bundle.model.members if isinstance(run.bundle.model, Ensemble) else [run.bundle.model]
        member_logits, targets = {}, {}
        for split in ("val", "test"):
            held = records.subset(np.flatnonzero(records.split == split))
            dataset = run.bundle.preprocessor.dataset(held.inputs, np.zeros(len(held.inputs)))
            member_logits[split] = np.stack([model_outputs(member, dataset).numpy().ravel() for member in members])
            targets[split] = np.asarray(run.bundle.task.encode(held.target), float).ravel()
        labels.append(targets["test"])
        for k in range(1, len(members) + 1):
            p_val = expit(member_logits["val"][:k].mean(axis=0))  # an ensemble averages its members' logits
            p_test = expit(member_logits["test"][:k].mean(axis=0))
            if calibration != "none":
                p_test = fit_calibrator("binary", targets["val"], p_val, calibration).transform(p_test)
            by_k.setdefault(k, []).append(p_test)
        print(name, f"fold {fold} done", f"{seconds / 60:.1f} min so far", flush=True)
    return {"folds": len(npzs), "minutes": round(seconds / 60, 1), "by_members": {
        str(k): _pooled(np.concatenate(labels), np.concatenate(scores)) for k, scores in by_k.items()
    }}


def _pooled(y: np.ndarray, p: np.ndarray) -> dict:
    from sklearn.metrics import roc_auc_score

    return {
        "auc": round(float(roc_auc_score(y, p)), 4),
        "acc": round(float(((p >= 0.5) == y).mean()), 4),
        "log_loss": round(log_loss(y, p), 4),
        "n": int(len(y)),
    }


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def run_candidate(npz: Path, name: str, overrides: dict, runs: Path) -> dict:
    import medtorch
    from medtorch.config import DataConfig
    from medtorch.data.base import get_modality
    from medtorch.evaluation.metrics import evaluate

    overrides = {**overrides, "evaluate": {"bootstrap": 0, "baselines": False, "calibration": "none", **overrides.get("evaluate", {})}}
    shutil.rmtree(runs / name, ignore_errors=True)  # never resume a killed candidate's checkpoint
    start = time.perf_counter()
    run = medtorch.train(npz, out=runs / name, overrides=overrides, overwrite=True, progress=False)
    seconds = time.perf_counter() - start
    records = get_modality("image").read(npz, DataConfig())
    held = np.flatnonzero(records.split == "test")  # the official validation split
    scores = run.bundle.predict_scores(records.subset(held).inputs)
    y = run.bundle.task.encode(records.target[held])
    result = evaluate(run.bundle.task, y, scores, threshold=0.5, n_bootstrap=0)
    return {
        **_member_mean(run.bundle, records.subset(held).inputs, y),
        "auc": round(result["auroc"]["value"], 4),
        "acc": round(result["accuracy"]["value"], 4),
        "log_loss": round(log_loss(np.asarray(y, float).ravel(), np.asarray(scores, float).ravel()), 4),
        "epochs": run.metrics["training"].get("epochs_run"),
        "minutes": round(seconds / 60, 1),
    }


def _member_mean(bundle, inputs, y) -> dict:
    """An ensemble's members scored alone, averaged: what one model of this recipe gets on average
    (one seed's validation score on a small split is a noisy draw; see imaging.md)."""
    from medtorch.inference import predict_scores
    from medtorch.models.ensemble import Ensemble
    from sklearn.metrics import roc_auc_score

    if not isinstance(bundle.model, Ensemble):
        return {}
    dataset = bundle.preprocessor.dataset(inputs, np.zeros(len(y)))
    y = np.asarray(y, float).ravel()
    members = [predict_scores(member, bundle.task, dataset).ravel() for member in bundle.model.members]
    return {"member_mean": {
        "auc": round(float(np.mean([roc_auc_score(y, p) for p in members])), 4),
        "acc": round(float(np.mean([((p >= 0.5) == y).mean() for p in members])), 4),
        "log_loss": round(float(np.mean([log_loss(y, p) for p in members])), 4),
        "log_loss_sd": round(float(np.std([log_loss(y, p) for p in members], ddof=1)), 4),
    }}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("MEDTORCH_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--cv", type=int, default=0, help="score by K-fold cross-validation over train+val (see above)")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/medtorch-imaging-selection"))
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default: imaging_selection.json, or imaging_selection_cv.json with --cv)")
    args = parser.parse_args()
    if args.cv == 1 or args.cv < 0:
        parser.error("--cv needs at least 2 folds")
    args.out = args.out or ROOT / "docs" / "benchmarks" / ("imaging_selection_cv.json" if args.cv else "imaging_selection.json")
    args.runs.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.cv:
        for dataset in args.datasets:
            fold_dir = args.runs / f"{dataset}_cv{args.cv}"
            fold_dir.mkdir(exist_ok=True)
            npzs = cross_validation_npzs(args.data_root / DATASETS[dataset], fold_dir, args.cv)
            for candidate in args.candidates:
                results.setdefault(dataset, {})[candidate] = run_cross_validation(npzs, candidate, CANDIDATES[candidate], fold_dir)
                print(dataset, candidate, json.dumps(results[dataset][candidate]), flush=True)
                args.out.write_text(json.dumps(results, indent=2) + "\n")
        return
    for dataset in args.datasets:
        npz = validation_only_npz(args.data_root / DATASETS[dataset], args.runs / f"{dataset}_no_test.npz")
        for candidate in args.candidates:
            results.setdefault(dataset, {})[candidate] = run_candidate(npz, candidate, CANDIDATES[candidate], args.runs / dataset)
            print(dataset, candidate, json.dumps(results[dataset][candidate]), flush=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
