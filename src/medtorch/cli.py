"""The ``medtorch`` command: a thin face over :mod:`medtorch.pipeline`.

Only typer is imported at start-up; each command imports what it needs, so
``medtorch --help`` stays fast. A :class:`~medtorch.errors.MedtorchError` becomes one line on
stderr and exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from medtorch.errors import MedtorchError

app = typer.Typer(
    name="medtorch",
    help="Deep learning on healthcare data: train, evaluate, explain and serve clinical models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from medtorch.version import __version__

        typer.echo(f"medtorch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """medtorch: one pipeline from clinical data to a calibrated, bundled model."""


@app.command()
def train(
    data: Optional[str] = typer.Option(None, "--data", "-d", help="CSV/Parquet file (or a folder for other modalities)."),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="Target column; comma-separated columns make a multi-label task."),
    out: Path = typer.Option(Path("runs/latest"), "--out", "-o", help="Run folder to write (an unfinished run there is resumed)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config; flags override it."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Registered model name (see `medtorch models`)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs (early stopping usually ends sooner)."),
    positive: Optional[str] = typer.Option(None, "--positive", help="Positive class of a binary task (default: the larger number, or the rarer class)."),
    group_column: Optional[str] = typer.Option(None, "--group-column", help="Patient id column: each patient stays on one side of every split."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed for splits, initialisation and shuffling."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda."),
    ensemble: Optional[int] = typer.Option(None, "--ensemble", min=1, help="Train this many models from consecutive seeds and average them."),
    skip_bad_files: bool = typer.Option(False, "--skip-bad-files", help="Images: skip unreadable files (listed in the run folder)."),
    unit: Optional[str] = typer.Option(None, "--unit", help="Signals: 'beat' (each annotated beat) or 'window' (fixed windows of labelled records)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished run in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train, evaluate and bundle a model; writes config.yaml, bundle/, metrics.json, train_log.csv, report.html."""
    from medtorch.pipeline import train as run_training

    targets = None if target is None else (target.split(",") if "," in target else target)
    result = run_training(
        data,
        target=targets,
        out=out,
        config=config,
        overwrite=overwrite,
        progress=not quiet,
        overrides={
            "data": {"group_column": group_column, "skip_bad_files": skip_bad_files or None, "unit": unit},
            "task": {"positive": positive},
            "model": {"name": model},
            "train": {"epochs": epochs, "seed": seed, "device": device, "ensemble": ensemble},
        },
    )
    if result.metrics:
        _print_summary(result.metrics, result.out_dir)


@app.command()
def predict(
    bundle: Path = typer.Argument(..., help="Bundle folder (a run's bundle/)."),
    input: str = typer.Argument(..., help="File to predict on, in the format the model was trained on."),
    out: Path = typer.Option(Path("predictions.csv"), "--out", "-o", help="CSV file to write."),
) -> None:
    """Apply a bundle, with its saved preprocessing, to new data."""
    from medtorch.pipeline import predict as run_prediction

    table = run_prediction(bundle, input)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    typer.echo(f"wrote {len(table)} predictions to {out}")
    if "uncertain" in table:
        flagged = int(table["uncertain"].sum())
        typer.echo(f"{flagged} of {len(table)} uncertain (prediction set not a single class): refer to a clinician")


