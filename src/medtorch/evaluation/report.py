"""``report.html``: one self-contained page (pictures embedded) that a clinical reviewer can read.

>>> write_report(run / "report.html", metrics_summary, history, explanations)

Sections follow what TRIPOD-AI asks of a prediction-model paper: model card, data, leakage
checks, discrimination with CIs beside baselines, the operating point, calibration, conformal
uncertainty, subgroups, clinical utility (decision curve), training, and explanations. Each
section opens with one line saying what it shows. The numbers are those of ``metrics.json``.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

PERCENT_METRICS = {"accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "f1_macro", "f1_micro", "positive_rate"}
RATE_GAPS = {"equal_opportunity", "demographic_parity"}
COUNT_METRICS = {"support"}
MAX_CLASS_CURVES = 10  # matplotlib's colour cycle: more lines than its ten colours cannot be told apart

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1040px;margin:2em auto;color:#1d2733;padding:0 1em;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #dde3ea;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0;display:block;overflow-x:auto} td,th{padding:.3em .8em;border-bottom:1px solid #eef1f4;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left} .muted{color:#6b7785} img{max-width:100%} .figs{display:flex;flex-wrap:wrap;gap:1em}
.lead{color:#44515f;margin:.2em 0 .6em} .flag{color:#b3261e;font-weight:600} .ok{color:#1e7b34} .warn{background:#fff4e5;padding:.4em .8em;border-left:3px solid #e8a33d}
td.text{white-space:normal;text-align:left} figure{margin:0} figcaption{font-size:.85em;color:#44515f;max-width:320px}
"""


def write_report(
    path: str | Path, summary: dict[str, Any], history: list[dict[str, float]], explanations: Any = None
) -> Path:
    """Write the report; ``summary`` is the content of ``metrics.json``, ``explanations`` a
    modality's :class:`~medtorch.data.base.Explanations` (or ``None``)."""
    parts = [
        _header(summary),
        _model_card(summary.get("model_card")),
        _section("Data", "Samples, patients and classes in each split.", _splits_table(summary["splits"])),
        _section(
            "Choices made on held-out data",
            "What the run fitted several ways and kept by its validation score (macro F1 with several classes, AUROC with two); "
            "several scikit-learn models are first compared by cross-validation inside the training records, and their best goes on.",
            _choices_table(summary.get("training")),
        ),
        _checks(summary.get("checks")),
        _section(
            "Results with 95% confidence intervals",
            "Discrimination and errors of the model beside simple baselines, on the evaluation set "
            f"(bootstrap{' by patient' if _has_patients(summary) else ''}).",
            _metrics_table(summary),
        ),
        _per_class(summary.get("per_class")),
        _operating_point(summary),
        _figure_section("ROC and precision–recall curves", "How sensitivity trades against specificity and precision.", _roc_figure(summary)),
        _calibration(summary.get("calibration")),
        _conformal(summary.get("conformal")),
        _subgroups(summary.get("subgroups")),
        _figure_section(
            "Decision curve",
            "Net benefit of acting on the model at each risk threshold, against treating everyone or no one.",
            _decision_figure(summary.get("decision_curve")),
        ),
        _figure_section("Training", "Loss per epoch; the kept weights are those of the best validation epoch.", _training_figure(history)),
        _explanations(explanations),
    ]
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>medtorch report: "
        f"{html.escape(summary['model'])}</title><style>{STYLE}</style></head><body>{''.join(p for p in parts if p)}</body></html>"
    )
    path = Path(path)
    path.write_text(page)
    return path


# ------------------------------------------------------------------ sections
def _section(title: str, lead: str, body: str) -> str:
    return f"<h2>{html.escape(title)}</h2><p class=lead>{html.escape(lead)}</p>{body}" if body else ""


def _figure_section(title: str, lead: str, figure: str) -> str:
    return _section(title, lead, f"<div class=figs>{figure}</div>") if figure else ""


