"""Biosignal benchmarks on this CPU: MIT-BIH inter-patient beats, CinC 2017 AF, Bonn EEG.

Every number comes from records the model never saw: folds are cut by record (the patient),
each fold's model is trained by ``medtorch.train`` with the library defaults (validation by
held-out records inside the training fold), and the held-out records are predicted once.

Usage::

    python benchmarks/biosignals.py mitbih            # 5-fold leave-records-out CV on DS1, then the DS1 bundle
    python benchmarks/biosignals.py cinc2017          # 5-fold CV by record, challenge score (mean F1 of N, A, O)
    python benchmarks/biosignals.py bonn              # 5-fold CV: seizure (E) vs rest, and the 5 sets
    python benchmarks/biosignals.py realtime          # stream a 30-minute record through the DS1 bundle
    python benchmarks/biosignals.py quality           # NeuroKit2's ECG quality verdicts per class (CinC 2017, MIT-BIH)
    python benchmarks/biosignals.py mitbih --folds 2 --epochs 1 --out /tmp/smoke.md   # smoke run, not benchmark numbers

Results are kept per benchmark in docs/benchmarks/biosignals.json; docs/benchmarks/biosignals.md
is rewritten from it with the commands that made each number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
AAMI = ("N", "S", "V", "F", "Q")
MITBIH_PUBLISHED = {  # DS2 results (Se / +P in %), the table
    "de Chazal et al. 2004": {"S": (76, 38), "V": (77, 82)},
    "Llamedo & Martinez 2011": {"S": (77, 39), "V": (81, 87)},
    "Zhang et al. 2014": {"S": (79, 36), "V": (86, 93)},
}
MITBIH_GOALS = {"V": (90, 90), "S": (80, 50)}
BUNDLE_DIR = ROOT / "benchmarks" / "bundles" / "mitbih_ds1"
VALIDATION_METRICS = ("f1_macro", "accuracy", "log_loss")  # of each fold's model on its validation records (never the fold's test)
SELECTION_METRIC = "f1_macro"  # the rule, fixed before any candidate ran: the best mean validation macro F1 wins
CANDIDATES = {  # settings a benchmark may choose among on validation; "defaults" is the library as it ships
    "defaults": {},
    # the library's first signal defaults, as the MIT-BIH defaults row of 2026-11-30 ran them
    "first_defaults": {"model": {"name": "cnn_rr"}, "train": {"class_weights": "balanced", "patience": 6}, "data": {"beat_template": False}},
    # the window defaults of 2026-12-03 before windows grew to 30 s: boosting or the CNN, chosen on validation, on 10-s windows
    "model_choice_10s_windows": {"data": {"window_seconds": 10}},
    # and of commit a80dac7, whose windows were 30 s for any records (a 23.6-s Bonn segment padded)
    "model_choice_30s_windows": {"data": {"window_seconds": 30}},
    # until 2026-12-01 beats defaulted to cnn_rr without a beat template: the beat candidates below that name no model ran so
    "unweighted": {"train": {"class_weights": "none"}},
    "sqrt_weights": {"train": {"class_weights": "sqrt"}},
    "patience16": {"train": {"patience": 16}},
    "bf16_ensemble3": {"train": {"mixed_precision": True, "ensemble": 3}},
    "auto_weights": {"train": {"class_weights": "auto"}},
    "rr_linear_balanced": {"model": {"name": "rr_linear"}, "train": {"class_weights": "balanced"}},
    "rr_linear_sqrt": {"model": {"name": "rr_linear"}, "train": {"class_weights": "sqrt"}},
    "rr_linear_32_points": {"model": {"name": "rr_linear", "shape_points": 32}, "train": {"class_weights": "sqrt"}},
    "bf16_60_epochs": {"train": {"mixed_precision": True, "epochs": 60}},
    "bf16_5s_windows": {"train": {"mixed_precision": True}, "data": {"window_seconds": 5}},
    "rr_linear_template": {"model": {"name": "rr_linear"}, "train": {"class_weights": "sqrt"}, "data": {"beat_template": True}},
    "beat_template": {"model": {"name": "cnn_rr"}, "train": {"class_weights": "sqrt"}, "data": {"beat_template": True}},
    "auto_weights_30s_windows": {"train": {"class_weights": "auto"}, "data": {"window_seconds": 30}},
    # from here on, windows also carry waveform and per-band features (library change of 2026-12-01)
    "waveform_features_ensemble3": {"train": {"mixed_precision": True, "ensemble": 3}},
    "waveform_features_ensemble3_2s_steps": {"train": {"mixed_precision": True, "ensemble": 3}, "data": {"window_step_seconds": 2}},
    "waveform_features_ensemble5": {"train": {"mixed_precision": True, "ensemble": 5}},
    "waveform_features_auto_weights_30s_windows": {"train": {"class_weights": "auto"}, "data": {"window_seconds": 30}},
    # from here on, windows also carry fractal-dimension and spike features (43 in all)
    "spike_features_ensemble3": {"train": {"mixed_precision": True, "ensemble": 3}},
    "spike_features_ensemble3_20s_windows": {"train": {"mixed_precision": True, "ensemble": 3}, "data": {"window_seconds": 20}},
    "spike_features_auto_weights_30s_windows": {"train": {"class_weights": "auto"}, "data": {"window_seconds": 30}},
    # a Bonn segment is 23.6 s: one 23.5-s window sees all of it, as the published pipelines' whole-segment features do
    # (fp32: it ran on a CPU without native bf16, where bf16 autocast is about 7x slower than fp32)
    "spike_features_ensemble3_whole_segment": {"train": {"ensemble": 3}, "data": {"window_seconds": 23.5}},
    # from here on, beats carry 9 RR features and, with a template, 6 template features (library change of 2026-12-01)
    "template_features": {"model": {"name": "cnn_rr"}, "train": {"class_weights": "sqrt"}, "data": {"beat_template": True}},
    "template_features_linear_balanced": {"model": {"name": "rr_linear", "shape_points": 0}, "train": {"class_weights": "balanced"}, "data": {"beat_template": True}},
    "template_features_linear_sqrt": {"model": {"name": "rr_linear", "shape_points": 0}, "train": {"class_weights": "sqrt"}, "data": {"beat_template": True}},
    "template_features_mlp_sqrt": {"model": {"name": "rr_mlp"}, "train": {"class_weights": "sqrt"}, "data": {"beat_template": True}},
    "template_features_mlp_balanced": {"model": {"name": "rr_mlp"}, "train": {"class_weights": "balanced"}, "data": {"beat_template": True}},
    # from here on, beats default to the template and rr_linear on the 15 features (what validation chose above)
    "linear_auroc_stopping": {"train": {"monitor": "primary"}},
    # from here on, the beat template leaves premature beats out (library change of 2026-12-02): the defaults of that commit
    "nonpremature_template": {},
    # an ensemble of three on CinC's 30-s windows, square-root class weights fixed (auto weights train three times already)
    "spike_features_bf16_ensemble3_sqrt_30s_windows": {
        "train": {"mixed_precision": True, "ensemble": 3, "class_weights": "sqrt"}, "data": {"window_seconds": 30},
    },
    # from here on, windows also carry the RR sequence's and the beats' shape (63 features; library change of 2026-12-02),
    # and scikit-learn models on signals read those features alone
    "rhythm_shape_features_auto_weights_30s_windows": {"train": {"class_weights": "auto"}, "data": {"window_seconds": 30}},
    "rhythm_shape_features_boosting_balanced_30s_windows": {
        "model": {"name": "hist_gradient_boosting"}, "train": {"class_weights": "balanced"}, "data": {"window_seconds": 30},
    },
    # extremely randomised trees on the 63 features of the whole Bonn segment (inner CV of the training folds: 0.916 against
    # the CNN's validation 0.912)
    "rhythm_shape_features_extra_trees_whole_segment": {"model": {"name": "extra_trees"}, "data": {"window_seconds": 23.5}},
}
DEFAULT_WINDOW_MODELS_NOTE = (
    "`hist_gradient_boosting` and `cnn_rr` (and `extra_trees` too after commit 2a4d6b9, and `minirocket` after 2026-12-03's afternoon; "
    "the rows `boosting_or_cnn` are the defaults without the last two, `boosting_trees_or_cnn` without `minirocket`)"
)
RETIRED_CANDIDATES = {  # rows kept in the JSON whose code is gone (reverted after validation passed them over, or defaults since changed)
    "boosting_rate_0.1": "the defaults of commits 5b0e0fd (Bonn) and c697f6f (CinC), whose window candidate `hist_gradient_boosting` "
    "had scikit-learn's learning rate 0.1 and 200 rounds, where the defaults since 2026-12-03 (late) have 0.05 and 400",
    "four_on_validation": "the defaults of commit d88c968, which compared all four window candidates (`hist_gradient_boosting`, "
    "`extra_trees`, `minirocket`, `cnn_rr`) on the validation records alone, where the defaults since 5b0e0fd compare the three "
    "scikit-learn models by 3-fold CV inside the training records first",
    "minirocket_shared_biases": "the defaults of commit 3d0cbea, whose MiniRocket drew one training window per dilation and one set "
    "of bias quantiles for all 84 kernels there, and padded whole dilations, where the published transform draws a window and "
    "quantiles per kernel and alternates padding kernel by kernel",
    "boosting_trees_or_cnn": "the defaults of commit d546f75, which chose on validation among `hist_gradient_boosting`, `extra_trees` "
    "and `cnn_rr`, without `minirocket`",
    "boosting_or_cnn": "the defaults of commit 2a4d6b9 (a80dac7 for CinC, whose 30-s windows equal the median-length default there), "
    "which chose on validation between `hist_gradient_boosting` and `cnn_rr` alone, without `extra_trees`",
    "background_rhythm_features": "the defaults of commit 20dfa07, whose beats had four more RR features: the variation, successive "
    "change and jumps of the 10 RR intervals before the beat, and pre-RR over their median",
    "atrial_features_boosting_balanced_30s_windows": "`rhythm_shape_features_boosting_balanced_30s_windows` at commit c9742ed, whose windows "
    "had 7 more features of how their beats depart from the median beat (odd-beat share, 10th-percentile correlation, PR interval, "
    "T-wave consistency, ST level, atrial-band share and size of the residual after cancelling the median beat): 70 in all",
    "cosen_boosting_balanced_30s_windows": "`rhythm_shape_features_boosting_balanced_30s_windows` at commit e34d706, whose "
    "`rr_entropy_log_rr` (SampEn + ln median RR) was Lake & Moorman's COSEn (SampEn + ln 2r - ln mean RR)",
    "unstratified_validation_split": "the beat defaults of commit eded187, whose validation records were drawn without stratifying "
    "by class whenever one class had fewer beats than folds (Q: 4 beats in fold 3's training records), a fallback from a80dac7 until it was narrowed on 2026-12-03 "
    "(night) to the case scikit-learn refuses (every class that rare)",
    "linear_template_defaults": "the beat defaults of commit f8a9219: `rr_linear` on the 15 RR and template features, square-root "
    "class weights, a template averaged over every beat (premature ones too)",
}


WINDOW_FEATURES_NOTE = (
    "the window features of the run's commit (17; 37 from the candidates named `waveform_features_...`; 43 from `spike_features_...`; "
    "63 from `rhythm_shape_features_...` and the retired `cosen_...`; 70 from the retired `atrial_features_...`)"
)


def data_root() -> Path:
    return Path(os.environ.get("MEDTORCH_DATA", ROOT.parent / "shared" / "data"))


def with_candidate(overrides: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from medtorch.config import merge

    return merge(overrides, CANDIDATES[args.candidate])


def work_dir(args: argparse.Namespace, benchmark: str) -> Path:
    return args.work / benchmark if args.candidate == "defaults" else args.work / f"{benchmark}-{args.candidate}"


def chosen(results: dict[str, Any], benchmark: str) -> tuple[str, dict[str, Any]]:
    """The candidate with the best mean validation score (its key and entry); the test folds play no part. A tie goes
    to the defaults row, and between two other rows to the key that sorts last."""
    keys = [k for k in results if k == benchmark or k.startswith(f"{benchmark}@")]
    folds = {k: results[k].get("folds") for k in keys}
    scored = [(np.mean([f["validation"][SELECTION_METRIC] for f in folds[k]]), k == benchmark, k) for k in keys if folds[k] and all("validation" in f for f in folds[k])]
    key = max(scored)[2] if scored else benchmark
    return key, results[key]


def selection_rows(results: dict[str, Any], benchmark: str, figure: Callable[[dict[str, Any]], str]) -> list[str]:
    """A table of the candidates tried: mean validation scores, the test-fold figure, and which validation chose."""
    keys = [k for k in results if k == benchmark or k.startswith(f"{benchmark}@")]
    if len(keys) < 2:
        return []
    best, _ = chosen(results, benchmark)
    lines = [
        "",
        f"Choice on validation: each candidate ran the same CV; the one with the best mean validation {SELECTION_METRIC} (each fold's model "
        "on its own validation records, never the fold's test records) is the result above.",
        "",
        "| candidate | settings | mean validation macro F1 | mean validation accuracy | test folds | chosen |",
        "|---|---|---:|---:|---|---|",
    ]
    for key in keys:
        entry = results[key]
        name = key.split("@")[1] if "@" in key else "defaults"
        val = {m: np.mean([f["validation"][m] for f in entry["folds"]]) for m in VALIDATION_METRICS} if all("validation" in f for f in entry["folds"]) else None
        settings = f"`{json.dumps(CANDIDATES[name])}`" if name in CANDIDATES else RETIRED_CANDIDATES[name]
        scores = f"{val['f1_macro']:.3f} | {val['accuracy']:.3f}" if val else "– | –"
        lines.append(f"| {name} | {settings} | {scores} | {figure(entry)} | {'yes' if val and key == best else ''} |")
    return lines


def record_folds(names: list[str], n_folds: int, seed: int = 0) -> list[list[str]]:
    """Records dealt into ``n_folds`` folds after a seeded shuffle (each record in exactly one fold)."""
    order = np.random.default_rng(seed).permutation(sorted(names))
    return [sorted(order[i::n_folds].tolist()) for i in range(n_folds)]


def link_records(source: Path, names: list[str], folder: Path, suffixes: tuple[str, ...]) -> Path:
    """A folder of symbolic links to some records of ``source`` (with its RECORDS listing), so a fold is a plain dataset folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        for suffix in suffixes:
            if (source / f"{name}{suffix}").exists():
                link = folder / f"{name}{suffix}"
                link.unlink(missing_ok=True)
                link.symlink_to((source / f"{name}{suffix}").resolve())
    (folder / "RECORDS").write_text("\n".join(names) + "\n")
    return folder


