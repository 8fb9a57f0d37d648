"""Signal examples for the report: test beats or windows, right and wrong, and where a network's evidence lay.

>>> figures = signal_examples(bundle, test_records)   # [(png, caption), ...]

For a network, integrated gradients (Captum) attribute the predicted class's logit to every
sample of the input (against a flat signal with the hand-made features at their training mean); their magnitude,
summed over the channels, shades the time axis. Models on the hand-made window features
(gradient boosting, extra trees) and the beat default ``rr_linear`` (RR and template features
alone) have no gradient to the samples, so their examples show the signal alone; without Captum
(the ``explain`` extra) so do a network's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medtorch.explain.figures import agg_figure, png_bytes

MAX_EXAMPLES = 8  # one wrong and one right example of the first four classes (or every class, when fewer)
SHOWN_LEADS = 2  # more leads than two make each trace too thin to read
SMOOTHING_SECONDS = 0.04  # single samples' attributions are spikes too thin to see; 40 ms is shorter than a QRS


def signal_examples(bundle: Any, records: Any) -> list[tuple[bytes, str]]:
    """Captioned PNGs of up to ``MAX_EXAMPLES`` labelled samples of ``records``: per class, its first
    misclassified sample and its first correctly classified one."""
    labels, probabilities = bundle.decide(bundle.predict_scores(records.inputs))
    truth = np.asarray(records.target).astype(str)
    called = np.asarray(labels).astype(str)
    figures = []
    for index in chosen_examples(truth, called, [str(c) for c in bundle.task.classes]):
        row = np.asarray(records.inputs[index], dtype=np.float32)
        verdict = "wrong" if truth[index] != called[index] else "right"
        where = f", {records.names[index]}" if records.names is not None else ""
        title = f"{verdict}: true {truth[index]}, predicted {called[index]} (p {float(probabilities[index]):.2f}){where}"
        figures.append((example_figure(bundle.preprocessor, row, signal_attribution(bundle, row), title), title))
    return figures


def chosen_examples(truth: np.ndarray, called: np.ndarray, classes: list[str]) -> list[int]:
    """Indices of each class's first wrong and first right sample, class by class, at most ``MAX_EXAMPLES``."""
    chosen = []
    for name in classes:
        of_class = truth == name
        for kept in (of_class & (called != name), of_class & (called == name)):
            if kept.any():
                chosen.append(int(np.flatnonzero(kept)[0]))
    return chosen[:MAX_EXAMPLES]


def signal_attribution(bundle: Any, row: np.ndarray, n_steps: int = 32) -> np.ndarray | None:
    """|Integrated gradients| of the predicted class per time step (summed over channels, averaged
    over ``SMOOTHING_SECONDS``), scaled to [0, 1]; ``None`` for a model without gradients to the
    samples (gradient boosting, or ``rr_linear`` on the RR features alone) or without Captum."""
    if bundle.kind != "torch":
        return None
    try:
        from captum.attr import IntegratedGradients
    except ImportError:
        return None
    import torch

    preprocessor, model = bundle.preprocessor, bundle.model.eval()
    inputs = preprocessor.transform(row[None]).to(next(model.parameters()).device)
    with torch.no_grad():
        logits = model(inputs)
    target = 0 if logits.shape[1] == 1 else int(logits.argmax(dim=1))
    attributions = IntegratedGradients(model).attribute(inputs, baselines=torch.zeros_like(inputs), target=target, n_steps=n_steps)
    samples = attributions[0, : preprocessor.channels * preprocessor.length].detach().cpu().numpy()
    per_step = np.abs(samples.reshape(preprocessor.channels, preprocessor.length)).sum(axis=0)
    width = max(1, int(SMOOTHING_SECONDS * preprocessor.fs))
    per_step = np.convolve(per_step, np.ones(width) / width, mode="same")
    return per_step / per_step.max() if per_step.max() > 0 else None  # all 0: a network on the RR features alone (rr_linear)


def example_figure(preprocessor: Any, row: np.ndarray, attribution: np.ndarray | None, title: str) -> bytes:
    """The sample's first leads against time (seconds from the R peak for a beat), over its
    attribution as a shaded band when there is one."""
    from medtorch.data.signal_io import beat_window

    length, fs = preprocessor.length, preprocessor.fs
    signal = row[: preprocessor.channels * length].reshape(preprocessor.channels, length)[: min(preprocessor.leads, SHOWN_LEADS)]
    start = -beat_window(fs)[0] / fs if preprocessor.unit == "beat" else 0.0
    time = start + np.arange(length) / fs
    figure = agg_figure((6, 1.2 + 1.1 * len(signal)))
    axes = figure.subplots(len(signal), 1, sharex=True, squeeze=False)
    for lead, (axis, trace) in enumerate(zip(axes[:, 0], signal)):
        low, high = float(trace.min()), float(trace.max()) + 1e-6
        if attribution is not None:
            axis.imshow(attribution[None], aspect="auto", cmap="Reds", vmin=0, vmax=1, alpha=0.6, extent=(time[0], time[-1], low, high))
        axis.plot(time, trace, color="black", linewidth=0.7)
        axis.set(ylim=(low, high), ylabel=f"lead {lead + 1}")
    shading = "\nshading: where the network's evidence lay (|integrated gradients|)" if attribution is not None else ""
    axes[0, 0].set_title(title + shading, fontsize=8)
    axes[-1, 0].set_xlabel("seconds from the R peak" if preprocessor.unit == "beat" else "seconds")
    return png_bytes(figure, dpi=100)