def _header(summary: dict[str, Any]) -> str:
    threshold = summary.get("threshold")
    line = f"; operating threshold {threshold:.3f} chosen on validation data" if threshold is not None else ""
    return (
        f"<h1>medtorch report: {html.escape(summary['model'])}</h1>"
        f"<p class=muted>{html.escape(summary['task'])} task, evaluated on the {html.escape(summary.get('evaluated_on', 'test'))} "
        f"set (n = {summary['n']}){line}</p>"
    )


def _model_card(card: dict[str, Any] | None) -> str:
    if not card:
        return ""
    version = ", ".join(f"{k} {v}" for k, v in card["version"].items())
    data = card["data"]
    rows = [
        ("Intended use", html.escape(card["intended_use"])),
        ("Model", f"{html.escape(card['model'])}{_ensemble_note(card)} ({html.escape(card['modality'])}, {html.escape(card['task'])})"),
        ("Data", html.escape(f"{data.get('source') or 'in-memory data'}; evaluated on {data.get('evaluated_on')} (n = {data.get('n')})")),
        ("Version", html.escape(version)),
    ]
    limits = "".join(f"<li>{html.escape(item)}</li>" for item in card["limitations"]) or "<li>none found</li>"
    table = "<table>" + "".join(f"<tr><th>{k}</th><td class=text>{v}</td></tr>" for k, v in rows) + "</table>"
    return _section("Model card", "What the model is for, what it was evaluated on, and what limits trust in it.", table + f"<p>Limitations:</p><ul>{limits}</ul>")


def _ensemble_note(card: dict[str, Any]) -> str:
    members = card.get("members", 1)  # cards written before ensembles have no count
    return f", a deep ensemble of {members}" if members > 1 else ""


def _checks(checks: dict[str, Any] | None) -> str:
    if not checks:
        return ""
    rows = []
    for label, key in (("patients shared", "patient_overlap"), ("exact duplicates", "exact_duplicates"), ("near duplicates", "near_duplicates")):
        for pair, count in (checks.get(key) or {}).items():
            mark = "<span class=ok>0</span>" if not count else f"<span class=flag>{count}</span>"
            rows.append(f"<tr><td>{label}</td><td>{html.escape(pair.replace('-', ' vs '))}</td><td>{mark}</td></tr>")
    if checks.get("patient_overlap") is None:
        rows.insert(0, "<tr><td>patients shared</td><td>no patient ids given</td><td>–</td></tr>")
    body = "<table><tr><th>check</th><th>splits</th><th>count</th></tr>" + "".join(rows) + "</table>"
    if "near_duplicate_bits" in checks:
        body += f"<p class=muted>Near duplicates: perceptual hashes within {checks['near_duplicate_bits']} of 64 bits.</p>"
    body += _share_table(checks.get("missingness"), "column", "Missing values per split:")
    body += _share_table(checks.get("quality"), "problem", "Signal quality: share of samples flagged per split:")
    warnings = "".join(f"<p class=warn>{html.escape(w)}</p>" for w in checks.get("warnings", []))
    return _section("Leakage and data checks", "Patients shared across splits are refused; duplicates and missingness are shown here.", body + warnings)


def _share_table(shares: dict[str, dict[str, float]] | None, what: str, caption: str) -> str:
    """A table of per-split shares (missing values per column, quality flags per problem)."""
    if not shares:
        return ""
    splits = list(next(iter(shares.values())))
    header = f"<tr><th>{what}</th>" + "".join(f"<th>{html.escape(s)}</th>" for s in splits) + "</tr>"
    lines = "".join(f"<tr><td>{html.escape(c)}</td>" + "".join(f"<td>{v * 100:.1f}%</td>" for v in parts.values()) + "</tr>" for c, parts in shares.items())
    return f"<p>{caption}</p><table>" + header + lines + "</table>"