def cross_validate(
    source: Path,
    names: list[str],
    work: Path,
    *,
    n_folds: int,
    overrides: dict[str, Any],
    make_fold: Callable[[list[str], Path], Path],
) -> tuple[list[dict[str, Any]], float]:
    """Train one model per fold on the other folds' records; predict the fold's records once.

    Returns one entry per held-out sample (``record``, ``label``, ``scores``, ``classes``) list per fold, and the seconds taken.
    """
    import medtorch

    folds = record_folds(names, n_folds)
    results, start = [], time.perf_counter()
    for k, held_out in enumerate(folds):
        training = [n for n in names if n not in held_out]
        train_dir, test_dir = make_fold(training, work / f"fold{k}" / "train"), make_fold(held_out, work / f"fold{k}" / "test")
        fold_start = time.perf_counter()
        run = medtorch.train(train_dir, out=work / f"fold{k}" / "run", overrides=overrides, overwrite=True, progress=False)
        records = run.bundle.read_labeled(test_dir)
        scores = run.bundle.predict_scores(records.inputs)
        classes = [str(c) for c in run.bundle.task.get_config()["classes"]]
        results.append(
            {
                "fold": k,
                "held_out": held_out,
                "records": records.groups.astype(str).tolist(),
                "labels": records.target.astype(str).tolist(),
                "scores": scores.tolist(),
                "classes": classes,
                "validation": {k: run.metrics["metrics"][k]["value"] for k in VALIDATION_METRICS},
                "epochs": run.metrics["training"].get("epochs_run"),
                "best_epoch": run.metrics["training"].get("best_epoch"),
                "seconds": round(time.perf_counter() - fold_start, 1),
            }
        )
        print(f"fold {k + 1}/{n_folds}: {len(held_out)} records held out ({time.perf_counter() - fold_start:.0f} s)", flush=True)
    return results, time.perf_counter() - start


