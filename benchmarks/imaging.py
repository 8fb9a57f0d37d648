"""Imaging benchmark: MedMNIST PneumoniaMNIST and BreastMNIST (28 px, official splits) on this CPU.

Trains each dataset through ``medtorch.train`` with the library defaults (every choice made on
the validation split by the pipeline: early stopping on validation AUROC), then scores the
official test split once with MedMNIST's definitions: AUC on probabilities, accuracy at argmax
(probability >= 0.5 for a binary task), with 95% bootstrap CIs. Also measures training
throughput of the medtorch trainer against a plain PyTorch loop on the same model and batches.

Usage::

    python benchmarks/imaging.py                                   # the library defaults
    python benchmarks/imaging.py --variant selected --model resnet18 --epochs 12 --throughput-models
                                                                   # the configuration chosen on validation
    python benchmarks/imaging.py --datasets breastmnist --epochs 2 --out /tmp/smoke.md

Each variant's results are kept in docs/benchmarks/imaging.json; the markdown shows them all,
with the validation-only selection (benchmarks/imaging_selection.py) that chose the variant.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {"pneumoniamnist": "pneumoniamnist/pneumoniamnist.npz", "breastmnist": "breastmnist/breastmnist.npz"}
PUBLISHED = {  # MedMNIST v2 (Yang et al. 2023), Table: AUC / ACC
    "pneumoniamnist": {"ResNet-18 (28)": (0.944, 0.854), "ResNet-50 (28)": (0.948, 0.854), "Google AutoML Vision": (0.991, 0.946)},
    "breastmnist": {"ResNet-18 (28)": (0.901, 0.863), "ResNet-50 (28)": (0.857, 0.812), "Google AutoML Vision": (0.919, 0.861)},
}
GOALS = {"pneumoniamnist": (0.97, 0.90), "breastmnist": (0.93, 0.88)}


def run_dataset(name: str, data_root: Path, out_root: Path, overrides: dict) -> dict:
    """Train with the defaults and ``overrides``, then score the official test split once."""
    import medtorch
    from medtorch.data.base import get_modality
    from medtorch.config import DataConfig, merge
    from medtorch.evaluation.metrics import evaluate

    path = data_root / DATASETS[name]
    overrides = merge(overrides, {"evaluate": {"bootstrap": 1000}})
    start = time.perf_counter()
    run = medtorch.train(path, out=out_root / name, overrides=overrides, overwrite=True, progress=False)
    seconds = time.perf_counter() - start
    modality = get_modality("image")
    records = modality.read(path, DataConfig())
    test = np.flatnonzero(records.split == "test")
    scores = run.bundle.predict_scores(records.subset(test).inputs)
    y = run.bundle.task.encode(records.target[test])
    medmnist = evaluate(run.bundle.task, y, scores, threshold=0.5, n_bootstrap=1000, seed=0)
    return {
        "model": run.metrics["model"] + (f" x{run.config.train.ensemble}" if run.config.train.ensemble > 1 else ""),
        "auc": medmnist["auroc"],
        "acc": medmnist["accuracy"],
        "training": run.metrics["training"],
        "seconds_total": round(seconds, 1),
        "val_threshold_metrics": {k: run.metrics["metrics"][k] for k in ("sensitivity", "specificity")},
        "threshold": run.metrics["threshold"],
        "baseline_auc": run.metrics["baselines"].get("logistic_regression", {}).get("metrics", {}).get("auroc"),
    }


def throughput(data_root: Path, model_spec: str, epochs: int = 1) -> dict:
    """Images per second: medtorch Trainer vs a plain loop, same model, batches and augmentation.
    ``model_spec`` is a model name, with ``:bf16`` for bf16 autocast in both loops."""
    import contextlib

    import torch
    from medtorch import create_model
    from medtorch.config import DataConfig, TrainConfig
    from medtorch.data.base import get_modality
    from medtorch.tasks import infer_task
    from medtorch.training import Trainer

    model_name, _, precision = model_spec.partition(":")
    bf16 = precision == "bf16"
    modality = get_modality("image")
    path = data_root / DATASETS["pneumoniamnist"]
    records = modality.read(path, DataConfig())
    train = np.flatnonzero(records.split == "train")
    records = records.subset(train)
    task = infer_task(records.target)
    preprocessor = modality.preprocessor(DataConfig()).fit(records)
    dataset = preprocessor.dataset(records.inputs, task.encode(records.target), train=True)
    kwargs = {**preprocessor.model_kwargs(), "out_features": 1}
    result = {}
    for variant in ("plain", "trainer"):
        torch.manual_seed(0)
        model = create_model(model_name, **kwargs)
        start = time.perf_counter()
        if variant == "trainer":
            Trainer(model, task, TrainConfig(epochs=epochs, patience=0, mixed_precision=bf16), batch_size=128, progress=False).fit(dataset)
        else:
            optimizer, loss_fn = torch.optim.AdamW(model.parameters(), lr=1e-3), task.loss()
            model.train()
            for epoch in range(epochs):
                for batch in torch.randperm(len(dataset)).split(128):
                    x, y = dataset.batch(batch)  # the same batched augmentation the trainer uses
                    optimizer.zero_grad()
                    with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
                        output = model(x).float()
                    loss_fn(output, y).backward()
                    optimizer.step()
        result[variant] = round(epochs * len(dataset) / (time.perf_counter() - start), 1)
    result["overhead"] = round(result["plain"] / result["trainer"] - 1, 4)
    return result


def fmt(entry: dict) -> str:
    low, high = entry["ci"]
    return f"{entry['value']:.3f} [{low:.3f}, {high:.3f}]"


def measurement_stamp() -> str:
    """When and at which commit the numbers were measured (kept in the JSON, so --render does not restamp them)."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout.strip():
        commit += " with uncommitted changes"
    return f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}; commit {commit}"