def _per_class(per_class: dict[str, Any] | None) -> str:
    if not per_class:
        return ""
    metrics = list(next(iter(per_class.values())))
    header = "<tr><th>class</th>" + "".join(f"<th>{html.escape(m)}</th>" for m in metrics) + "</tr>"
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{_format(m, values[m])}</td>" for m in metrics) + "</tr>"
        for name, values in per_class.items()
    )
    return _section("Per class", "Each class against the rest, with 95% CIs.", "<table>" + header + rows + "</table>")


def _operating_point(summary: dict[str, Any]) -> str:
    point = summary.get("operating_point")
    if not point:
        return ""
    labels = [html.escape(label) for label in point["labels"]]
    header = "<tr><th>true \\ predicted</th>" + "".join(f"<th>{label}</th>" for label in labels) + "</tr>"
    rows = "".join(f"<tr><th>{label}</th>" + "".join(f"<td>{n}</td>" for n in row) + "</tr>" for label, row in zip(labels, point["matrix"]))
    where = f"at threshold {point['threshold']:.3f} (chosen on validation)" if point.get("threshold") is not None else "at the most probable class"
    metrics = summary["metrics"]
    rates = ", ".join(f"{name} {_format(name, metrics[name])}" for name in ("sensitivity", "specificity", "ppv", "npv") if name in metrics)
    lead = f"Confusion matrix {where}." + (f" There: {rates}." if rates else "")
    picture = _confusion_figure(point["labels"], point["matrix"]) if len(labels) > 2 else ""
    return f"<h2>Operating point</h2><p class=lead>{lead}</p><div class=figs><table>{header}{rows}</table>{picture}</div>"


def _calibration(calibration: dict[str, Any] | None) -> str:
    if not calibration:
        return ""
    names = list(calibration["after"])
    header = "<tr><th>probabilities</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>"
    method = calibration["method"]
    rows = "".join(
        f"<tr><td>{label}</td>" + "".join(f"<td>{_format(n, calibration[key][n])}</td>" for n in names) + "</tr>"
        for label, key in (("model (before)", "before"), (f"recalibrated: {html.escape(method)} (after)", "after"))
    )
    lead = (
        f"Do predicted risks match observed frequencies? Recalibration ({method}) was fitted on validation data and is "
        "applied by predict; ideal: ECE 0, slope 1, intercept 0."
    )
    return _section("Calibration", lead, "<table>" + header + rows + "</table>" + f"<div class=figs>{_reliability_figure(calibration)}</div>")


def _conformal(conformal: dict[str, Any] | None) -> str:
    if not conformal:
        return ""
    rows = [("target coverage", f"{conformal['target'] * 100:.0f}%"), ("empirical coverage", f"{conformal['coverage'] * 100:.1f}%")]
    if "mean_size" in conformal:
        rows.append(("mean set size", f"{conformal['mean_size']:.2f}"))
        rows += [(f"sets of size {size}", f"{share * 100:.1f}%") for size, share in conformal["sizes"].items()]
        lead = (
            "Split-conformal prediction sets fitted on validation: the true class should fall in the set this often. "
            "predict flags a case 'uncertain — refer to a clinician' when its set is not a single class."
        )
    else:
        rows.append(("mean interval width", f"{conformal['mean_width']:.3g}"))
        lead = "Split-conformal prediction intervals fitted on validation: the true value should fall inside this often."
    table = "<table>" + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows) + "</table>"
    return _section("Uncertainty (conformal prediction)", lead, table)