def pooled(results: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every held-out sample once: record, true label, predicted label (argmax of the probabilities)."""
    records, truth, predicted = [], [], []
    for fold in results:
        classes = np.asarray(fold["classes"])
        records += fold["records"]
        truth += fold["labels"]
        predicted += classes[np.argmax(np.asarray(fold["scores"]), axis=1)].tolist()
    return np.asarray(records), np.asarray(truth), np.asarray(predicted)


def per_class_figures(truth: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Se, +P and F1 (in %) per class, and overall accuracy."""
    figures: dict[str, dict[str, float]] = {}
    for c in classes:
        tp = np.sum((truth == c) & (predicted == c))
        positives, flagged = np.sum(truth == c), np.sum(predicted == c)
        se = 100 * tp / positives if positives else float("nan")
        ppv = 100 * tp / flagged if flagged else float("nan")
        f1 = 2 * se * ppv / (se + ppv) if se + ppv > 0 else 0.0
        figures[c] = {"se": se, "ppv": ppv, "f1": f1, "n": int(positives)}
    figures["overall"] = {"accuracy": 100 * float(np.mean(truth == predicted)), "n": int(len(truth))}
    return figures


def record_bootstrap(
    records: np.ndarray, truth: np.ndarray, predicted: np.ndarray, statistic: Callable[[np.ndarray, np.ndarray], dict], n: int = 1000
) -> list[dict]:
    """``statistic`` on ``n`` resamples of whole records (the CI unit is the patient)."""
    rng = np.random.default_rng(0)
    names = np.unique(records)
    rows_of = {name: np.flatnonzero(records == name) for name in names}
    draws = []
    for _ in range(n):
        rows = np.concatenate([rows_of[name] for name in rng.choice(names, size=len(names))])
        draws.append(statistic(truth[rows], predicted[rows]))
    return draws


def ci(draws: list[dict], *keys: str, digits: int = 3) -> list[float]:
    values = np.array([_dig(d, keys) for d in draws], dtype=float)
    values = values[~np.isnan(values)]
    return [round(float(np.percentile(values, 2.5)), digits), round(float(np.percentile(values, 97.5)), digits)] if len(values) else [None, None]


def _dig(value: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = value[key]
    return value


def confusion(truth: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...]) -> list[list[int]]:
    return [[int(np.sum((truth == t) & (predicted == p))) for p in classes] for t in classes]


# ---------------------------------------------------------------- MIT-BIH
def mitbih(args: argparse.Namespace) -> dict[str, Any]:
    """Leave-records-out CV on the 22 DS1 records (paced records excluded), then the bundle on all of DS1."""
    from medtorch.data.signal_io import list_records, read_record

    source = data_root() / "mitbih_arrhythmia"
    names = [p.name for p in list_records(source) if "/" not in set(read_record(p).annotation_symbols.tolist())]
    overrides = {"data": {"test_size": 0}, "train": {"epochs": args.epochs}, "evaluate": {"bootstrap": 0, "baselines": False}}
    make_fold = lambda chosen, folder: link_records(source, chosen, folder, (".hea", ".dat", ".atr"))  # noqa: E731
    results, seconds = cross_validate(source, names, work_dir(args, "mitbih"), n_folds=args.folds, overrides=with_candidate(overrides, args), make_fold=make_fold)
    records, truth, predicted = pooled(results)
    figures = per_class_figures(truth, predicted, AAMI)
    draws = record_bootstrap(records, truth, predicted, lambda t, p: per_class_figures(t, p, AAMI))
    for c in AAMI:
        figures[c]["se_ci"], figures[c]["ppv_ci"] = ci(draws, c, "se", digits=1), ci(draws, c, "ppv", digits=1)
    figures["overall"]["accuracy_ci"] = ci(draws, "overall", "accuracy", digits=1)
    entry: dict[str, Any] = {
        "records": names,
        "folds": fold_summaries(results),
        "figures": figures,
        "confusion": confusion(truth, predicted, AAMI),
        "cv_minutes": round(seconds / 60, 1),
    }
    if not args.no_bundle:  # saved as benchmarks/bundles/mitbih_ds1 by main() when validation chooses this candidate
        import medtorch

        start = time.perf_counter()
        settings = with_candidate({**overrides, "evaluate": {"bootstrap": 200, "baselines": True}}, args)
        run = medtorch.train(source, out=work_dir(args, "mitbih") / "ds1_run", overrides=settings, overwrite=True, progress=False)
        entry["bundle"] = {"path": str(BUNDLE_DIR.relative_to(ROOT)), "minutes": round((time.perf_counter() - start) / 60, 1), **run.metrics["training"]}
    return entry


def heading(title: str, entry: dict[str, Any]) -> list[str]:
    """A section's title and the command, date, commit (and minutes) that made its numbers."""
    minutes = f", {entry['cv_minutes']} min" if "cv_minutes" in entry else ""
    return [f"## {title}", "", f"Command: `{entry['command']}` ({entry['date']}, commit {entry['commit']}{minutes}).", ""]


def fold_summaries(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each fold without its per-sample predictions (held-out records, epochs, seconds)."""
    return [{k: v for k, v in fold.items() if k not in ("records", "labels", "scores")} for fold in results]


def mitbih_markdown(entry: dict[str, Any]) -> list[str]:
    f = entry["figures"]
    lines = heading("MIT-BIH Arrhythmia, inter-patient (AAMI EC57 classes)", entry) + [
        f"Protocol: the {len(entry['records'])} DS1 records of de Chazal et al. (2004) in `../shared/data/mitbih_arrhythmia` "
        "(the 4 paced records are left out, as the protocol does), dealt into "
        f"{len(entry['folds'])} folds by record. Each fold's model is `medtorch.train` with the library defaults of its commit (`rr_linear` on the RR and template features since 2026-12-01, `cnn_rr` before; premature beats out of the template since 2026-12-02), or the "
        "settings of the candidate validation chose (its row in the table below), early stopping on the validation loss of held-out *training* "
        "records, `data.test_size: 0` since the fold's own records are the test. It predicts the held-out records once "
        "(label = argmax of the calibrated probabilities). Every DS1 beat is thus predicted by a model that never saw its "
        "patient: this is the estimate of performance on unseen patients (DS2 itself is not in the project). "
        "95% CIs resample whole records (1000 draws).",
        "",
        "| class | beats | Se % [95% CI] | +P % [95% CI] | F1 % | goal Se / +P |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in AAMI:
        goal = MITBIH_GOALS.get(c)
        lines.append(
            f"| {c} | {f[c]['n']} | {f[c]['se']:.1f} {f[c]['se_ci']} | {f[c]['ppv']:.1f} {f[c]['ppv_ci']} | {f[c]['f1']:.1f} | "
            + (f"{goal[0]} / {goal[1]}" if goal else "")
            + " |"
        )
    lines += [
        "",
        f"Overall accuracy: {f['overall']['accuracy']:.1f}% {f['overall']['accuracy_ci']} over {f['overall']['n']} beats.",
        "",
        "Confusion matrix (rows: annotated class, columns: predicted), pooled over the held-out folds:",
        "",
        "| | " + " | ".join(AAMI) + " |",
        "|---|" + "---:|" * len(AAMI),
    ]
    lines += [f"| {c} | " + " | ".join(str(v) for v in row) + " |" for c, row in zip(AAMI, entry["confusion"])]
    lines += ["", "Published DS2 results (Se / +P %):", "", "| method | S | V |", "|---|---:|---:|"]
    lines += [f"| {name} | {r['S'][0]} / {r['S'][1]} | {r['V'][0]} / {r['V'][1]} |" for name, r in MITBIH_PUBLISHED.items()]
    lines.append(f"| medtorch (the result above), DS1 leave-records-out CV | {f['S']['se']:.0f} / {f['S']['ppv']:.0f} | {f['V']['se']:.0f} / {f['V']['ppv']:.0f} |")
    if "bundle" in entry:
        b = entry["bundle"]
        lines += [
            "",
            f"The bundle for DS2: `{entry['command']}` writes `{b['path']}/`, the same settings trained on all "
            f"{len(entry['records'])} DS1 records ({b['minutes']} min, best epoch {b['best_epoch']}; generated, so not "
            "committed). Evaluate it on other records with "
            f"`medtorch evaluate {b['path']} --data OTHER_WFDB_FOLDER --out runs/mitbih-ds2`.",
        ]
    return lines


# ---------------------------------------------------------------- record-level benchmarks (windows)
def record_level(results: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One prediction per held-out record: the mean of its windows' probabilities, then argmax."""
    names, truth, predicted = [], [], []
    for fold in results:
        classes, records = np.asarray(fold["classes"]), np.asarray(fold["records"])
        scores, labels = np.asarray(fold["scores"]), np.asarray(fold["labels"])
        for name in np.unique(records):
            rows = records == name
            names.append(name)
            truth.append(labels[rows][0])
            predicted.append(classes[np.argmax(scores[rows].mean(axis=0))])
    return np.asarray(names), np.asarray(truth), np.asarray(predicted)


def f1_scores(truth: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for c in classes:
        tp, flagged, positives = np.sum((truth == c) & (predicted == c)), np.sum(predicted == c), np.sum(truth == c)
        out[c] = float(2 * tp / (flagged + positives)) if flagged + positives else float("nan")
    return out


def link_wfdb_with_labels(source: Path, labels: dict[str, str]) -> Callable[[list[str], Path], Path]:
    def make(names: list[str], folder: Path) -> Path:
        link_records(source, names, folder, (".hea", ".mat", ".dat"))
        (folder / "REFERENCE.csv").write_text("".join(f"{n},{labels[n]}\n" for n in names))
        return folder

    return make


def cinc2017(args: argparse.Namespace) -> dict[str, Any]:
    """5-fold CV by record on the 2000-record subset; record label = argmax of its windows' mean probability."""
    source = data_root() / "cinc2017_af_subset" / "training2017"
    labels = dict(line.split(",") for line in (source / "REFERENCE-v3.csv").read_text().split())
    overrides = {"data": {"test_size": 0}, "train": {"epochs": args.epochs}, "evaluate": {"bootstrap": 0, "baselines": False}}
    results, seconds = cross_validate(
        source, sorted(labels), work_dir(args, "cinc2017"), n_folds=args.folds, overrides=with_candidate(overrides, args), make_fold=link_wfdb_with_labels(source, labels)
    )
    names, truth, predicted = record_level(results)
    f1 = f1_scores(truth, predicted, ("N", "A", "O", "~"))
    score = lambda t, p: float(np.mean([v for k, v in f1_scores(t, p, ("N", "A", "O")).items()]))  # noqa: E731
    draws = record_bootstrap(names, truth, predicted, lambda t, p: {"score": score(t, p)})
    return {
        "records": len(names),
        "f1": f1,
        "score": score(truth, predicted),
        "score_ci": ci(draws, "score"),
        "accuracy": float(np.mean(truth == predicted)),
        "confusion": confusion(truth, predicted, ("N", "A", "O", "~")),
        "folds": fold_summaries(results),
        "cv_minutes": round(seconds / 60, 1),
    }


def cinc2017_markdown(entry: dict[str, Any]) -> list[str]:
    f1 = entry["f1"]
    lines = heading("PhysioNet/CinC 2017 AF detection (single-lead ECG)", entry) + [
        f"Protocol: the {entry['records']} records of `../shared/data/cinc2017_af_subset` (v3 labels), 5-fold CV by record. "
        "Each fold's model is `medtorch train` on the folder with its defaults (or the candidate validation chose, table below): "
        f"windows at 128 Hz (the length the candidate sets, else the defaults': 10 s until 2026-12-03, then 30 s, which is also the records' median length, the default since) with {WINDOW_FEATURES_NOTE}, the model the candidate names, else the defaults' (`cnn_rr` until 2026-12-03, then whichever of {DEFAULT_WINDOW_MODELS_NOTE} scores best on the fold's validation records; since 2026-12-03's evening the scikit-learn ones are first compared by 3-fold CV inside the training records, and only their best meets the CNN there), validation by held-out training records. "
        "A held-out record's label is the argmax "
        "of its windows' mean probability. The challenge score is the mean F1 of N, A and O; its 95% CI resamples records.",
        "",
        "| | F1 N | F1 A (AF) | F1 O (other) | F1 ~ (noisy) | challenge score [95% CI] | accuracy | goal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| medtorch, 5-fold CV | {f1['N']:.3f} | {f1['A']:.3f} | {f1['O']:.3f} | {f1['~']:.3f} | "
        f"**{entry['score']:.3f}** {entry['score_ci']} | {entry['accuracy']:.3f} | 0.80 |",
        "| challenge winners (hidden test set, 8528 training records) | | | | | 0.83 | | |",
        "",
        "Confusion matrix (rows: reference, columns: predicted; N, A, O, ~):",
        "",
        "| | N | A | O | ~ |",
        "|---|---:|---:|---:|---:|",
    ]
    return lines + [f"| {c} | " + " | ".join(str(v) for v in row) + " |" for c, row in zip(("N", "A", "O", "~"), entry["confusion"])]


BONN_SETS = ("A_Z", "B_O", "C_N", "D_F", "E_S")


def bonn(args: argparse.Namespace) -> dict[str, Any]:
    """5-fold CV by segment on the five Bonn sets; seizure (E) vs rest read off the 5-class model."""
    import zipfile

    extracted = args.work / "bonn" / "data"
    if not (extracted / "E_S").is_dir():
        with zipfile.ZipFile(data_root() / "bonn_eeg" / "Bonn_EEG_dataset.zip") as archive:
            archive.extractall(extracted)
    files = {f"{s}/{p.stem}": p for s in BONN_SETS for p in (extracted / s).iterdir() if p.suffix.lower() == ".txt"}  # set C is .TXT
    names = sorted(files)

    def make_fold(chosen: list[str], folder: Path) -> Path:
        for name in chosen:
            link = folder / name.split("/")[0] / files[name].name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(files[name].resolve())
        return folder

    overrides = {"data": {"test_size": 0, "record_sampling_rate": 173.61}, "train": {"epochs": args.epochs}, "evaluate": {"bootstrap": 0, "baselines": False}}
    results, seconds = cross_validate(extracted, names, work_dir(args, "bonn"), n_folds=args.folds, overrides=with_candidate(overrides, args), make_fold=make_fold)
    records, truth, predicted = record_level(results)
    seizure_truth, seizure_predicted = truth == "E_S", predicted == "E_S"
    accuracy = lambda t, p: {"five": float(np.mean(t == p)), "binary": float(np.mean((t == "E_S") == (p == "E_S")))}  # noqa: E731
    draws = record_bootstrap(records, truth, predicted, accuracy)
    return {
        "segments": len(records),
        "five_class_accuracy": accuracy(truth, predicted)["five"],
        "five_class_ci": ci(draws, "five"),
        "binary_accuracy": accuracy(truth, predicted)["binary"],
        "binary_ci": ci(draws, "binary"),
        "seizure_sensitivity": float(np.mean(seizure_predicted[seizure_truth])),
        "seizure_specificity": float(np.mean(~seizure_predicted[~seizure_truth])),
        "confusion": confusion(truth, predicted, BONN_SETS),
        "folds": fold_summaries(results),
        "cv_minutes": round(seconds / 60, 1),
    }


def bonn_markdown(entry: dict[str, Any]) -> list[str]:
    lines = heading("Bonn EEG (Andrzejak et al. 2001): seizure detection and the five sets", entry) + [
        f"Protocol: the {entry['segments']} single-channel segments (23.6 s at 173.61 Hz) in class folders A_Z ... E_S, "
        "5-fold CV by segment (the segment is the unit: the dataset does not say which segments share a patient). "
        "Each fold's model is `medtorch train` with its defaults or the candidate validation chose (table below; "
        f"windows at 128 Hz (the length and step the candidate sets, else the defaults': 10 s until 2026-12-03, 30 s zero-padded at a80dac7, and the records' median length since, 23.5 s, one window per segment) with {WINDOW_FEATURES_NOTE}, the model the candidate names, else the defaults' "
        f"(`cnn_rr` until 2026-12-03, then whichever of {DEFAULT_WINDOW_MODELS_NOTE} scores best on the fold's validation segments; since 2026-12-03's evening the scikit-learn ones are first compared by 3-fold CV inside the training segments, and only their best meets the CNN there); `data.record_sampling_rate: 173.61`, since a text file does not store its rate). A segment's class is the argmax "
        "of its windows' mean probability; seizure vs non-seizure is E against the four others, read off the same "
        "five-class model. CIs resample segments.",
        "",
        "| task | accuracy [95% CI] | goal |",
        "|---|---:|---:|",
        f"| seizure (E) vs non-seizure (A-D) | {100 * entry['binary_accuracy']:.1f}% {[round(100 * v, 1) for v in entry['binary_ci']]} | 99% |",
        f"| five sets (A, B, C, D, E) | {100 * entry['five_class_accuracy']:.1f}% {[round(100 * v, 1) for v in entry['five_class_ci']]} | 93% |",
        "",
        f"Seizure sensitivity {100 * entry['seizure_sensitivity']:.1f}%, specificity {100 * entry['seizure_specificity']:.1f}%.",
        "",
        "| | " + " | ".join(BONN_SETS) + " |",
        "|---|" + "---:|" * len(BONN_SETS),
    ]
    return lines + [f"| {c} | " + " | ".join(str(v) for v in row) + " |" for c, row in zip(BONN_SETS, entry["confusion"])]


# ---------------------------------------------------------------- real time
def realtime(args: argparse.Namespace) -> dict[str, Any]:
    """Stream a whole 30-minute MIT-BIH record through the DS1 bundle in chunks of several sizes."""
    import torch

    from medtorch.data.signal_io import read_record
    from medtorch.serving.stream import stream_record

    torch.set_num_threads(1)  # a bedside monitor gets one core
    record = read_record(data_root() / "mitbih_arrhythmia" / args.record)
    record.annotation_samples = record.annotation_symbols = None  # as a monitor sees it
    seconds = record.signal.shape[1] / record.fs
    rows = []
    for chunk_seconds in (0.25, 1.0, 5.0):
        report = stream_record(BUNDLE_DIR, record, chunk_seconds=chunk_seconds)
        decisions, timings = report.decisions, report.chunk_seconds
        delays = [d.delay for d in decisions]
        rows.append(
            {
                "chunk_seconds": chunk_seconds,
                "beats": len(decisions),
                "processing_seconds": round(sum(timings), 2),
                "times_real_time": round(seconds / sum(timings)),
                "latency_ms_median": round(1000 * float(np.median(timings)), 2),
                "latency_ms_p99": round(1000 * float(np.percentile(timings, 99)), 2),
                "latency_ms_max": round(1000 * max(timings), 2),
                "delay_s_median": round(float(np.median(delays)), 2),
                "delay_s_max": round(max(delays), 2),
            }
        )
    return {"record": args.record, "signal_seconds": seconds, "rows": rows}


def realtime_markdown(entry: dict[str, Any]) -> list[str]:
    lines = heading("Real time", entry) + [
        f"The DS1 bundle streams MIT-BIH record {entry['record']} ({entry['signal_seconds'] / 60:.0f} min, annotations "
        "ignored: R-peaks are detected as the signal arrives) on one CPU core. *Latency per chunk* is the processing time "
        "of one chunk (filtering, detection, features, model); *decision delay* is the signal time between a beat's R-peak "
        "and its label (the next R-peak must be found first).",
        "",
        "| chunk | beats | processing | faster than real time | latency per chunk: median / p99 / max | decision delay: median / max |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    return lines + [
        f"| {r['chunk_seconds']} s | {r['beats']} | {r['processing_seconds']} s | {r['times_real_time']}x | "
        f"{r['latency_ms_median']} / {r['latency_ms_p99']} / {r['latency_ms_max']} ms | {r['delay_s_median']} / {r['delay_s_max']} s |"
        for r in entry["rows"]
    ]


def quality(args: argparse.Namespace) -> dict[str, Any]:
    """How NeuroKit2's ECG quality verdict (Zhao & Zhang 2018, as the checks use it) spreads over
    the classes: CinC 2017's Noisy records should be judged Unacceptable far more often than the rest."""
    from medtorch.config import DataConfig
    from medtorch.data.signals import ECG_QUALITY, Signals

    rows = {}
    cinc = data_root() / "cinc2017_af_subset" / "training2017"
    sources = {
        "cinc2017": (cinc, DataConfig(ecg_quality=True, labels=str(cinc / "REFERENCE-v3.csv"))),
        "mitbih": (data_root() / "mitbih_arrhythmia", DataConfig()),
    }
    for name, (source, config) in sources.items():
        start = time.perf_counter()
        records = Signals().read(source, config)
        verdicts = records.attributes[ECG_QUALITY].to_numpy()
        rows[name] = {
            "unit": "10-s window" if name == "cinc2017" else "beat (by its 10 s of record)",
            "read_seconds": round(time.perf_counter() - start, 1),
            "classes": {
                str(c): {"n": int(np.sum(records.target == c)), "unacceptable": round(float(np.mean(verdicts[records.target == c] == "Unacceptable")), 3)}
                for c in sorted(set(records.target.tolist()))
            },
        }
    return {"rows": rows}


def quality_markdown(entry: dict[str, Any]) -> list[str]:
    lines = heading("Signal quality (NeuroKit2)", entry) + [
        "Share of samples whose stretch NeuroKit2's `ecg_quality` (Zhao & Zhang 2018, simple fusion) calls *Unacceptable*, "
        "per class: what the report's checks and the `ECG quality` subgroup metrics rest on. *Read* is the time to read the "
        "whole dataset with the verdicts.",
        "",
        "| dataset | unit | class | samples | unacceptable | read |",
        "|---|---|---|---:|---:|---:|",
    ]
    for name, row in entry["rows"].items():
        for c, numbers in row["classes"].items():
            lines.append(f"| {name} | {row['unit']} | {c} | {numbers['n']} | {100 * numbers['unacceptable']:.1f}% | {row['read_seconds']} s |")
    return lines


TEST_FIGURE = {  # the headline test-fold figure of each benchmark, for the candidates table
    "mitbih": lambda e: f"V Se/+P {e['figures']['V']['se']:.1f}/{e['figures']['V']['ppv']:.1f}, S Se/+P {e['figures']['S']['se']:.1f}/{e['figures']['S']['ppv']:.1f}",
    "cinc2017": lambda e: f"challenge score {e['score']:.3f}",
    "bonn": lambda e: f"5 sets {100 * e['five_class_accuracy']:.1f}%, seizure {100 * e['binary_accuracy']:.1f}%",
}

BENCHMARKS = {
    "mitbih": (mitbih, mitbih_markdown),
    "realtime": (realtime, realtime_markdown),
    "cinc2017": (cinc2017, cinc2017_markdown),
    "bonn": (bonn, bonn_markdown),
    "quality": (quality, quality_markdown),
}


def goal_rows(results: dict[str, Any]) -> list[str]:
    """One row per goal of the issue: the figure of the row validation chose (the rule) and of the library's
    defaults as they ship now, against the goal. The defaults row is each benchmark's own key: when the defaults
    change, its old row is kept under a retired name (``RETIRED_CANDIDATES``) and the benchmark is run again."""
    rows = []
    shipped = {name: results[name] for name in BENCHMARKS if name in results}
    results = {name: chosen(results, name)[1] for name in shipped}
    if "mitbih" in results:
        f = results["mitbih"]["figures"]
        for c, (se, ppv) in MITBIH_GOALS.items():
            met = f[c]["se"] >= se and f[c]["ppv"] >= ppv
            now = shipped["mitbih"]["figures"][c]
            shipped_figure = f"Se {now['se']:.1f} / +P {now['ppv']:.1f}"
            rows.append(f"| MIT-BIH {c} beats, unseen patients | Se {se} / +P {ppv} | Se {f[c]['se']:.1f} / +P {f[c]['ppv']:.1f} | {shipped_figure} | {'met' if met else 'not met'} |")
    if "cinc2017" in results:
        score = results["cinc2017"]["score"]
        shipped_score = f"{shipped['cinc2017']['score']:.3f}"
        rows.append(f"| CinC 2017 challenge score | 0.80 | {score:.3f} | {shipped_score} | {'met' if score >= 0.80 else 'not met'} |")
    if "bonn" in results:
        b = results["bonn"]
        for label, key, goal in (("Bonn seizure vs non-seizure", "binary_accuracy", 0.99), ("Bonn five sets", "five_class_accuracy", 0.93)):
            shipped_figure = f"{100 * shipped['bonn'][key]:.1f}%"
            rows.append(f"| {label} | {100 * goal:.0f}% | {100 * b[key]:.1f}% | {shipped_figure} | {'met' if b[key] >= goal else 'not met'} |")
    return rows


def write_markdown(results: dict[str, Any], path: Path) -> None:
    lines = [
        "# Biosignal benchmarks",
        "",
        f"Machine: {os.cpu_count()}-core CPU ({platform.machine()}), no GPU. Every figure is measured on records the model "
        "never saw; every choice (early stopping, calibration, the candidate settings) is made on validation records held out "
        "of the training folds. The library's signal defaults were changed after the first runs to what validation chose "
        "then (class weights `sqrt`, patience 16); the rows chosen later add the settings of their candidate (in their "
        "command and candidates table), which are not defaults, except MIT-BIH's: a linear model on the RR and template "
        "features became the beat default on 2026-12-01 (its defaults row is that), and on 2026-12-02 a beat template that leaves "
        "premature beats out (row `nonpremature_template`; the defaults row, re-run on 2026-12-03, equals it); and CinC's and Bonn's: since 2026-12-03 "
        "a window run with no model named fits gradient boosting and extra trees on the window features, `cnn_rr`, and since that afternoon `minirocket` "
        "(MiniRocket on the samples averaged with extra trees on the features), and keeps the one validation "
        "scores best (since that evening the three scikit-learn ones are first compared by CV inside the training records, and only their best "
        "meets the CNN on validation; `four_on_validation` is the choice before), on windows of the records' median length up to 30 s "
        "(their defaults rows are that; the rows `boosting_trees_or_cnn` lacked "
        "`minirocket`, `boosting_or_cnn` lacked extra trees too, "
        "`model_choice_10s_windows` and `model_choice_30s_windows` are that choice on fixed 10-s and 30-s windows, and `first_defaults` the first defaults, "
        "`cnn_rr` with balanced weights and patience 6 on 10-s windows). The window features grew while these runs were made "
        "(17, then 37 on 2026-12-01 with candidates named `waveform_features_...`, then 43 with `spike_features_...`, "
        "63 on 2026-12-02 with `rhythm_shape_features_...`, 70 with the retired `atrial_features_...`, and 63 with COSEn for one of them in the retired `cosen_...`; scikit-learn models on signals read "
        "these features alone since `rhythm_shape_features_...`), and so "
        "did the beat features (7 RR features, then 9 with 6 template features from the candidates named `template_features...`); "
        "each run's commit is in the JSON beside this file.",
        "",
    ]
    rows = goal_rows(results)
    if rows:
        lines += ["## Goals", "", "| goal | target | measured (validation's choice) | the defaults now | status |", "|---|---:|---:|---:|---|", *rows, ""]
        analysis = Path(__file__).with_name("biosignals_analysis.md")
        if analysis.exists():  # the hand-written reading of the numbers: what limits them, what would close the gaps
            lines += [analysis.read_text().strip(), ""]
    for name, (_, markdown) in BENCHMARKS.items():
        if name in results:
            lines += markdown(chosen(results, name)[1]) + selection_rows(results, name, TEST_FIGURE.get(name, lambda e: "")) + [""]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS) + ["report"], help="'report' only rewrites the markdown from the stored numbers")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None, help="cap on epochs (default: the library default)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/medtorch-biosignals"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "biosignals.md")
    parser.add_argument("--no-bundle", action="store_true", help="MIT-BIH: skip training the DS1 bundle")
    parser.add_argument("--record", default="201", help="realtime: the MIT-BIH record to stream")
    parser.add_argument("--candidate", choices=sorted(CANDIDATES), default="defaults", help="settings to try beside the defaults (chosen on validation)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    store = args.out.with_suffix(".json")
    if args.benchmark == "report":
        write_markdown(json.loads(store.read_text()), args.out)
        return
    run, _ = BENCHMARKS[args.benchmark]
    describe = ["git", "describe", "--always", "--dirty=+uncommitted-changes"]
    commit = subprocess.run(describe, capture_output=True, text=True, cwd=ROOT).stdout.strip()  # the code that runs, when it starts
    entry = run(args)
    entry.update(date=datetime.now(timezone.utc).isoformat(timespec="seconds"), commit=commit, command=" ".join(["python benchmarks/biosignals.py", *sys.argv[1:]]))
    store.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(store.read_text()) if store.exists() else {}
    key = args.benchmark if args.candidate == "defaults" else f"{args.benchmark}@{args.candidate}"
    results[key] = entry
    if "bundle" in entry and chosen(results, args.benchmark)[0] == key:
        import shutil

        shutil.rmtree(BUNDLE_DIR, ignore_errors=True)
        shutil.copytree(work_dir(args, args.benchmark) / "ds1_run" / "bundle", BUNDLE_DIR)
        print(f"validation chose {key}: its bundle is {BUNDLE_DIR}")
    store.write_text(json.dumps(results, indent=1, default=float) + "\n")
    write_markdown(results, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