def write_markdown(out: Path, command: str, results: dict, speeds: dict, stamp: str) -> None:
    import torch

    lines = [
        "# Imaging benchmark: PneumoniaMNIST and BreastMNIST (28 px)",
        "",
        "Commands: `python benchmarks/imaging.py` (the library defaults, and the throughput table); "
        "`python benchmarks/imaging.py --variant selected --datasets DATASET --candidate NAME --throughput-models` "
        "(the configuration `python benchmarks/imaging_selection.py` chose on validation for that dataset; names in the selection table); "
        "BreastMNIST's *selected by cross-validation* row: `python benchmarks/imaging_selection.py --datasets breastmnist --cv 5 "
        "--candidates resnet18_bf16_12ep_ens10_platt`, then `python benchmarks/imaging.py --variant \"selected by cross-validation\" "
        "--datasets breastmnist --candidate resnet18_bf16_12ep_ens8_platt --throughput-models`.",
        "",
        f"- Latest measurement: {stamp} (of the newest row; each row measured since 2026-12-02 has its own date and commit in imaging.json)",
        f"- Machine: {os.cpu_count()}-core CPU ({platform.machine()}), no GPU; torch {torch.__version__} ({torch.get_num_threads()} threads)",
        "",
        "## Protocol",
        "",
        "Official MedMNIST splits from `../shared/data` (see its MANIFEST: the PneumoniaMNIST file is a faithful re-assembly, not the Zenodo file). "
        "Each dataset is trained by `medtorch.train` on the official train split, early-stopped on the official validation split. "
        "*defaults*: the library defaults, nothing tuned: the default image model, mild affine and intensity augmentation, AdamW "
        "with a cosine schedule, at most 30 epochs, early stopping on validation AUROC. *selected*: the same pipeline with the "
        "configuration chosen on validation only (selection table below); *selected by cross-validation*: chosen by cross-validation "
        "over the train and validation splits (second selection table), then trained and scored like the others. *earlier selection*: a previous session's choice "
        "(fp32 ResNet-18, 12 epochs, per-image augmentation whose shifts were a no-op), kept for comparison. "
        "Temperature scaling (fitted on validation) leaves AUC and argmax accuracy unchanged for a binary task. "
        "The test split is scored once, with MedMNIST's definitions: AUC on the probabilities, accuracy at argmax (p >= 0.5). "
        "95% CIs: 1000 bootstrap resamples of the test set. Training time is wall-clock for the whole run (training, threshold, evaluation, baselines, report).",
        "",
        "## Results (test split)",
        "",
        "| dataset | model | AUC [95% CI] | ACC [95% CI] | goal AUC / ACC | epochs (best) | minutes |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name in DATASETS:
        goal = GOALS[name]
        for variant, by_dataset in results.items():
            if name not in by_dataset:
                continue
            r = by_dataset[name]
            label = f"{variant}: `{r['candidate']}`" if r.get("candidate") else variant
            lines.append(
                f"| {name} | medtorch `{r['model']}` ({label}) | {fmt(r['auc'])} | {fmt(r['acc'])} | {goal[0]} / {goal[1]} | "
                f"{r['training'].get('epochs_run')} ({r['training'].get('best_epoch')}) | {r['seconds_total'] / 60:.1f} |"
            )
        for paper, (auc, acc) in PUBLISHED[name].items():
            lines.append(f"| {name} | {paper} (MedMNIST v2) | {auc:.3f} | {acc:.3f} | | | |")
    lines += _selection_lines()
    lines += ["", "## Training throughput (PneumoniaMNIST train split, batch 128, with augmentation)", ""]
    lines += ["| model | plain PyTorch loop (images/s) | medtorch Trainer (images/s) | trainer overhead |", "|---|---:|---:|---:|"]
    for model, s in speeds.items():
        lines.append(f"| {model} | {s['plain']} | {s['trainer']} | {s['overhead'] * 100:+.1f}% |")
    analysis = Path(__file__).with_name("imaging_analysis.md")
    if analysis.exists():  # the hand-written reading of the numbers
        lines += ["", analysis.read_text().strip()]
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"results": results, "throughput": speeds, "stamp": stamp}, indent=2) + "\n")