def _subgroups(subgroups: dict[str, Any] | None) -> str:
    if not subgroups:
        return ""
    blocks = []
    for column, groups in subgroups.items():
        metrics = list(groups[0]["metrics"])
        gaps = list(groups[0]["gaps"])
        header = (
            f"<tr><th>{html.escape(column)}</th><th>n</th>"
            + "".join(f"<th>{html.escape(m)}</th>" for m in metrics)
            + "".join(f"<th>gap: {html.escape(g)}</th>" for g in gaps)
            + "</tr>"
        )
        rows = []
        for group in groups:
            cells = "".join(f"<td>{_format(m, group['metrics'][m])}</td>" for m in metrics)
            for gap in gaps:
                entry = group["gaps"].get(gap)
                text = _format(gap, entry, signed=True) if entry else "–"
                cells += f"<td class=flag>{text} ⚑</td>" if entry and entry.get("flagged") else f"<td>{text}</td>"
            small = " <span class=muted>(small)</span>" if group["too_small"] else ""
            rows.append(f"<tr><td>{html.escape(group['group'])}{small}</td><td>{group['n']}</td>{cells}</tr>")
        blocks.append("<table>" + header + "".join(rows) + "</table>")
    lead = (
        "Metrics within each group and the gap to all other samples (group minus rest; equal opportunity = sensitivity gap, "
        "demographic parity = positive-rate gap). ⚑ marks a gap whose 95% CI excludes zero."
    )
    return _section("Subgroups", lead, "".join(blocks))


def _explanations(explanations: Any) -> str:
    if explanations is None or not explanations.figures:
        return ""
    pictures = "".join(_png_html(png, caption, caption) for png, caption in explanations.figures)
    return _section(explanations.title, "Why the model decided as it did, on evaluation cases.", f"<div class=figs>{pictures}</div>")


# ------------------------------------------------------------------ tables
def _has_patients(summary: dict[str, Any]) -> bool:
    return any("patients" in part for part in summary["splits"].values())


def _format(name: str, entry: dict[str, Any], signed: bool = False) -> str:
    value, (low, high) = entry["value"], entry["ci"]
    if value is None:
        return "–"
    metric = name.rsplit("/", 1)[-1]
    if metric in COUNT_METRICS:
        return f"{value:.0f}"
    scale, unit = (100, "%") if metric in PERCENT_METRICS | RATE_GAPS else (1, "")
    digits = 1 if unit else 3
    sign = "+" if signed else ""
    text = f"{value * scale:{sign}.{digits}f}{unit}"
    if low is not None:
        text += f" <span class=muted>({low * scale:.{digits}f} to {high * scale:.{digits}f})</span>"
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


def _choices_table(training: dict[str, Any] | None) -> str:
    from medtorch.evaluation.metrics import best_scored  # the pipeline's rule for what it kept

    rows = []
    for label, key in (("model", "model_selection"), ("class weights", "class_weights")):
        choice = (training or {}).get(key)
        if not (isinstance(choice, dict) and "validation" in choice):
            continue
        if choice.get("cross_validation"):  # the scikit-learn models compared inside the training records first
            finalist = next(name for name in choice["validation"] if name in choice["cross_validation"])
            rows.append(_choice_row("scikit-learn model (CV in training)", finalist, choice["cross_validation"]))
            weightings = choice.get("cross_validation_class_weights")
            if weightings:  # train.class_weights: auto, cross-validated for the finalist
                rows.append(_choice_row(f"class weights of {html.escape(finalist)} (CV in training)", best_scored(weightings), weightings))
        rows.append(_choice_row(f"{label} (validation)", choice["chosen"], choice["validation"]))
    return "<table><tr><th>choice</th><th>kept</th><th>scores</th></tr>" + "".join(rows) + "</table>" if rows else ""


def _choice_row(label: str, kept: str, scores: dict[str, float | None]) -> str:
    listed = ", ".join(f"{html.escape(name)}: {'n/a' if score is None else f'{score:.3f}'}" for name, score in scores.items())
    return f"<tr><td>{label}</td><td>{html.escape(str(kept))}</td><td class=text>{listed}</td></tr>"


# ------------------------------------------------------------------ figures
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
    if "per_class" in summary.get("curves", {}):
        return _per_class_roc_figure(summary["curves"]["per_class"], summary.get("per_class") or {})
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


