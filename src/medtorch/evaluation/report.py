"""``report.html``: one self-contained page (pictures embedded) summarising a run.

>>> write_report(run / "report.html", metrics_summary, history)
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

PERCENT_METRICS = {"accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "f1_macro", "f1_micro"}

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1000px;margin:2em auto;color:#1d2733;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #dde3ea;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0} td,th{padding:.3em .8em;border-bottom:1px solid #eef1f4;text-align:right}
th:first-child,td:first-child{text-align:left} .muted{color:#6b7785} img{max-width:100%} .figs{display:flex;flex-wrap:wrap;gap:1em}
"""


def write_report(
    path: str | Path, summary: dict[str, Any], history: list[dict[str, float]], examples: list[tuple[bytes, str]] = ()
) -> Path:
    """Write the run's report; ``summary`` is the content of ``metrics.json``, ``examples`` PNG
    explanations (e.g. Grad-CAM overlays) with their captions."""
    sections = [
        f"<h1>medtorch run: {html.escape(summary['model'])}</h1>",
        f"<p class=muted>{html.escape(summary['task'])} task, evaluated on the {html.escape(summary.get('evaluated_on', 'test'))} "
        f"split (n = {summary['n']}){_threshold_line(summary)}</p>",
        "<h2>Data</h2>",
        _splits_table(summary["splits"]),
        "<h2>Results with 95% confidence intervals</h2>",
        _metrics_table(summary),
    ]
    figures = [_roc_figure(summary), _training_figure(history)]
    figures = [f for f in figures if f]
    if figures:
        sections += ["<h2>Figures</h2>", "<div class=figs>" + "".join(figures) + "</div>"]
    if examples:
        pictures = "".join(_png_html(png, caption, caption) for png, caption in examples)
        sections += ["<h2>Explanations of test predictions</h2>", f"<div class=figs>{pictures}</div>"]
    page = f"<!doctype html><html lang=en><head><meta charset=utf-8><title>medtorch report</title><style>{STYLE}</style></head><body>{''.join(sections)}</body></html>"
    path = Path(path)
    path.write_text(page)
    return path


def _threshold_line(summary: dict[str, Any]) -> str:
    if summary.get("threshold") is None:
        return ""
    return f"; operating threshold {summary['threshold']:.3f} chosen on validation data"


def _format(name: str, entry: dict[str, Any]) -> str:
    value, (low, high) = entry["value"], entry["ci"]
    if value is None:
        return "–"
    scale, unit = (100, "%") if name in PERCENT_METRICS else (1, "")
    digits = 1 if unit else 3
    text = f"{value * scale:.{digits}f}{unit}"
    if low is not None:
        text += f" <span class=muted>({low * scale:.{digits}f}–{high * scale:.{digits}f})</span>"
    return text


def _metrics_table(summary: dict[str, Any]) -> str:
    models = {summary["model"]: summary["metrics"]} | {name: b["metrics"] for name, b in summary["baselines"].items()}
    names = list(summary["metrics"])
    header = "<tr><th>metric</th>" + "".join(f"<th>{html.escape(m)}</th>" for m in models) + "</tr>"
    rows = [
        f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{_format(name, m[name])}</td>" for m in models.values()) + "</tr>"
        for name in names
    ]
    return "<table>" + header + "".join(rows) + "</table>"


def _splits_table(splits: dict[str, Any]) -> str:
    rows = []
    for name, part in splits.items():
        classes = ", ".join(f"{html.escape(str(k))}: {v}" for k, v in part.get("classes", {}).items())
        patients = part.get("patients", "")
        rows.append(f"<tr><td>{name}</td><td>{part['n']}</td><td>{patients}</td><td>{classes}</td></tr>")
    return "<table><tr><th>split</th><th>samples</th><th>patients</th><th>classes</th></tr>" + "".join(rows) + "</table>"


def _figure_html(figure: Any, alt: str) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return _png_html(buffer.getvalue(), alt)


def _png_html(png: bytes, alt: str, caption: str | None = None) -> str:
    """An embedded PNG (the report stays one self-contained file), with an optional caption."""
    encoded = base64.b64encode(png).decode()
    below = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">{below}</figure>'


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _roc_figure(summary: dict[str, Any]) -> str:
    curves = {summary["model"]: summary.get("curves", {})} | {n: b.get("curves", {}) for n, b in summary["baselines"].items()}
    aurocs = {summary["model"]: summary["metrics"].get("auroc", {})} | {n: b["metrics"].get("auroc", {}) for n, b in summary["baselines"].items()}
    if not any(c.get("roc") for c in curves.values()):
        return ""
    plt = _pyplot()
    figure, (roc_axis, pr_axis) = plt.subplots(1, 2, figsize=(9, 4))
    for name, curve in curves.items():
        if curve.get("roc"):
            value = aurocs[name].get("value")
            roc_axis.plot(curve["roc"]["fpr"], curve["roc"]["tpr"], label=name if value is None else f"{name} (AUROC {value:.3f})")
            pr_axis.plot(curve["pr"]["recall"], curve["pr"]["precision"], label=name)
    roc_axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
    roc_axis.set(xlabel="1 − specificity", ylabel="sensitivity", title="ROC curve")
    pr_axis.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title="Precision–recall curve")
    roc_axis.legend(loc="lower right", fontsize=8)
    return _figure_html(figure, "ROC and precision-recall curves")


def _training_figure(history: list[dict[str, float]]) -> str:
    if not history:
        return ""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.5, 4))
    epochs = [row["epoch"] + 1 for row in history]
    axis.plot(epochs, [row["train_loss"] for row in history], label="training loss")
    if "val_loss" in history[0]:
        axis.plot(epochs, [row["val_loss"] for row in history], label="validation loss")
    axis.set(xlabel="epoch", ylabel="loss", title="Training curve")
    axis.legend(fontsize=8)
    return _figure_html(figure, "training and validation loss per epoch")