def _selection_lines() -> list[str]:
    path = ROOT / "docs" / "benchmarks" / "imaging_selection.json"
    if not path.exists():
        return []
    lines = [
        "",
        "## Choosing on validation only (`python benchmarks/imaging_selection.py`)",
        "",
        "Each candidate trained on 85% of the official train split (15% for early stopping) and was scored on the "
        "official validation split; the test split was not loaded. Rule: the lowest validation log loss on the model's "
        "own probabilities (AUROC and accuracy saturate on PneumoniaMNIST's validation split) among candidates whose "
        "training on the whole train split fits 15 minutes. One seed's score is a noisy draw (BreastMNIST's validation "
        "split has 78 images), so an ensemble's members are also scored alone: their mean is what one model of that "
        "recipe gets on average, and the first k members of an ensemble are scored as the k-member ensemble.",
        "",
        "| dataset | candidate | val AUC | val ACC | val log loss | members alone: mean log loss (sd) | epochs | minutes |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for dataset, candidates in json.loads(path.read_text()).items():
        for name, r in candidates.items():
            alone = r.get("member_mean")
            alone = f"{alone['log_loss']:.4f} ({alone['log_loss_sd']:.4f})" if alone else ""
            lines.append(f"| {dataset} | {name} | {r['auc']:.4f} | {r['acc']:.4f} | {r['log_loss']:.4f} | {alone} | {r['epochs']} | {r['minutes']} |")
    return lines + _cross_validation_lines()


def _cross_validation_lines() -> list[str]:
    path = ROOT / "docs" / "benchmarks" / "imaging_selection_cv.json"
    if not path.exists():
        return []
    lines = [
        "",
        "### Choosing by cross-validation over train+validation (`imaging_selection.py --cv 5`)",
        "",
        "The official train and validation splits pooled and cut into stratified folds; each fold scored once by a run "
        "trained on the others (85% to fit, 15% for early stopping and the recipe's recalibration); the test split "
        "was not loaded. Scores are of the out-of-fold probabilities of every pooled image. An ensemble's first k members "
        "are scored as a k-member ensemble (mean logits, recalibration refitted), so one run of ten members scores "
        "every ensemble size from one to ten; its minutes (all folds, all members) are the run's, not each size's. Same rule: "
        "the lowest log loss among the sizes whose training on the whole train split fits 15 minutes on the machine that runs it.",
        "",
        "| dataset | candidate | folds | members | CV AUC | CV ACC | CV log loss | images scored | run minutes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for dataset, candidates in json.loads(path.read_text()).items():
        for name, r in candidates.items():
            for k, m in r["by_members"].items():
                lines.append(
                    f"| {dataset} | {name} | {r['folds']} | {k} | {m['auc']:.4f} | {m['acc']:.4f} | {m['log_loss']:.4f} | {m['n']} | {r['minutes']} |"
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("MEDTORCH_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS), help="none: only the throughput table")
    parser.add_argument("--candidate", default=None, help="a configuration of benchmarks/imaging_selection.py (the one chosen on validation)")
    parser.add_argument("--model", default=None, help="model name (default: the image modality's default)")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: the library default); for smoke tests")
    parser.add_argument("--throughput-models", nargs="*", default=["small_cnn", "resnet18", "resnet18:bf16"])
    parser.add_argument("--runs", type=Path, default=Path("/tmp/medtorch-imaging-benchmark"))
    parser.add_argument("--variant", default="defaults", help="label of this configuration in the results table")
    parser.add_argument("--render", action="store_true", help="only rewrite the markdown from the saved JSON (after editing imaging_analysis.md)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "imaging.md")
    args = parser.parse_args()
    command = ""
    saved = json.loads(args.out.with_suffix(".json").read_text()) if args.out.with_suffix(".json").exists() else {}
    results, speeds = saved.get("results", {}), saved.get("throughput", {})
    if args.render:
        write_markdown(args.out, command, results, speeds, saved.get("stamp", "unknown"))
        return
    stamp = measurement_stamp()
    from imaging_selection import CANDIDATES

    overrides = CANDIDATES[args.candidate] if args.candidate else {}
    overrides = {**overrides, "model": {**overrides.get("model", {}), "name": args.model or overrides.get("model", {}).get("name")}}
    overrides["train"] = {**overrides.get("train", {}), "epochs": args.epochs or overrides.get("train", {}).get("epochs")}
    for name in args.datasets:
        results.setdefault(args.variant, {})[name] = {"candidate": args.candidate, "measured": stamp, **run_dataset(name, args.data_root, args.runs / args.variant, overrides)}
        print(name, json.dumps(results[args.variant][name]), flush=True)
        write_markdown(args.out, command, results, speeds, stamp)
    from medtorch.training.trainer import cpu_has_native_bf16

    for model in args.throughput_models:
        if model.endswith(":bf16") and not cpu_has_native_bf16():  # the Trainer would run fp32 there
            speeds.pop(model, None)  # a row from another CPU would not compare with this one's
            print(f"skipped {model}: this CPU has no native bf16", flush=True)
        else:
            speeds[model] = throughput(args.data_root, model)
    print(json.dumps(speeds), flush=True)
    write_markdown(args.out, command, results, speeds, stamp)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