def _per_class_roc_figure(curves: dict[str, Any], per_class: dict[str, Any]) -> str:
    """Each class against the rest: the model's ROC and precision-recall curve per class, the
    first ``MAX_CLASS_CURVES`` classes."""
    plt = _pyplot()
    figure, (roc_axis, pr_axis) = plt.subplots(1, 2, figsize=(9, 4))
    for name, curve in list(curves.items())[:MAX_CLASS_CURVES]:
        value = per_class.get(name, {}).get("auroc", {}).get("value")
        line = roc_axis.plot(curve["roc"]["fpr"], curve["roc"]["tpr"], label=name if value is None else f"{name} (AUROC {value:.3f})")[0]
        pr_axis.plot(curve["pr"]["recall"], curve["pr"]["precision"], color=line.get_color(), label=name)
    roc_axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
    shown = "" if len(curves) <= MAX_CLASS_CURVES else f", first {MAX_CLASS_CURVES} of {len(curves)} classes"
    roc_axis.set(xlabel="1 − specificity", ylabel="sensitivity", title=f"ROC curve, each class against the rest{shown}")
    pr_axis.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title="Precision–recall curve per class")
    roc_axis.legend(loc="lower right", fontsize=8)
    return _figure_html(figure, "ROC and precision-recall curves per class")


def _confusion_figure(labels: list[str], matrix: list[list[int]]) -> str:
    """The confusion matrix as a picture: each true class's row coloured by its share of that class
    (the diagonal is the sensitivity), with the counts written in."""
    counts = np.asarray(matrix, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    plt = _pyplot()
    side = min(9.0, 2.0 + 0.55 * len(labels))
    figure, axis = plt.subplots(figsize=(side + 1, side))
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(counts):
        axis.text(column, row, f"{int(count)}", ha="center", va="center", fontsize=8, color="white" if shares[row, column] > 0.6 else "black")
    ticks, slanted = np.arange(len(labels)), max(map(len, labels)) > 3  # words slant so they do not overlap; AAMI letters stay upright
    axis.set_xticks(ticks, labels, rotation=45 if slanted else 0, ha="right" if slanted else "center")
    axis.set_yticks(ticks, labels)
    axis.set(xlabel="predicted", ylabel="true", title="Confusion matrix (colour: share of the true class)")
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    return _figure_html(figure, "confusion matrix, each row coloured by its share of the true class")


def _reliability_figure(calibration: dict[str, Any]) -> str:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.5, 4.2))
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for key, style in (("before", "o--"), ("after", "s-")):
        curve = calibration["reliability"][key]
        ece = calibration[key].get("ece", {}).get("value")
        label = f"{'model' if key == 'before' else calibration['method']} (ECE {ece:.3f})" if ece is not None else key
        line = axis.plot(curve["confidence"], curve["observed"], style, linewidth=1, markersize=3, label=label)[0]
        sizes = 8 + 120 * np.asarray(curve["count"]) / max(1, max(curve["count"]))  # marker area: how many samples a bin holds
        axis.scatter(curve["confidence"], curve["observed"], s=sizes, color=line.get_color(), alpha=0.5)
    axis.set(xlabel="predicted probability", ylabel="observed frequency", title="Reliability diagram (marker size: samples)", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    axis.legend(fontsize=8, loc="upper left")
    return _figure_html(figure, "reliability diagram before and after recalibration")


def _decision_figure(curve: dict[str, Any] | None) -> str:
    if not curve:
        return ""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 4))
    axis.plot(curve["threshold"], curve["model"], label="model")
    axis.plot(curve["threshold"], curve["treat_all"], linestyle="--", label="treat all")
    axis.plot(curve["threshold"], curve["treat_none"], color="grey", linestyle=":", label="treat none")
    top = max(max(curve["model"]), max(curve["treat_all"]), 0.01)
    axis.set(xlabel="risk threshold", ylabel="net benefit", title="Decision curve", ylim=(-0.05 * top * 2, top * 1.1))
    axis.legend(fontsize=8)
    return _figure_html(figure, "decision curve: net benefit against risk threshold")


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