@app.command()
def evaluate(
    bundle: Path = typer.Argument(..., help="Bundle folder (a run's bundle/)."),
    data: str = typer.Option(..., "--data", "-d", help="Labelled data in the format the model was trained on (external validation)."),
    out: Path = typer.Option(Path("runs/evaluation"), "--out", "-o", help="Folder for metrics.json and report.html."),
    split: Optional[str] = typer.Option(None, "--split", help="Only this predefined split of the data (e.g. test of a MedMNIST file)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples for the 95% CIs (0: none)."),
    intended_use: Optional[str] = typer.Option(None, "--intended-use", help="Intended use for the report's model card."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished evaluation in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Evaluate a bundle on new labelled data: metrics with CIs, calibration, subgroups, report."""
    from medtorch.pipeline import evaluate_bundle

    summary = evaluate_bundle(
        bundle, data, out=out, split=split, bootstrap=bootstrap, intended_use=intended_use, overwrite=overwrite, progress=not quiet
    )
    _print_summary(summary, out)


@app.command()
def explain(
    bundle: Path = typer.Argument(..., help="Bundle folder of an image model."),
    image: str = typer.Argument(..., help="Image file (PNG, JPEG, DICOM, NIfTI)."),
    out: Path = typer.Option(Path("heatmap.png"), "--out", "-o", help="PNG file to write."),
    explained_class: Optional[str] = typer.Option(None, "--class", help="Class to explain (default: the predicted class)."),
) -> None:
    """Grad-CAM heatmap over the image, with the predicted class and probability."""
    from medtorch.bundle import load_bundle
    from medtorch.explain import explain_image, save_overlay

    explanation = explain_image(load_bundle(bundle), image, explained_class)
    save_overlay(explanation, out)
    typer.echo(f"predicted {explanation.label} (p = {explanation.probability:.3f}); heatmap written to {out}")


@app.command()
def stream(
    bundle: Path = typer.Argument(..., help="Bundle folder of a biosignal model."),
    record: str = typer.Argument(..., help="Record to replay as if it were arriving (WFDB .hea, EDF, .npy/.txt/.csv)."),
    chunk_seconds: float = typer.Option(1.0, "--chunk-seconds", min=0.01, help="Seconds of signal per chunk."),
    sampling_rate: Optional[float] = typer.Option(None, "--sampling-rate", help="Recording rate of a raw array file (Hz)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="CSV of the decisions (time, label, probability, delay)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the summary, not each decision."),
) -> None:
    """Label a signal beat by beat (or window by window) as it arrives; report the latency per chunk."""
    import torch

    from medtorch.serving.stream import stream_record

    def show(decisions: list) -> None:
        for d in decisions if not quiet else ():
            typer.echo(f"{d.time:10.3f} s  {d.label!s:<8} p = {d.probability:.3f}  (decided {d.delay:.2f} s later)")

    torch.set_num_threads(1)  # a beat or two per call: more threads only add synchronisation (and a monitor gets one core)
    report = stream_record(bundle, record, chunk_seconds=chunk_seconds, record_sampling_rate=sampling_rate, on_decisions=show)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        report.table().to_csv(out, index=False)
    typer.echo(report.summary())


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Run folder to write."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model to train (default: the tabular default)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Diagnose breast cancer from the Wisconsin data scikit-learn ships: train, evaluate, report, bundle."""
    from medtorch.demo import run_demo

    result = run_demo(out, model=model, epochs=epochs, progress=not quiet)
    _print_summary(result.metrics, result.out_dir)


@app.command()
def models(modality: Optional[str] = typer.Option(None, "--modality", help="Only models of this modality.")) -> None:
    """List the registered models."""
    from medtorch.registry import get_model_entry, list_models

    for name in list_models(modality=modality):
        entry = get_model_entry(name)
        typer.echo(f"{name:<24} {entry.modality:<10} {entry.kind:<8} {entry.description}")


@app.command()
def doctor() -> None:
    """Check the installation: versions, CPU-only torch, no CUDA packages pulled in."""
    from medtorch.doctor import check_installation

    problems = check_installation(echo=typer.echo)
    if problems:
        raise MedtorchError("; ".join(problems))


def _print_summary(summary: dict, out_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['model']} on the {summary.get('evaluated_on', 'test')} set (n = {summary['n']})")
    table.add_column("metric")
    models = {summary["model"]: summary["metrics"]} | {k: v["metrics"] for k, v in summary["baselines"].items()}
    for name in models:
        table.add_column(name, justify="right")
    for metric in summary["metrics"]:
        cells = []
        for values in models.values():
            entry = values[metric]
            low, high = entry["ci"]
            cells.append("–" if entry["value"] is None else f"{entry['value']:.3f}" + (f" ({low:.3f}–{high:.3f})" if low is not None else ""))
        table.add_row(metric, *cells)
    console = Console()
    console.print(table)
    console.print(f"run folder: {out_dir}  (report: {out_dir / 'report.html'})")


def main() -> None:
    """Entry point: run the CLI, turning user errors into one line and exit code 2."""
    try:
        app()
    except MedtorchError as error:
        print(f"medtorch: error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        print("medtorch: interrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
